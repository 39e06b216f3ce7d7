"""The fields of the 承認済み外部サービス台帳, once: (key, Japanese header, getter, width).

The CSV, the XLSX and the printable view all write ``COLUMNS`` in this order; the list page
shows a readable subset of the same rows. A getter takes a ``RegisterRow`` and returns text, a
date, a number or None (empty); several values in one cell are one per line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

from portal.questionnaires.countries import COUNTRIES
from portal.questionnaires.schema import DATA_PURPOSES
from portal.scoring.engine import RATINGS
from portal.web import JST, format_date

if TYPE_CHECKING:
    from portal.register.service import RegisterRow

Value = str | date | int | float | None


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    value: Callable[[RegisterRow], Value]
    width: int = 18  # characters, for the XLSX


def _country(code: str | None) -> str:
    return COUNTRIES.get(code or "", code or "")


def _day(value: datetime | None) -> date | None:
    return value.astimezone(JST).date() if value else None


def _iso(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value or "")
    except ValueError:
        return None


def _lines(items) -> str:
    return "\n".join(item for item in items if item)


def _expiry_note(until: date | None, today: date) -> str:
    if until is None:
        return ""
    if until < today:
        return f"（有効期限 {format_date(until)}・期限切れ）"
    return f"（有効期限 {format_date(until)}）"


def _certificates(row: RegisterRow) -> str:
    return _lines(
        " ".join(
            part
            for part in (
                (c.get("label") or c.get("kind") or "認証").strip(),
                (c.get("number") or "").strip(),
                (c.get("body") and f"認証機関 {c['body'].strip()}") or "",
                (c.get("scope") and f"範囲 {c['scope'].strip()}") or "",
            )
            if part
        )
        + (_expiry_note(_iso(c.get("expires")), row.today) or "（有効期限の記載なし）")
        for c in row.service.rows("certificates")
    )


def _earliest_expiry(row: RegisterRow) -> str:
    until = row.service.earliest_expiry
    if until is None:
        return ""
    mark = "（期限切れ）" if row.certificate_expired else ""
    mark = mark or ("（期限間近）" if row.certificate_expiring else "")
    return f"{format_date(until)}{mark}"


def _data_locations(row: RegisterRow) -> str:
    return _lines(
        "　".join(
            part
            for part in (
                DATA_PURPOSES.get(loc.get("purpose", ""), loc.get("purpose", "")),
                _country(loc.get("country")),
                (loc.get("region") or "").strip(),
            )
            if part
        )
        for loc in row.service.rows("data_locations")
    )


def _subcontractors(row: RegisterRow) -> str:
    def line(sub: dict) -> str:
        approved = _iso(sub.get("approved_on"))
        parts = [
            (sub.get("name") or "").strip(),
            f"（{_country(sub.get('country'))}）" if sub.get("country") else "",
            f"　{sub['role'].strip()}" if (sub.get("role") or "").strip() else "",
            f"　承認日 {format_date(approved)}" if approved else "　承認日なし",
        ]
        return "".join(parts)

    return _lines(line(sub) for sub in row.service.rows("subcontractors"))


def _manager_history(row: RegisterRow) -> str:
    return _lines(
        f"{m.user.name}（{format_date(m.appointed_on)}〜{format_date(m.ended_on)}）"
        for m in row.application.managers
    )


def _handovers(row: RegisterRow) -> int:
    return max(len(row.application.managers) - 1, 0)


def _terms_check(row: RegisterRow) -> str:
    pending = row.application.pending_terms
    if pending is None:
        return ""
    return (
        f"要再確認（{format_date(_day(pending.recorded_at))}に新しい版を記録、"
        f"SHA-256 {pending.sha256}）"
    )


def _lifecycle(phase: str) -> Callable[[RegisterRow], str]:
    def value(row: RegisterRow) -> str:
        state = row.lifecycle
        if state is None or not row.application.in_register:
            return ""
        if phase == "build":
            return state.build_label
        if phase == "exit":
            return state.exit_label
        issues = f"（要対応 {state.open_issues}件）" if state.open_issues else ""
        return f"{state.operation_label}{issues}"

    return value


def _next_review(row: RegisterRow) -> str:
    due = row.application.next_review_on
    if due is None:
        return ""
    mark = "（期限超過）" if row.review_overdue else ""
    return f"{format_date(due)}{mark}"


def _contract_number(row: RegisterRow) -> str:
    if row.contract is None:
        return "（未登録）" if row.document is not None else ""
    return f"{row.contract.contract_number}（{format_date(row.contract.contract_date)}契約）"


def _clause_version(row: RegisterRow) -> str:
    version = row.attached_version
    if version is None:
        return "（未添付）" if row.contract is not None else ""
    number = row.document.number if row.document else ""
    return f"{version.label}（文書番号 {number}、SHA-256 {version.sha256}）"


def _sla(row: RegisterRow) -> str:
    value = row.service.sla_availability
    return f"{value:g}%" if value is not None else ""


def _hours(value: int | None) -> str:
    return f"{value}時間" if value is not None else ""


COLUMNS: tuple[Column, ...] = (
    Column("id", "申請番号", lambda r: r.application.id, 9),
    Column("service", "サービス名", lambda r: r.service.name, 28),
    Column(
        "plan", "プラン・エディション", lambda r: r.application.plan and r.application.plan.name
    ),
    Column("provider", "提供者（法人名）", lambda r: r.service.vendor_company.name, 26),
    Column(
        "corporate_number",
        "提供者の法人番号",
        lambda r: r.service.vendor_company.corporate_number,
        16,
    ),
    Column("provider_country", "提供者の国", lambda r: _country(r.service.provider_country), 12),
    Column(
        "contracting_party",
        "契約の相手方",
        lambda r: r.service.contracting_party or "提供者（直接契約）",
        22,
    ),
    Column("category", "区分", lambda r: r.application.category_label, 24),
    Column("department", "利用課", lambda r: r.application.department.name, 16),
    Column("business", "利用を認める業務", lambda r: r.application.business, 36),
    Column("purpose", "利用目的", lambda r: r.application.purpose, 36),
    Column("segment", "利用するネットワーク", lambda r: r.application.segment_label, 22),
    Column(
        "classification",
        "取り扱う情報の最高の機密性",
        lambda r: r.application.classification_label,
        12,
    ),
    Column(
        "personal_data",
        "個人情報の取扱い",
        lambda r: "、".join(r.application.personal_data_labels) or "なし",
        20,
    ),
    Column("applicant", "申請者", lambda r: r.application.applicant.name, 14),
    Column("submitted_on", "申請日", lambda r: _day(r.application.submitted_at), 12),
    Column(
        "approver",
        "判断した許可権限者",
        lambda r: r.application.decided_by and r.application.decided_by.name,
        14,
    ),
    Column("decided_on", "判断日", lambda r: _day(r.application.decided_at), 12),
    Column("conditions", "利用の条件", lambda r: r.application.conditions, 36),
    Column(
        "override_reason",
        "不可の要因を承知で承認した理由",
        lambda r: r.application.override_reason,
        30,
    ),
    Column("status", "状態", lambda r: r.application.status_label, 12),
    Column("status_reason", "停止・廃止・再開の理由", lambda r: r.application.status_reason, 30),
    Column(
        "exit_override_reason",
        "利用終了時の確認を終えずに廃止した理由",
        lambda r: r.application.exit_override_reason,
        30,
    ),
    Column("manager", "外部サービス管理者", lambda r: r.manager and r.manager.user.name, 14),
    Column(
        "manager_department",
        "外部サービス管理者の所属",
        lambda r: r.manager and "、".join(d.name for d in r.manager.user.departments),
        16,
    ),
    Column(
        "manager_since",
        "外部サービス管理者の指定日",
        lambda r: r.manager and r.manager.appointed_on,
        12,
    ),
    Column("handovers", "外部サービス管理者の引継ぎ回数", _handovers, 10),
    Column("manager_history", "外部サービス管理者の履歴", _manager_history, 30),
    Column("ismap_kind", "ISMAPの登録区分", lambda r: r.service.ismap_kind_label, 12),
    Column("ismap_number", "ISMAP登録番号", lambda r: r.service.ismap_number, 14),
    Column("ismap_registered_on", "ISMAP登録日", lambda r: r.service.ismap_registered_on, 12),
    Column(
        "ismap_audit_period_end",
        "ISMAP監査対象期間の終了日",
        lambda r: r.service.ismap_audit_period_end,
        12,
    ),
    Column("ismap_valid_until", "ISMAP登録の有効期限", lambda r: r.service.ismap_valid_until, 12),
    Column("ismap_status", "ISMAPの状態", lambda r: r.ismap.label, 22),
    Column(
        "ismap_scope",
        "言明の範囲にサービスが含まれるか",
        lambda r: r.service.ismap_scope_label,
        12,
    ),
    Column("ismap_checked_on", "ISMAP登録の最終確認日", lambda r: r.service.ismap_checked_on, 12),
    Column("certificates", "その他の認証（有効期限）", _certificates, 40),
    Column("earliest_expiry", "最も早い証明書の有効期限", _earliest_expiry, 20),
    Column("data_locations", "データの保存場所（用途・国・地域）", _data_locations, 34),
    Column("governing_law", "準拠法", lambda r: r.service.governing_law_label, 14),
    Column("jurisdiction", "管轄裁判所", lambda r: r.service.jurisdiction_label, 16),
    Column("subcontractors", "再委託先（名称・国・役割・承認日）", _subcontractors, 40),
    Column("sla_availability", "稼働率（SLA）", _sla, 10),
    Column("rto", "目標復旧時間（RTO）", lambda r: _hours(r.service.rto_hours), 10),
    Column("rpo", "目標復旧時点（RPO）", lambda r: _hours(r.service.rpo_hours), 10),
    Column("backup", "バックアップ", lambda r: r.service.backup, 30),
    Column(
        "exit_plan",
        "利用終了時の計画（移行・データの返却と消去）",
        lambda r: r.service.exit_plan,
        36,
    ),
    Column(
        "terms_url",
        "利用規約のURL",
        lambda r: r.application.accepted_terms and r.application.accepted_terms.url,
        30,
    ),
    Column(
        "terms_sha256",
        "同意した利用規約の版のSHA-256",
        lambda r: r.application.accepted_terms and r.application.accepted_terms.sha256,
        30,
    ),
    Column("terms_check", "利用規約の再確認", _terms_check, 30),
    Column("build_checks", "導入・構築時の確認", _lifecycle("build"), 16),
    Column("operation_checks", "運用・保守時の確認", _lifecycle("operation"), 24),
    Column("exit_checks", "利用終了時の確認", _lifecycle("exit"), 16),
    Column(
        "risk_rating",
        "リスク評価",
        lambda r: RATINGS.get(r.application.risk_rating or "", "評価なし"),
        10,
    ),
    Column("next_review", "次回の定期確認の期限", _next_review, 20),
    Column("contract_number", "契約番号（契約日）", _contract_number, 26),
    Column("clause_version", "契約に添付した特記事項の版", _clause_version, 40),
)

HEADERS = tuple(column.header for column in COLUMNS)
