"""``flask --app wsgi backup create|restore``: the database and the evidence store in one archive.

SQLite is copied with its online backup API (a consistent snapshot while the portal runs), never
by copying the live file; PostgreSQL with ``pg_dump`` / ``pg_restore``. The archive carries a
manifest with the SHA-256 of every member, checked before anything is restored. The archive is
created readable by its owner only (0600), and a restore is recorded in the restored audit trail.
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
from urllib.parse import quote

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from portal.audit import service as audit
from portal.audit.models import AuditChain
from portal.db import engine_for, get_session, writing

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
    """Copy with the online backup API. The source is opened read-only, so a wrong path fails
    instead of creating (and backing up) an empty database."""
    if not source.is_file():
        raise BackupError(f"データベースファイルが見つかりません: {source}")
    try:
        src = sqlite3.connect(f"file:{quote(source.absolute().as_posix())}?mode=ro", uri=True)
    except sqlite3.Error as error:
        raise BackupError(f"データベースを開けません: {source}（{error}）") from error
    try:
        dst = sqlite3.connect(target)
        try:
            with dst:
                src.backup(dst)
        finally:
            dst.close()
    except sqlite3.Error as error:
        raise BackupError(f"データベースをコピーできません: {source}（{error}）") from error
    finally:
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
        # Readable by the owner only from the start (never briefly world-readable).
        try:
            fd = os.open(archive, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError as error:
            raise BackupError(
                f"同じ名前のバックアップがすでにあります: {archive}（少し待ってから実行してください）"
            ) from error
        try:
            with os.fdopen(fd, "wb") as handle, tarfile.open(fileobj=handle, mode="w:gz") as tar:
                for path in sorted(work.iterdir()):
                    tar.add(path, arcname=path.name)
        except BaseException:
            archive.unlink(missing_ok=True)
            raise
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
    head_before = _chain_head_hash()
    manifest = restore_backup(
        archive, current_app.config["DATABASE_URL"], Path(current_app.config["EVIDENCE_DIR"])
    )
    # The restore replaced the audit trail too: record it in the restored one.
    with writing() as session:
        audit.record(
            session,
            "backup.restored",
            actor_label="cli",
            details={
                "archive": archive.name,
                "created_at": manifest["created_at"],
                "chain_head_before": head_before,
            },
        )
    click.echo(f"{manifest['created_at']} のバックアップから復元しました。")


def _chain_head_hash() -> str | None:
    """The audit chain head of the database about to be replaced (None when it has none).

    Leaves no connection of ours open, so nothing holds a lock while the database is replaced.
    """
    session = get_session()
    try:
        return session.scalar(
            sa.select(AuditChain.last_hash).where(AuditChain.id == audit.CHAIN_ID)
        )
    except SQLAlchemyError:
        return None
    finally:
        session.close()
        engine_for(current_app).dispose()
