"""``flask --app wsgi audit verify`` and ``audit purge``."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from portal.audit import service as audit
from portal.db import get_session, writing


@click.group("audit", help="監査ログの検証と保存期間の管理")
def audit_cli() -> None:
    pass


@audit_cli.command("verify", help="ハッシュチェーンを検証し、最初に壊れている行を報告する")
@with_appcontext
def verify() -> None:
    result = audit.verify(get_session())
    if result.ok:
        click.echo(
            f"OK: {result.checked} 件の監査ログを検証しました。改ざんは見つかりませんでした。"
        )
        return
    click.echo(
        f"NG: 連番 {result.broken_seq} で不整合を検出しました: {result.reason}"
        f"（それより前の {result.checked} 件は正常）",
        err=True,
    )
    raise SystemExit(1)


@audit_cli.command("purge", help="保存期間を過ぎた監査ログを削除する（チェーンの起点を更新）")
@click.option(
    "--days",
    type=click.IntRange(min=30),
    default=None,
    help="保存日数（既定: PORTAL_AUDIT_RETENTION_DAYS）",
)
@with_appcontext
def purge(days: int | None) -> None:
    days = days or current_app.config["AUDIT_RETENTION_DAYS"]
    with writing() as session:
        deleted = audit.purge_older_than(session, days)
        if deleted:
            audit.record(
                session,
                "audit.purged",
                actor_label="cli",
                details={"deleted": deleted, "retention_days": days},
            )
    click.echo(f"{deleted} 件を削除しました（保存期間 {days} 日）。")
