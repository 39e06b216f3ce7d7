"""Demo external services and 利用申請 in every state the register shows: awaiting a decision,
returned for changes, rejected, approved with conditions (reported, with checks recorded),
approved and overdue for review with a handover, a 約款型 service whose terms changed (要再確認),
a suspended entry retired through 廃止手続中 with its exit checklist complete (the 消去証明書
attached), and an entry still 廃止手続中 with part of its exit checklist recorded (9.2(7))."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import date, datetime, time

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.approvals import service as approvals
from portal.approvals.models import ExternalService, UseApplication
from portal.assessments.models import Assessment
from portal.engagements.models import Engagement
from portal.lifecycle import checklists, retirement
from portal.lifecycle import service as lifecycle
from portal.orgs.models import Organisation
from portal.users.models import User
from portal.vendors.models import VendorCompany
from portal.web import JST

TERMS_V1 = "オンラインアンケート利用規約（2026年4月1日版）\n第1条 当社は、利用者の情報を本サービスの提供以外の目的に利用しない。"
TERMS_V2 = TERMS_V1 + "\n第2条 当社は、30日前までに通知して本規約を変更することができる。"


@dataclass
class DemoApplication:
    service: str
    company: str
    engagement: str | None  # the linked assessment's engagement title
    department: str
    purpose: str
    business: str
    segment: str
    confidentiality: int
    decisions: list[tuple] = field(default_factory=list)  # (action, date, reason, extra)
    personal_data: bool = False
    plan: str | None = None


APPLICATIONS = [
    DemoApplication(
        service="さくらグループウェア",
        company="株式会社さくらクラウドサービス",
        engagement="庁内グループウェアの利用",
        department="情報政策課",
        purpose="庁内の予定管理、掲示板、文書の共有を行うため。",
        business="職員間の予定管理・施設予約・掲示板・庁内文書の共有（機密性2まで）",
        segment="lgwan",
        confidentiality=2,
        plan="自治体向けプラン",
        decisions=[
            (
                "conditional",
                date(2026, 4, 10),
                "評価の結果、主要な要件を満たしている。稼働率の保証が低いため条件を付す。",
                {
                    "conditions": "・稼働率の保証（SLA）を契約書に明記すること。\n・管理者アカウントには多要素認証を設定すること。"
                },
            ),
        ],
    ),
    DemoApplication(
        service="さくら電子申請",
        company="株式会社さくらクラウドサービス",
        engagement="電子申請サービスの利用",
        department="情報政策課",
        purpose="住民からの各種申請をオンラインで受け付けるため。",
        business="電子申請の受付（氏名・住所・連絡先を含む）",
        segment="internet",
        confidentiality=2,
        personal_data=True,
    ),
    DemoApplication(
        service="研修動画配信サービス",
        company="株式会社さくらクラウドサービス",
        engagement="職員向け研修動画配信サービスの利用",
        department="情報政策課",
        purpose="職員研修の動画を配信するため。",
        business="公開予定の研修動画の配信",
        segment="internet",
        confidentiality=1,
        decisions=[
            (
                "return",
                date(2026, 11, 18),
                "利用規約の同意した版の写しを添付し直してください。",
                {},
            ),
        ],
    ),
    DemoApplication(
        service="オンラインアンケート",
        company="みなと情報システム株式会社",
        engagement=None,
        department="情報政策課",
        purpose="研修の受講者アンケートを集計するため。",
        business="研修アンケートの集計（氏名は収集しない）",
        segment="internet",
        confidentiality=1,
        decisions=[
            ("approve", date(2025, 6, 2), "機密性1の情報に限った利用であり、リスクは低い。", {}),
            ("terms", date(2026, 11, 1), "", {}),
        ],
    ),
    DemoApplication(
        service="会議録作成支援サービス",
        company="みなと情報システム株式会社",
        engagement=None,
        department="情報政策課",
        purpose="公開の会議の録音から会議録の原稿を作成するため。",
        business="公開の審議会の会議録作成（公開済みの発言に限る）",
        segment="internet",
        confidentiality=1,
        decisions=[
            ("approve", date(2025, 4, 15), "公開の会議に限った利用であり、リスクは低い。", {}),
            ("handover", date(2025, 10, 1), "人事異動による引継ぎ", {}),
        ],
    ),
    DemoApplication(
        service="海外ファイル共有サービス",
        company="みなと情報システム株式会社",
        engagement=None,
        department="情報政策課",
        purpose="委託事業者との大容量ファイルの受渡しのため。",
        business="公開資料の受渡し",
        segment="internet",
        confidentiality=1,
        decisions=[
            ("reject", date(2026, 9, 1), "庁内標準のファイル転送サービスで代替できるため。", {}),
        ],
    ),
    DemoApplication(
        service="旧メール配信サービス",
        company="みなと情報システム株式会社",
        engagement=None,
        department="情報政策課",
        purpose="防災情報のメール配信のため。",
        business="登録者への防災情報のメール配信（公開情報に限る）",
        segment="internet",
        confidentiality=1,
        decisions=[
            ("approve", date(2024, 4, 1), "公開情報に限った配信であり、リスクは低い。", {}),
            (
                "suspend",
                date(2026, 2, 1),
                "提供者から脆弱性が公表されたため、修正の適用まで停止する。",
                {},
            ),
            ("retire", date(2026, 3, 31), "後継の防災情報配信サービスへ移行したため廃止する。", {}),
            ("exit", date(2026, 4, 10), "", {}),
            ("retire_complete", date(2026, 4, 13), "", {}),
        ],
    ),
    DemoApplication(
        service="施設予約サービス（旧版）",
        company="みなと情報システム株式会社",
        engagement=None,
        department="情報政策課",
        purpose="公民館の会議室の空き状況を公開するため。",
        business="公民館の会議室の空き状況の公開（予約者の情報は取り扱わない）",
        segment="internet",
        confidentiality=1,
        decisions=[
            ("approve", date(2025, 1, 10), "公開情報に限った利用であり、リスクは低い。", {}),
            (
                "retire",
                date(2026, 10, 30),
                "新しい施設予約システムの稼働に伴い、利用を終了する。",
                {},
            ),
            # Part of the exit checklist: the deletion certificate has not arrived yet.
            ("exit", date(2026, 11, 6), "", {"items": ["exit_measures", "account_deletion"]}),
        ],
    ),
]

CERTIFICATE = """消去証明書

さくら台市長 様

下記のサービスにおいて貴市からお預かりしていた情報（バックアップ及びログを含む）を、
復元できない方法により消去したことを証明します。

サービス: {service}
消去の方法: 暗号鍵の破棄による暗号化消去及びバックアップ媒体の上書き消去
消去の完了日: {on}

みなと情報システム株式会社
"""


@dataclass
class _Certificate:
    """An uploaded file, as ``files.store_file`` reads it."""

    filename: str
    stream: io.BytesIO


def _user(session: Session, email: str) -> User:
    return session.scalar(sa.select(User).where(User.email == email))


def _assessment(session: Session, org: Organisation, title: str) -> Assessment | None:
    return session.scalar(
        sa.select(Assessment)
        .join(Engagement, Engagement.id == Assessment.engagement_id)
        .where(Engagement.organisation_id == org.id, Engagement.title == title)
    )


def _service(session, org, spec: DemoApplication, staff: User, assessment) -> ExternalService:
    company = session.scalar(sa.select(VendorCompany).where(VendorCompany.name == spec.company))
    service = session.scalar(
        sa.select(ExternalService).where(
            ExternalService.organisation_id == org.id, ExternalService.name == spec.service
        )
    )
    if service is None:
        data = (
            approvals.prefill_from(session, assessment)
            if assessment is not None
            else approvals.ServiceInput(
                name=spec.service, governing_law="japan", jurisdiction="japan"
            )
        )
        data.name = spec.service
        service = approvals.create_service(session, staff, company.id, data, assessment)
    if spec.plan and not any(p.name == spec.plan for p in service.plans):
        approvals.add_plan(session, service, staff, spec.plan, "LGWAN接続系から利用できるプラン")
    return service


def seed(session: Session, org: Organisation) -> None:
    """Idempotent: a service that already has an application is left alone."""
    staff = _user(session, "staff@sakuradai.example.jp")
    approver = _user(session, "approver@sakuradai.example.jp")
    manager = _user(session, "manager@sakuradai.example.jp")
    successor = _user(session, "manager2@sakuradai.example.jp")
    if None in (staff, approver, manager, successor):
        return
    department = {d.name: d for d in org.departments}
    for spec in APPLICATIONS:
        assessment = _assessment(session, org, spec.engagement) if spec.engagement else None
        if spec.engagement and assessment is None:
            continue
        service = _service(session, org, spec, staff, assessment)
        if session.scalar(
            sa.select(UseApplication.id).where(UseApplication.service_id == service.id)
        ):
            continue
        application = approvals.file(
            session,
            staff,
            approvals.ApplicationInput(
                department_id=department[spec.department].id,
                service_id=service.id,
                plan_id=next((p.id for p in service.plans if p.name == spec.plan), None),
                assessment_id=assessment.id if assessment else None,
                purpose=spec.purpose,
                business=spec.business,
                network_segment=spec.segment,
                max_confidentiality=spec.confidentiality,
                personal_data=spec.personal_data,
                specific_personal_data=False,
                sensitive_personal_data=False,
                terms=approvals.TermsInput(
                    url=f"https://www.example.com/{service.id}/terms",
                    content=TERMS_V1.encode(),
                    source="貼り付け",
                    risks_confirmed=True,
                ),
            ),
        )
        for action, on, reason, extra in spec.decisions:
            _apply(session, application, action, on, reason, extra, approver, manager, successor)


def _at(day: date) -> datetime:
    return datetime.combine(day, time(10), JST)


def _apply(session, application, action, on, reason, extra, approver, manager, successor) -> None:
    if action in ("approve", "conditional", "reject", "return"):
        # Demo history: the application was filed a week before the (past) decision.
        application.submitted_at = _at(date.fromordinal(on.toordinal() - 7))
        approvals.decide(
            session,
            application,
            approver,
            approvals.DecisionInput(
                decision=action,
                reason=reason,
                conditions=extra.get("conditions", ""),
                manager_id=manager.id,
                version=application.version,
            ),
            on,
        )
        application.decided_at = _at(on) if action != "return" else None
        if action in ("approve", "conditional"):
            _checks(session, application, manager, on)
    elif action == "handover":
        approvals.hand_over(
            session,
            application,
            approver,
            user_id=successor.id,
            on=on,
            note=reason,
            version=application.version,
            today=on,
        )
    elif action == "terms":
        approvals.record_terms(
            session,
            application,
            manager,
            approvals.TermsInput(
                url=application.accepted_terms.url,
                content=TERMS_V2.encode(),
                source="terms-2026-11.pdf",
            ),
        )
    elif action == "exit":
        _exit_checks(session, application, on, extra.get("items"))
    elif action == "retire_complete":
        retirement.complete_retirement(
            session, application, approver, version=application.version, today=on
        )
    else:
        approvals.change_status(
            session, application, approver, action, reason, application.version, today=on
        )


def _exit_checks(session: Session, application: UseApplication, on: date, keys) -> None:
    """The 外部サービス管理者 records the exit items (all, or ``keys``), the 消去証明書 with
    its file (9.2(7))."""
    manager = application.current_manager.user
    for item in lifecycle.exit_items(application):
        if keys is not None and item.key not in keys:
            continue
        upload = None
        if item.requires_file:
            text = CERTIFICATE.format(service=application.service.name, on=on.isoformat())
            upload = _Certificate("消去証明書.txt", io.BytesIO(text.encode("utf-8")))
        lifecycle.record(
            session,
            application,
            manager,
            phase="exit",
            item_key=item.key,
            result="done",
            checked_on=on,
            evidence="利用終了の記録（情報政策課 共有フォルダ「外部サービス/利用終了」）",
            note="",
            today=on,
            upload=upload,
        )


def _checks(session: Session, application: UseApplication, manager: User, decided: date) -> None:
    """The build checks done shortly after approval; the first operation checks a month later
    for entries still in use (so that the register shows complete, partial and overdue states)."""
    checklist = checklists.latest()
    for phase, offset in (("build", 7), ("operation", 30)):
        items = list(checklist.phase(phase).items_for(application.category))
        if phase == "operation":
            items = items[: max(1, len(items) // 2)]
        for item in items:
            lifecycle.record(
                session,
                application,
                manager,
                phase=phase,
                item_key=item.key,
                result="done",
                checked_on=date.fromordinal(decided.toordinal() + offset),
                evidence="設定確認シート（情報政策課 共有フォルダ「外部サービス/点検記録」）",
                note="",
                today=date.fromordinal(decided.toordinal() + offset),
            )
