"""``flask --app wsgi backup create|restore``: the database and the evidence store in one archive.

SQLite is copied with its online backup API (a consistent snapshot while the portal runs), never
by copying the live file; PostgreSQL with ``pg_dump`` / ``pg_restore``. The archive carries a
manifest with the SHA-256 of every member, checked before anything is restored.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess  # noqa: S404 - pg_dump / pg_restore with fixed arguments
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy.engine import make_url

MANIFEST = "manifest.json"
SQLITE_MEMBER = "database.sqlite3"
PG_MEMBER = "database.pgdump"
EVIDENCE_MEMBER = "evidence"


class BackupError(click.ClickException):
    pass


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    if not parsed.database or parsed.database == ":memory:":
        raise BackupError("メモリ上のデータベースはバックアップできません。")
    return Path(parsed.database)


def _pg_args(url: str) -> tuple[list[str], dict[str, str]]:
    parsed = make_url(url)
    args = [
        "--host",
        parsed.host or "localhost",
        "--port",
        str(parsed.port or 5432),
        "--username",
        parsed.username or "postgres",
        "--dbname",
        parsed.database or "",
    ]
    env = {"PGPASSWORD": parsed.password} if parsed.password else {}
    return args, env


def _copy_sqlite(source: Path, target: Path) -> None:
    src = sqlite3.connect(source)
    dst = sqlite3.connect(target)
    try:
        with dst:
            src.backup(dst)
    finally:
        dst.close()
        src.close()


def create_backup(database_url: str, evidence_dir: Path, destination: Path) -> Path:
    destination.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    archive = destination / f"portal-backup-{stamp}.tar.gz"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sqlite_path = _sqlite_path(database_url)
        if sqlite_path is not None:
            member = work / SQLITE_MEMBER
            _copy_sqlite(sqlite_path, member)
        else:
            member = work / PG_MEMBER
            args, env = _pg_args(database_url)
            _run(["pg_dump", "--format=custom", "--no-owner", "--file", str(member), *args], env)
        files = {member.name: _sha256(member)}
        if evidence_dir.exists():
            shutil.copytree(evidence_dir, work / EVIDENCE_MEMBER)
            for path in sorted((work / EVIDENCE_MEMBER).rglob("*")):
                if path.is_file():
                    files[path.relative_to(work).as_posix()] = _sha256(path)
        manifest = {"created_at": stamp, "database": member.name, "files": files}
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        with tarfile.open(archive, "w:gz") as tar:
            for path in sorted(work.iterdir()):
                tar.add(path, arcname=path.name)
    archive.chmod(0o600)
    return archive


def restore_backup(archive: Path, database_url: str, evidence_dir: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(work, filter="data")
        manifest_path = work / MANIFEST
        if not manifest_path.exists():
            raise BackupError("バックアップにマニフェストがありません。")
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        for name, expected in manifest["files"].items():
            path = work / name
            if not path.is_file() or _sha256(path) != expected:
                raise BackupError(f"バックアップの内容がマニフェストと一致しません: {name}")
        sqlite_path = _sqlite_path(database_url)
        if manifest["database"] == SQLITE_MEMBER:
            if sqlite_path is None:
                raise BackupError(
                    "SQLite のバックアップは SQLite のデータベースにだけ復元できます。"
                )
            sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            _copy_sqlite(work / SQLITE_MEMBER, sqlite_path)
        else:
            if sqlite_path is not None:
                raise BackupError("PostgreSQL のバックアップは PostgreSQL にだけ復元できます。")
            args, env = _pg_args(database_url)
            _run(
                [
                    "pg_restore",
                    "--clean",
                    "--if-exists",
                    "--no-owner",
                    *args,
                    str(work / PG_MEMBER),
                ],
                env,
            )
        if (work / EVIDENCE_MEMBER).exists():
            if evidence_dir.exists():
                shutil.rmtree(evidence_dir)
            shutil.copytree(work / EVIDENCE_MEMBER, evidence_dir)
        return manifest


def _run(command: list[str], env: dict[str, str]) -> None:
    if shutil.which(command[0]) is None:
        raise BackupError(
            f"{command[0]} が見つかりません（PostgreSQL のクライアントをインストールしてください）。"
        )
    result = subprocess.run(  # noqa: S603 - fixed program, arguments from our own config
        command, env={**os.environ, **env}, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise BackupError(f"{command[0]} が失敗しました: {result.stderr.strip()[:500]}")


@click.group("backup", help="データベースと証跡ファイルのバックアップ・復元")
def backup_cli() -> None:
    pass


@backup_cli.command(
    "create", help="バックアップを作成する（稼働中でも整合性のあるスナップショット）"
)
@click.option(
    "--to",
    "destination",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="バックアップを置くフォルダ",
)
@with_appcontext
def create(destination: Path) -> None:
    archive = create_backup(
        current_app.config["DATABASE_URL"], Path(current_app.config["EVIDENCE_DIR"]), destination
    )
    click.echo(f"バックアップを作成しました: {archive}")


@backup_cli.command("restore", help="バックアップから復元する（ポータルを停止してから実行）")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="確認せずに復元する")
@with_appcontext
def restore(archive: Path, yes: bool) -> None:
    if not yes:
        click.confirm(
            "現在のデータベースと証跡ファイルを上書きします。よろしいですか？", abort=True
        )
    manifest = restore_backup(
        archive, current_app.config["DATABASE_URL"], Path(current_app.config["EVIDENCE_DIR"])
    )
    click.echo(f"{manifest['created_at']} のバックアップから復元しました。")
