"""Demo 特記事項 in several states: settings saved but nothing generated, one version, and two
versions of which the second is attached to a recorded contract."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.assessments.models import Assessment
from portal.clauses import service
from portal.clauses.pdf import generate
from portal.engagements.models import Engagement
from portal.orgs.models import Organisation
from portal.users.models import User


def _assessment(session: Session, org: Organisation, title: str) -> Assessment | None:
    return session.scalar(
        sa.select(Assessment)
        .join(Engagement, Engagement.id == Assessment.engagement_id)
        .where(Engagement.organisation_id == org.id, Engagement.title == title)
    )


def seed(session: Session, org: Organisation) -> None:
    """Idempotent: an assessment that already has a clause document is left alone."""
    plans = {
        "住民基本台帳システム保守業務委託": "settings",
        "ふるさと納税返礼品受付業務委託": "one_version",
        "庁内グループウェアの利用": "contract",
    }
    for title, plan in plans.items():
        assessment = _assessment(session, org, title)
        if assessment is None or service.document_of(session, assessment) is not None:
            continue
        staff = session.get(User, assessment.engagement.created_by_id)
        document = service.ensure_document(session, assessment)
        if plan == "settings":
            optional = [o.article.id for o in service.build(session, assessment, document).options]
            service.save_options(
                session,
                assessment,
                staff,
                included=set(optional[1:]),
                special_terms="乙は、本業務の開始前に、作業に従事する者の名簿を甲に提出する。",
                version=document.version,
            )
            continue
        generate(session, assessment, staff)
        if plan == "contract":
            service.save_options(
                session,
                assessment,
                staff,
                included={
                    o.article.id for o in service.build(session, assessment, document).options
                },
                special_terms=document.special_terms
                + "\n\n乙は、年1回、外部の監査人による監査報告書の写しを甲に提出する。",
                version=document.version,
            )
            generate(session, assessment, staff)
            second = service.versions_of(session, document)[0]
            service.record_contract(
                session,
                assessment,
                staff,
                service.ContractInput(
                    contract_number="令和8年度情政第12号",
                    contract_date=date(2026, 3, 27),
                    period_start=date(2026, 4, 1),
                    period_end=date(2027, 3, 31),
                    amount=1_980_000,
                    signatory="代表取締役　桜井花子",
                    attached_version_id=second.id,
                    version=0,
                ),
            )
