"""``flask --app wsgi seed-demo --size large``: one more organisation, 大規模デモ市, with 5,000
vendor companies, 20,000 案件 each with its assessment in every state (回答中 … 評価完了) across
twelve departments, two million answers with their history, reviews, scores and decisions, the
register of approved external services, 定期確認 schedules and findings, and the audit trail of
all of it — in one transaction, in well under a minute on SQLite.

The steps: the people (``people``), the answer templates (``answers``), a plan of every
assessment drawn up front (``plan``), the 案件 and their answers (``assessments``), the register
(``registers``) and its schedules (``periodic``), then the audit trail; all through ``bulk``.

Idempotent: when the organisation exists nothing is written. ``scale`` shrinks every count
proportionally (the tests load a few thousand answers the same way)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.assessments.models import Answer, AnswerRevision, Assessment
from portal.audit.models import AuditEvent
from portal.auth import passwords
from portal.db import utcnow
from portal.engagements.models import Engagement
from portal.evaluations.models import AnswerReview, Outcome, Score
from portal.orgs.models import Department, Organisation
from portal.seeding import answers, assessments, people, plan, registers
from portal.seeding.bulk import AuditTrail, BulkWriter
from portal.seeding.people import DEPARTMENTS, DOMAIN, LARGE_ORGANISATION
from portal.seeding.plan import Load
from portal.users.models import User
from portal.vendors.models import VendorCompany
from portal.web import today_jst

COMPANIES = 5_000
ASSESSMENTS = 20_000
SEED = 2026
# Tables whose ids are taken up front (``BulkWriter.ids``); locked on PostgreSQL.
LOCKED = [
    model.__table__
    for model in (Organisation, Department, User, VendorCompany, Engagement, Assessment)
] + [Score.__table__, Outcome.__table__, *registers.LOCKED]


@dataclass
class LargeResult:
    created: bool
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)
    staff: list[str] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # seconds per step


def seed_large(
    session: Session, *, password: str, scale: float = 1.0, today: date | None = None
) -> LargeResult:
    """Load the large dataset in the session's transaction (the caller commits)."""
    started = time.perf_counter()
    connection = session.connection()
    existing = connection.scalar(
        sa.select(Organisation.id).where(Organisation.name == LARGE_ORGANISATION)
    )
    if existing is not None:
        return LargeResult(False, time.perf_counter() - started, counts_of(connection, existing))
    writer = BulkWriter(connection)
    load = Load(
        writer=writer,
        trail=AuditTrail(),
        rng=random.Random(SEED),  # noqa: S311 - repeatable demo data, not a secret
        today=today or today_jst(),
        now=utcnow(),
        password_hash=passwords.hash_password(password),
    )
    phases: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(label: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases[label] = now - clock
        clock = now

    with writer.tuned():
        writer.lock(LOCKED)
        people.organisation(load)
        people.staff(load)
        people.companies(load, max(1, round(COMPANIES * scale)))
        load.templates = answers.build(load.today)
        plan.draw(load, max(1, round(ASSESSMENTS * scale)))
        assessments.engagements(load)
        lap("準備")
        assessments.answers(load)
        lap("回答")
        assessments.scores(load)
        lap("審査・判定")
        extra = registers.write(load)
        lap("台帳・定期確認")
        load.trail.write(writer)
        writer.finish()
        lap("監査ログ")
    session.expire_all()  # rows written behind the session's back
    figures = counts(writer) | extra
    return LargeResult(True, time.perf_counter() - started, figures, people.staff_emails(), phases)


def report(result: LargeResult, password: str, seconds: float, total: float) -> list[str]:
    """What ``seed-demo --size large`` prints at the end, in Japanese."""
    if not result.created:
        figures = "・".join(f"{label} {count:,} 件" for label, count in result.counts.items())
        return [
            f"大規模デモデータは登録済みです（{LARGE_ORGANISATION}：{figures}）。変更していません。"
        ]
    lines = [
        f"大規模デモデータを登録しました（{LARGE_ORGANISATION}）。"
        f"所要時間 {seconds:.1f} 秒（seed-demo 全体 {total:.1f} 秒）",
        "  内訳："
        + "・".join(f"{label} {spent:.1f} 秒" for label, spent in result.phases.items())
        + f"・確定（コミット） {max(0.0, seconds - result.seconds):.1f} 秒",
        *(f"  {label}：{count:,} 件" for label, count in result.counts.items()),
        f"  職員：{', '.join(result.staff[:5])}、"
        f"staff01〜staff{len(DEPARTMENTS):02d}@{DOMAIN}（課ごとに1名）",
        f"  事業者：tantou@vendor00001.example.com 〜 "
        f"tantou@vendor{result.counts.get('事業者', 0):05d}.example.com",
        f"  パスワード：{password}（職員の確認コードは flask --app wsgi demo-code メールアドレス）",
    ]
    return lines


COUNTED = (
    ("事業者", VendorCompany.__table__),
    ("利用者", User.__table__),
    ("案件", Engagement.__table__),
    ("評価", Assessment.__table__),
    ("回答", Answer.__table__),
    ("回答の履歴", AnswerRevision.__table__),
    ("回答の審査", AnswerReview.__table__),
    ("採点", Score.__table__),
    ("判定", Outcome.__table__),
    *registers.COUNTED,
    ("監査ログ", AuditEvent.__table__),
)


def counts(writer: BulkWriter) -> dict[str, int]:
    return {label: writer.counts[table.name] for label, table in COUNTED}


def counts_of(connection: sa.Connection, organisation_id: int) -> dict[str, int]:
    """What an earlier run loaded: the organisation's assessments and their answers."""
    assessments = sa.select(Assessment.id).where(Assessment.organisation_id == organisation_id)
    return {
        "評価": connection.scalar(sa.select(sa.func.count()).select_from(assessments.subquery())),
        "回答": connection.scalar(
            sa.select(sa.func.count(Answer.id)).where(Answer.assessment_id.in_(assessments))
        ),
    }
