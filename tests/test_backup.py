"""Backup and restore of the database and the evidence store (SECURITY.md "Reliability")."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from portal.backup import create_backup, restore_backup
from portal.orgs.models import Organisation


@pytest.fixture
def evidence(app) -> Path:
    folder = Path(app.config["EVIDENCE_DIR"])
    (folder / "ab").mkdir(parents=True)
    (folder / "ab" / "certificate.pdf").write_bytes(b"%PDF-1.7 evidence")
    return folder


def _org_names(db) -> set[str]:
    db.expire_all()
    return set(db.scalars(sa.select(Organisation.name)))


def test_backup_then_restore_brings_back_database_and_evidence(app, db, make, evidence, tmp_path):
    if not app.config["DATABASE_URL"].startswith("sqlite") and shutil.which("pg_dump") is None:
        pytest.skip("PostgreSQL client tools (pg_dump) are not installed")
    make.org(name="バックアップ前の村")
    archive = create_backup(app.config["DATABASE_URL"], evidence, tmp_path / "backups")

    make.org(name="バックアップ後の町")
    (evidence / "ab" / "certificate.pdf").write_bytes(b"changed")
    db.commit()
    db.close()

    manifest = restore_backup(archive, app.config["DATABASE_URL"], evidence)

    assert _org_names(db) == {"バックアップ前の村"}
    assert (evidence / "ab" / "certificate.pdf").read_bytes() == b"%PDF-1.7 evidence"
    assert manifest["database"] in {"database.sqlite3", "database.pgdump"}


def test_a_tampered_archive_is_refused_and_nothing_is_restored(app, db, make, evidence, tmp_path):
    if not app.config["DATABASE_URL"].startswith("sqlite"):
        pytest.skip("tampering is checked on the SQLite archive layout")
    make.org(name="元の市")
    archive = create_backup(app.config["DATABASE_URL"], evidence, tmp_path / "backups")
    make.org(name="新しい市")

    unpacked = tmp_path / "unpacked"
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked, filter="data")
    (unpacked / "evidence" / "ab" / "certificate.pdf").write_bytes(b"forged")
    forged = tmp_path / "forged.tar.gz"
    with tarfile.open(forged, "w:gz") as tar:
        for path in unpacked.iterdir():
            tar.add(path, arcname=path.name)

    with pytest.raises(Exception, match="一致しません"):
        restore_backup(forged, app.config["DATABASE_URL"], evidence)
    assert _org_names(db) == {"元の市", "新しい市"}


def test_backup_command_writes_an_archive(runner, tmp_path, make):
    make.org(name="コマンドの村")
    result = runner.invoke(args=["backup", "create", "--to", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    archives = list((tmp_path / "out").glob("portal-backup-*.tar.gz"))
    assert len(archives) == 1
    with tarfile.open(archives[0]) as tar:
        names = tar.getnames()
    assert "manifest.json" in names
