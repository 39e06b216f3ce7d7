"""特記事項: the staff's choices, generated versions and the contract. Plain functions taking
explicit arguments; the views render the HTML and the PDF and hand the bytes in."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from sqlalchemy.orm import Session, joinedload

from portal.assessments import store
from portal.assessments.models import Assessment
from portal.audit import service as audit
from portal.clauses import catalogue as catalogues
from portal.clauses.assemble import (
    SPECIAL_TERMS_MAX,
    Document,
    assemble,
    japanese_date,
)
from portal.clauses.models import ClauseDocument, ClauseVersion, Contract
from portal.evaluations.service import SCORED_STATES, outcome_of
from portal.pdf.glyphs import printable, printable_value
from portal.questionnaires import loader
from portal.users.models import User

CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class ClauseError(ValueError):
    """Refused with a message for the user; nothing was changed."""


@dataclass(frozen=True)
class ContractInput:
    contract_number: str
    contract_date: date
    period_start: date
    period_end: date
    amount: int | None
    signatory: str
    attached_version_id: int | None
    version: int


def availability_problem(session: Session, assessment: Assessment) -> str | None:
    """Why no 特記事項 can be made for this assessment yet, or None."""
    if assessment.engagement.track not in catalogues.latest().tracks:
        return "約款による外部サービス（対策基準9.3）は、個別の特記事項を定めません。"
    if assessment.status not in SCORED_STATES:
        return "事業者が評価票を提出した後に作成できます。"
    outcome = outcome_of(session, assessment)
    if outcome is not None and outcome.decision == "reject" and assessment.status == "decided":
        return "「不可」と判定された事業者とは契約しないため、特記事項は作成できません。"
    return None


def document_of(session: Session, assessment: Assessment) -> ClauseDocument | None:
    return session.scalar(
        sa.select(ClauseDocument).where(ClauseDocument.assessment_id == assessment.id)
    )


def ensure_document(session: Session, assessment: Assessment) -> ClauseDocument:
    """The assessment's clause document, created on first use with its number (文書番号) and the
    conditions of the review outcome as the first special terms."""
    existing = document_of(session, assessment)
    if existing is not None:
        return existing
    outcome = outcome_of(session, assessment)
    document = ClauseDocument(
        organisation_id=assessment.organisation_id,
        assessment_id=assessment.id,
        number=f"pending-{assessment.id}",
        special_terms=(outcome.conditions if outcome and outcome.decision == "conditional" else "")
        or "",
    )
    session.add(document)
    session.flush()
    document.number = f"特記-{document.created_at.year}-{document.id:05d}"
    session.flush()
    return document


def fields_of(assessment: Assessment, answers: dict) -> dict[str, str | None]:
    """The values of the ``FIELDS`` placeholders: 甲 from the organisation profile, 乙 from the
    vendor's answers (A. 会社情報) or else the company record, the 案件 from the engagement."""
    organisation = assessment.engagement.organisation
    company = assessment.vendor_company
    engagement = assessment.engagement
    period = None
    if engagement.period_start and engagement.period_end:
        period = (
            f"{japanese_date(engagement.period_start)}から"
            f"{japanese_date(engagement.period_end)}まで"
        )

    def answered(key: str, fallback: str | None) -> str | None:
        value = answers.get(key)
        return value.strip() if isinstance(value, str) and value.strip() else fallback

    return {
        "org.name": organisation.name,
        "org.self": organisation.self_designation,
        "org.ciso_title": organisation.ciso_title,
        "org.network_admin_title": organisation.network_admin_title,
        "vendor.name": answered("company.legal_name", company.name),
        "vendor.address": answered("company.address", company.address),
        "vendor.representative": answered("company.representative", company.representative),
        "engagement.title": engagement.title,
        "engagement.information": engagement.information,
        "engagement.period": period,
    }


def _ids(raw: str) -> list[str]:
    return list(json.loads(raw or "[]"))


def build(session: Session, assessment: Assessment, document: ClauseDocument | None) -> Document:
    """The 特記事項 as it stands: the latest catalogue, the answers, the staff's choices."""
    catalogue = catalogues.latest()
    questionnaire = loader.get(assessment.questionnaire_key, assessment.questionnaire_version)
    # What the fonts cannot draw is shown as 〓 in the preview and the PDF alike.
    answers = printable_value(store.values(session, assessment))
    return assemble(
        catalogue,
        questionnaire,
        assessment.engagement.facts,
        answers,
        printable_value(fields_of(assessment, answers)),
        switched_off=_ids(document.switched_off) if document else (),
        switched_on=_ids(document.switched_on) if document else (),
        special_terms=printable(document.special_terms) if document else "",
    )


def save_options(
    session: Session,
    assessment: Assessment,
    actor: User,
    *,
    included: set[str],
    special_terms: str,
    version: int,
) -> ClauseDocument:
    """Switch optional articles on or off (``included`` = the optional articles to keep) and set
    the special terms. Mandatory articles cannot be removed; ids that are not optional articles of
    this document are refused."""
    document = ensure_document(session, assessment)
    if version and version != document.version:
        raise ClauseError(
            "他の職員がこの特記事項の設定を変更しました。画面を読み込み直してから操作してください。"
        )
    special_terms = CONTROL.sub("", special_terms.replace("\r\n", "\n")).strip()
    if len(special_terms) > SPECIAL_TERMS_MAX:
        raise ClauseError(f"特約事項は{SPECIAL_TERMS_MAX:,}文字以内で入力してください。")
    current = build(session, assessment, document)
    optional = {o.article.id: o.article for o in current.options}
    mandatory = {a.id for a in current.articles if a.mandatory}
    unknown = included - set(optional) - mandatory  # naming a mandatory article changes nothing
    if unknown:
        raise ClauseError("選択できない条項が指定されました。画面を読み込み直してください。")
    off = sorted(a for a, art in optional.items() if art.default and a not in included)
    on = sorted(a for a, art in optional.items() if not art.default and a in included)
    before = (_ids(document.switched_off), _ids(document.switched_on), document.special_terms)
    document.switched_off, document.switched_on = json.dumps(off), json.dumps(on)
    document.special_terms = special_terms
    if before != (off, on, special_terms):
        audit.record(
            session,
            "clauses.options",
            actor=actor,
            obj=assessment,
            organisation_id=assessment.organisation_id,
            details={"off": off, "on": on, "special_terms_chars": len(special_terms)},
        )
    session.flush()
    return document


def next_version_number(session: Session, document: ClauseDocument) -> int:
    latest = session.scalar(
        sa.select(sa.func.max(ClauseVersion.number)).where(ClauseVersion.document_id == document.id)
    )
    return (latest or 0) + 1


def store_version(
    session: Session,
    assessment: Assessment,
    document: ClauseDocument,
    built: Document,
    number: int,
    pdf: bytes,
    actor: User,
) -> ClauseVersion:
    """Keep a generated PDF as version ``number``, with its hash, author and time (audited)."""
    if built.missing:
        raise ClauseError("未入力の項目があるため作成できません。")
    digest = hashlib.sha256(pdf).hexdigest()
    version = ClauseVersion(
        document_id=document.id,
        number=number,
        catalogue_version=built.catalogue_version,
        questionnaire_version=assessment.questionnaire_version,
        articles=json.dumps(built.snapshot(), ensure_ascii=False),
        pdf=pdf,
        sha256=digest,
        size=len(pdf),
        created_by_id=actor.id,
    )
    session.add(version)
    session.flush()
    audit.record(
        session,
        "clauses.generate",
        actor=actor,
        obj=assessment,
        organisation_id=assessment.organisation_id,
        details={
            "document": document.number,
            "version": number,
            "sha256": digest,
            "bytes": len(pdf),
            "catalogue_version": built.catalogue_version,
        },
    )
    return version


def versions_of(session: Session, document: ClauseDocument | None) -> list[ClauseVersion]:
    if document is None:
        return []
    return list(
        session.scalars(
            sa.select(ClauseVersion)
            .where(ClauseVersion.document_id == document.id)
            .order_by(ClauseVersion.number.desc())
        )
    )


def version_of(session: Session, document: ClauseDocument | None, number: int) -> ClauseVersion:
    version = None
    if document is not None:
        version = session.scalar(
            sa.select(ClauseVersion).where(
                ClauseVersion.document_id == document.id, ClauseVersion.number == number
            )
        )
    if version is None:
        raise LookupError(number)
    return version


def download(
    session: Session, assessment: Assessment, version: ClauseVersion, actor: User
) -> bytes:
    """The stored PDF of ``version``, its hash checked again; the download is audited."""
    data = version.pdf
    if hashlib.sha256(data).hexdigest() != version.sha256:
        raise ClauseError(
            "保存されたPDFが作成時のハッシュ値と一致しません。管理者に連絡してください。"
        )
    audit.record(
        session,
        "clauses.download",
        actor=actor,
        obj=assessment,
        organisation_id=assessment.organisation_id,
        details={
            "document": version.document.number,
            "version": version.number,
            "sha256": version.sha256,
        },
    )
    return data


@dataclass(frozen=True)
class ArticleChange:
    id: str
    title: str
    before: dict | None
    after: dict | None

    @property
    def state(self) -> str:
        if self.before is None:
            return "追加"
        if self.after is None:
            return "削除"
        if self.before["text"] != self.after["text"] or self.before["title"] != self.after["title"]:
            return "変更"
        return "番号のみ変更" if self.before["number"] != self.after["number"] else "変更なし"


def compare(before: ClauseVersion, after: ClauseVersion) -> list[ArticleChange]:
    """Article by article (matched by id), in the newer version's order; removed ones last."""
    old = {a["id"]: a for a in json.loads(before.articles)}
    new = json.loads(after.articles)
    rows = [ArticleChange(a["id"], a["title"], old.get(a["id"]), a) for a in new]
    new_ids = {a["id"] for a in new}
    rows += [ArticleChange(i, a["title"], a, None) for i, a in old.items() if i not in new_ids]
    return rows


def contract_of(session: Session, document: ClauseDocument | None) -> Contract | None:
    if document is None:
        return None
    return session.scalar(sa.select(Contract).where(Contract.document_id == document.id))


def contracts_for(
    session: Session, assessment_ids: list[int]
) -> dict[int, tuple[ClauseDocument, Contract | None]]:
    """Per assessment that has a clause document: the document and its contract, if recorded,
    with the attached version (one query for the list)."""
    if not assessment_ids:
        return {}
    rows = session.execute(
        sa.select(ClauseDocument, Contract)
        .outerjoin(Contract, Contract.document_id == ClauseDocument.id)
        .options(joinedload(Contract.attached_version))
        .where(ClauseDocument.assessment_id.in_(assessment_ids))
    )
    return {document.assessment_id: (document, contract) for document, contract in rows}


def record_contract(
    session: Session, assessment: Assessment, actor: User, data: ContractInput
) -> Contract:
    """Record (or correct) the contract and which generated version was attached to it."""
    document = document_of(session, assessment)
    if document is None:
        raise ClauseError("特記事項を作成してから契約を記録してください。")
    number = CONTROL.sub("", data.contract_number).strip()
    signatory = CONTROL.sub("", data.signatory).strip()
    if not number or len(number) > 50:
        raise ClauseError("契約番号を50文字以内で入力してください。")
    if not signatory or len(signatory) > 200:
        raise ClauseError("乙の記名者（役職・氏名）を200文字以内で入力してください。")
    if data.period_end < data.period_start:
        raise ClauseError("契約期間の終了日は開始日以降の日付にしてください。")
    if data.amount is not None and data.amount < 0:
        raise ClauseError("契約金額は0円以上で入力してください。")
    attached = None
    if data.attached_version_id is not None:
        attached = session.get(ClauseVersion, data.attached_version_id)
        if attached is None or attached.document_id != document.id:
            raise ClauseError("添付した版は、この特記事項の版から選んでください。")
    contract = contract_of(session, document)
    if contract is None:
        contract = Contract(organisation_id=assessment.organisation_id, document_id=document.id)
        session.add(contract)
    elif data.version != contract.version:
        raise ClauseError(
            "他の職員がこの契約の記録を変更しました。画面を読み込み直してから操作してください。"
        )
    contract.contract_number = number
    contract.contract_date = data.contract_date
    contract.period_start = data.period_start
    contract.period_end = data.period_end
    contract.amount = data.amount
    contract.signatory = signatory
    contract.attached_version_id = attached.id if attached else None
    contract.recorded_by_id = actor.id
    session.flush()
    audit.record(
        session,
        "contract.record",
        actor=actor,
        obj=assessment,
        organisation_id=assessment.organisation_id,
        details={
            "contract_number": number,
            "document": document.number,
            "attached_version": attached.number if attached else None,
            "attached_sha256": attached.sha256 if attached else None,
        },
    )
    return contract
