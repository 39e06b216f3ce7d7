"""``flask --app wsgi evidence rescan``: scan again the files still pending or whose scan failed.

Idempotent (files already ``clean`` or ``infected`` are left alone) and safe to run from cron.
No transaction is open while the scanner works; each verdict is committed on its own.
"""

from __future__ import annotations

from collections import Counter

import click
from flask import current_app
from flask.cli import with_appcontext

from portal.db import get_session, writing
from portal.evidence import service, setup
from portal.evidence.models import SCAN_LABELS, EvidenceFile


@click.group("evidence", help="添付ファイル（証拠書類）の管理")
def evidence_cli() -> None:
    pass


@evidence_cli.command("rescan", help="ウイルス検査待ち・検査できなかったファイルを検査し直す")
@click.option("--dry-run", is_flag=True, help="検査結果を表示するだけで保存しない")
@with_appcontext
def rescan(dry_run: bool) -> None:
    scanner = setup.scanner_for(current_app)
    evidence_dir = setup.evidence_dir_for(current_app)
    session = get_session()
    ids = service.rescannable_ids(session)
    session.rollback()
    verdicts: Counter[str] = Counter()
    for evidence_id in ids:
        evidence = session.get(EvidenceFile, evidence_id)
        if evidence is None:
            continue
        session.expunge(evidence)
        session.rollback()  # no snapshot held while the scanner works
        verdict = service.scan_file(scanner, evidence_dir, evidence)
        verdicts[verdict] += 1
        if dry_run:
            click.echo(f"{evidence_id}: {SCAN_LABELS[verdict]}")
            continue
        with writing() as db:
            current = db.get(EvidenceFile, evidence_id, populate_existing=True)
            if current and current.scan_status in service.RESCANNABLE and not current.deleted_at:
                service.apply_verdict(db, current, verdict)
    summary = "、".join(f"{SCAN_LABELS[v]} {n}件" for v, n in sorted(verdicts.items()))
    click.echo(f"{len(ids)}件を検査しました。" + (f"（{summary}）" if summary else ""))
