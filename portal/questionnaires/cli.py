"""``flask --app wsgi questionnaires check``: validate every file of the question bank."""

from __future__ import annotations

from collections import Counter

import click

from portal.questionnaires import loader


@click.group("questionnaires", help="設問データ（questionnaires/*.toml）の管理")
def questionnaires_cli() -> None:
    pass


@questionnaires_cli.command("check", help="すべての設問ファイルを検証する")
def check() -> None:
    loaded, problems = loader.check()
    for questionnaire in loaded:
        types = Counter(q.type for q in questionnaire.questions)
        click.echo(
            f"{questionnaire.source}: {questionnaire.key} {questionnaire.version} — "
            f"{len(questionnaire.sections)} セクション、{len(questionnaire.questions)} 問 "
            f"({', '.join(f'{t} {n}' for t, n in sorted(types.items()))})"
        )
    if problems:
        for problem in problems:
            click.echo(f"NG {problem}", err=True)
        raise SystemExit(1)
    click.echo(f"OK: {len(loaded)} 件の設問ファイルに問題はありません。")
