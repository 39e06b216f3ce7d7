"""``flask --app wsgi send-reminders``: the daily reminder and escalation job (run by cron).

Idempotent: running it twice sends nothing twice, also when two runs overlap (each message is
claimed before it is sent; the README's cron line also takes a lock with ``flock -n``).
``--dry-run`` lists what would be sent and changes nothing. Exits with status 1 when a message
could not be sent; those messages are sent by the next run (対策基準 9.1(3), 9.2(6), 10.1(4))."""

from __future__ import annotations

import re
from datetime import date

import click
from flask import current_app
from flask.cli import with_appcontext

from portal.db import get_session
from portal.reviews import reminders
from portal.web import today_jst

ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _parse_day(_ctx, _param, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        if not ISO_DATE.fullmatch(value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"日付は YYYY-MM-DD の形式で指定してください（{value!r}）。"
        ) from None


@click.command(
    "send-reminders",
    help="定期確認・有効期限・指摘事項のリマインダーを送信し、期限超過をエスカレーションする",
)
@click.option("--dry-run", is_flag=True, help="送信も記録もせず、送信予定のメールを表示する")
@click.option(
    "--today",
    "today",
    callback=_parse_day,
    metavar="YYYY-MM-DD",
    help="基準日（既定: 日本時間の今日）",
)
@click.option(
    "--escalation-days",
    type=click.IntRange(min=1),
    default=None,
    help="期限をこの日数を超えて過ぎた項目をネットワーク管理者・CISOに送る"
    "（既定: PORTAL_REMINDER_ESCALATION_DAYS、14）",
)
@with_appcontext
def send_reminders(dry_run: bool, today: date | None, escalation_days: int | None) -> None:
    today = today or today_jst()
    escalation_days = escalation_days or current_app.config["REMINDER_ESCALATION_DAYS"]
    report = reminders.run(get_session(), today, dry_run=dry_run, escalation_days=escalation_days)
    if dry_run:
        skipped = {r.key for r in report.already_sent}
        for reminder in report.planned:
            state = "送信済み" if reminder.key in skipped else "送信予定"
            click.echo(
                f"{state}: [{reminder.stage_label}] {reminder.recipient} 「{reminder.subject}」"
                f"（{reminder.key}）"
            )
        click.echo(
            f"基準日 {today.isoformat()}: 送信予定 {len(report.to_send)} 件・"
            f"送信済みのため省略 {len(report.already_sent)} 件"
            "（--dry-run のため、送信も記録もしていません）"
        )
        return
    for reminder in report.sent:
        click.echo(f"送信: [{reminder.stage_label}] {reminder.recipient}（{reminder.key}）")
    for reminder in report.busy:
        click.echo(
            f"省略: [{reminder.stage_label}] {reminder.recipient}（{reminder.key}）"
            " — 同時に動いている別の実行が送信中です"
        )
    for failure in report.failed:
        click.echo(
            f"失敗: [{failure.reminder.stage_label}] {failure.reminder.recipient}"
            f"（{failure.reminder.key}）: {failure.error}",
            err=True,
        )
    busy = f"・別の実行が送信中のため省略 {len(report.busy)} 件" if report.busy else ""
    click.echo(
        f"基準日 {today.isoformat()}: 送信 {len(report.sent)} 件・"
        f"送信済みのため省略 {len(report.already_sent)} 件・失敗 {len(report.failed)} 件{busy}"
    )
    if report.failed:
        click.echo(
            "送信できなかったメールは記録してあり、次回の実行で再送します。"
            "メールサーバーの設定と接続を確認してください。",
            err=True,
        )
        raise SystemExit(1)
