"""``flask --app wsgi questionnaires check``: validate every file of the question bank, the
scoring rules, the clause catalogue (contracts/) and the checklists (questionnaires/checklists/:
the lifecycle checks of a cloud service and the exit of a 業務委託 contract) and the 定期確認票
(questionnaires/confirmations/)."""

from __future__ import annotations

from collections import Counter

import click

from portal.clauses import catalogue
from portal.lifecycle import checklists
from portal.questionnaires import loader
from portal.reviews import questionnaire as confirmation_questionnaires
from portal.scoring import rules


@click.group("questionnaires", help="設問データ（questionnaires/*.toml）の管理")
def questionnaires_cli() -> None:
    pass


@questionnaires_cli.command(
    "check",
    help="すべての設問ファイル、採点ルール、特記事項の条項集、構築・運用・利用終了時と"
    "業務委託の契約終了時のチェックリスト、定期確認票を検証する",
)
def check() -> None:
    loaded, problems = loader.check()
    if not problems:  # rules are checked against the questionnaires, so only when those load
        rule_sets, rule_problems = rules.check()
        problems.extend(rule_problems)
        for rule_set in rule_sets:
            click.echo(
                f"{rule_set.source}: {rule_set.questionnaire} 採点ルール {rule_set.version} — "
                f"{len(rule_set.rules)} 規則"
            )
        catalogues, catalogue_problems = catalogue.check()
        problems.extend(f"contracts/{p}" for p in catalogue_problems)
        for item in catalogues:
            click.echo(
                f"contracts/{item.source}: {item.title} {item.version} — "
                f"{len(item.articles)} 条、様式 {len(item.forms)}"
            )
        confirmations, confirmation_problems = confirmation_questionnaires.check()
        problems.extend(f"questionnaires/{p}" for p in confirmation_problems)
        for item in confirmations:
            click.echo(
                f"questionnaires/{item.source}: {item.title} {item.version} — "
                f"{len(item.sections)} セクション、{len(item.questions)} 問"
                f"（{item.base.source} の設問）"
            )
        for checklist, checklist_problems in checklists.check_all():
            problems.extend(f"questionnaires/checklists/{p}" for p in checklist_problems)
            if checklist is not None:
                click.echo(
                    f"questionnaires/checklists/{checklist.source}: {checklist.title} "
                    f"{checklist.version} — "
                    + "、".join(f"{p.title} {len(p.items)} 項目" for p in checklist.phases)
                )
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
    click.echo(
        f"OK: {len(loaded)} 件の設問ファイル、採点ルール、特記事項の条項集、チェックリスト、"
        "定期確認票に"
        "問題はありません。"
    )
