"""External services as their own records, applications to use them (利用申請), the approver's
decision, the designated 外部サービス管理者 and the accepted versions of a 約款型 service's terms.

An application that has been approved is an entry of the 承認済み外部サービス台帳: the register is
the set of applications in ``REGISTER_STATES`` (対策基準 9.2(4), 9.3)."""

from __future__ import annotations

import json
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.assessments.models import Assessment
from portal.db import Base, TimestampMixin, UTCDateTime, utcnow
from portal.orgs.models import Department, Organisation
from portal.questionnaires.schema import SEGMENTS, TRACKS
from portal.scoring import ismap
from portal.users.models import User
from portal.vendors.models import VendorCompany

CATEGORIES = {
    "9.1": "業務委託",
    "9.2": "外部サービス（機密性2以上）",
    "9.3": "約款型外部サービス",
}
assert set(CATEGORIES) == set(TRACKS)

STATUS_LABELS = {
    "submitted": "申請中",
    "returned": "差戻し（修正待ち）",
    "approved": "承認",
    "conditional": "条件付承認",
    "rejected": "却下",
    "suspended": "停止",
    "ending": "廃止手続中",  # the exit checklist (9.2(7)) is open
    "retired": "廃止",
}
REGISTER_STATES = ("approved", "conditional", "suspended", "ending", "retired")
ACTIVE_STATES = ("approved", "conditional")
# No longer in use: not reviewed periodically, no new terms recorded (廃止手続中・廃止).
ENDED_STATES = ("ending", "retired")
DECISIONS = {
    "approve": "承認",
    "conditional": "条件付承認",
    "reject": "却下",
    "return": "差戻し",
}
ISMAP_KINDS = {"none": "登録なし", "ismap": "ISMAP", "ismap_liu": "ISMAP-LIU"}
LAW_CHOICES = {
    "japan": "日本法",
    "foreign": "外国法",
    "selectable": "日本法を選択可",
}
COURT_CHOICES = {
    "japan": "日本の裁判所",
    "foreign": "外国の裁判所",
    "selectable": "日本の裁判所を選択可",
}
SCOPE_CHOICES = {"yes": "含まれる", "partly": "一部", "no": "含まれない"}
CLASSIFICATION_LABELS = {1: "機密性1", 2: "機密性2", 3: "機密性3"}


class ExternalService(TimestampMixin, Base):
    """A service a company provides, as this organisation knows it. The facts the register
    needs (ISMAP, certificates, data locations, subcontractors, law, SLA, exit) attach here and
    are prefilled from an assessment of the provider."""

    __tablename__ = "external_service"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(sa.ForeignKey("organisation.id"), index=True)
    vendor_company_id: Mapped[int] = mapped_column(sa.ForeignKey("vendor_company.id"), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    provider_country: Mapped[str] = mapped_column(sa.String(2), default="JP")
    # The party the body contracts with when it is not the provider (a reseller).
    contracting_party: Mapped[str] = mapped_column(sa.String(200), default="")
    source_assessment_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("assessment.id", ondelete="SET NULL")
    )

    ismap_kind: Mapped[str] = mapped_column(sa.String(10), default="none")
    ismap_number: Mapped[str] = mapped_column(sa.String(50), default="")
    ismap_registered_on: Mapped[date | None] = mapped_column(sa.Date)
    ismap_audit_period_end: Mapped[date | None] = mapped_column(sa.Date)
    ismap_renewal_pending: Mapped[bool] = mapped_column(default=False)
    ismap_scope_covers: Mapped[str | None] = mapped_column(sa.String(10))
    ismap_checked_on: Mapped[date | None] = mapped_column(sa.Date)
    # Derived on every save (``refresh_derived``) so that the register filters in SQL.
    ismap_valid_until: Mapped[date | None] = mapped_column(sa.Date)
    earliest_expiry: Mapped[date | None] = mapped_column(sa.Date, index=True)

    certificates: Mapped[str] = mapped_column(sa.Text, default="[]")  # JSON rows
    data_locations: Mapped[str] = mapped_column(sa.Text, default="[]")  # JSON rows
    subcontractors: Mapped[str] = mapped_column(sa.Text, default="[]")  # JSON rows

    governing_law: Mapped[str | None] = mapped_column(sa.String(12))
    jurisdiction: Mapped[str | None] = mapped_column(sa.String(12))
    sla_availability: Mapped[float | None] = mapped_column(sa.Float)  # %
    rto_hours: Mapped[int | None] = mapped_column()
    rpo_hours: Mapped[int | None] = mapped_column()
    backup: Mapped[str] = mapped_column(sa.Text, default="")
    exit_plan: Mapped[str] = mapped_column(sa.Text, default="")
    version: Mapped[int] = mapped_column(default=1)

    vendor_company: Mapped[VendorCompany] = relationship()
    plans: Mapped[list[ServicePlan]] = relationship(
        back_populates="service", order_by="ServicePlan.name", cascade="all, delete-orphan"
    )

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        sa.UniqueConstraint("organisation_id", "vendor_company_id", "name"),
        sa.CheckConstraint("ismap_kind IN ('none', 'ismap', 'ismap_liu')", name="ismap_kind"),
        sa.CheckConstraint(
            "sla_availability IS NULL OR (sla_availability >= 0 AND sla_availability <= 100)",
            name="sla",
        ),
        sa.CheckConstraint("rto_hours IS NULL OR rto_hours >= 0", name="rto"),
        sa.CheckConstraint("rpo_hours IS NULL OR rpo_hours >= 0", name="rpo"),
    )

    def rows(self, field: str) -> list[dict]:
        return json.loads(getattr(self, field) or "[]")

    def set_rows(self, field: str, rows: list[dict]) -> None:
        setattr(self, field, json.dumps(rows, ensure_ascii=False, sort_keys=True))

    def ismap_status(self, today: date, warn_days: int = 120) -> ismap.IsmapStatus:
        return ismap.status(
            registered=self.ismap_kind != "none",
            audit_period_end=self.ismap_audit_period_end,
            renewal_pending=self.ismap_renewal_pending,
            today=today,
            warn_days=warn_days,
        )

    def refresh_derived(self) -> None:
        self.ismap_valid_until = (
            ismap.valid_until(self.ismap_audit_period_end)
            if self.ismap_kind != "none" and self.ismap_audit_period_end
            else None
        )
        expiries = [e for e in self.expiries() if e[1] is not None]
        self.earliest_expiry = min((until for _label, until in expiries), default=None)

    def expiries(self) -> list[tuple[str, date]]:
        """(label, date) of every dated certificate, ISMAP first; a pending ISMAP renewal keeps
        the registration valid, so it does not count as expiring."""
        found: list[tuple[str, date]] = []
        if self.ismap_valid_until and not self.ismap_renewal_pending:
            found.append(
                (
                    f"{ISMAP_KINDS[self.ismap_kind]} {self.ismap_number}".strip(),
                    self.ismap_valid_until,
                )
            )
        for row in self.rows("certificates"):
            try:
                until = date.fromisoformat(row.get("expires") or "")
            except ValueError:
                continue
            found.append(
                (
                    f"{row.get('label') or row.get('kind', '')} {row.get('number', '')}".strip(),
                    until,
                )
            )
        return sorted(found, key=lambda item: item[1])

    @property
    def label(self) -> str:
        return f"{self.name}（{self.vendor_company.name}）"

    @property
    def ismap_kind_label(self) -> str:
        return ISMAP_KINDS.get(self.ismap_kind, self.ismap_kind)

    @property
    def ismap_scope_label(self) -> str:
        return SCOPE_CHOICES.get(self.ismap_scope_covers or "", "未確認")

    @property
    def governing_law_label(self) -> str:
        return LAW_CHOICES.get(self.governing_law or "", "未確認")

    @property
    def jurisdiction_label(self) -> str:
        return COURT_CHOICES.get(self.jurisdiction or "", "未確認")


class ServicePlan(Base):
    """A plan or edition of a service (Standard, Enterprise, 自治体向けプラン …)."""

    __tablename__ = "service_plan"

    id: Mapped[int] = mapped_column(primary_key=True)
    service_id: Mapped[int] = mapped_column(
        sa.ForeignKey("external_service.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(sa.String(100))
    notes: Mapped[str] = mapped_column(sa.Text, default="")

    service: Mapped[ExternalService] = relationship(back_populates="plans")

    __table_args__ = (sa.UniqueConstraint("service_id", "name"),)


class UseApplication(TimestampMixin, Base):
    """利用申請 and, once approved, its entry in the 承認済み外部サービス台帳."""

    __tablename__ = "use_application"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(sa.ForeignKey("organisation.id"), index=True)
    department_id: Mapped[int] = mapped_column(sa.ForeignKey("department.id"), index=True)
    service_id: Mapped[int] = mapped_column(sa.ForeignKey("external_service.id"), index=True)
    plan_id: Mapped[int | None] = mapped_column(sa.ForeignKey("service_plan.id"))
    assessment_id: Mapped[int | None] = mapped_column(sa.ForeignKey("assessment.id"), index=True)
    applicant_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id"), index=True)
    category: Mapped[str] = mapped_column(sa.String(5))  # 9.1 | 9.2 | 9.3

    purpose: Mapped[str] = mapped_column(sa.Text)  # 利用目的
    business: Mapped[str] = mapped_column(sa.Text)  # 利用を認める業務
    network_segment: Mapped[str] = mapped_column(sa.String(20))
    max_confidentiality: Mapped[int] = mapped_column(sa.SmallInteger)  # 取り扱う情報の最高の機密性
    personal_data: Mapped[bool] = mapped_column(default=False)
    specific_personal_data: Mapped[bool] = mapped_column(default=False)
    sensitive_personal_data: Mapped[bool] = mapped_column(default=False)

    status: Mapped[str] = mapped_column(sa.String(20), default="submitted", index=True)
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    decision: Mapped[str | None] = mapped_column(sa.String(20))
    decided_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decision_reason: Mapped[str] = mapped_column(sa.Text, default="")
    conditions: Mapped[str] = mapped_column(sa.Text, default="")
    override_reason: Mapped[str] = mapped_column(sa.Text, default="")  # approved despite a blocker
    risk_rating: Mapped[str | None] = mapped_column(sa.String(20))  # of the assessment, at decision
    reported: Mapped[bool] = mapped_column(default=False)  # to the ネットワーク管理者 and CISO
    next_review_on: Mapped[date | None] = mapped_column(sa.Date, index=True)
    status_reason: Mapped[str] = mapped_column(
        sa.Text, default=""
    )  # of the last 停止 / 廃止 / 再開
    # 廃止 before the exit checklist is complete: who decided it and why.
    exit_override_reason: Mapped[str] = mapped_column(sa.Text, default="")
    version: Mapped[int] = mapped_column(default=1)

    department: Mapped[Department] = relationship()
    organisation: Mapped[Organisation] = relationship()
    service: Mapped[ExternalService] = relationship()
    plan: Mapped[ServicePlan | None] = relationship()
    assessment: Mapped[Assessment | None] = relationship()
    applicant: Mapped[User] = relationship(foreign_keys=[applicant_id])
    decided_by: Mapped[User | None] = relationship(foreign_keys=[decided_by_id])
    managers: Mapped[list[ManagerAssignment]] = relationship(
        back_populates="application",
        order_by="ManagerAssignment.id",
        cascade="all, delete-orphan",
    )
    terms_versions: Mapped[list[TermsVersion]] = relationship(
        back_populates="application",
        order_by="TermsVersion.id",
        cascade="all, delete-orphan",
    )

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        sa.CheckConstraint("category IN ('9.1', '9.2', '9.3')", name="category"),
        sa.CheckConstraint(
            "status IN ('submitted', 'returned', 'approved', 'conditional', 'rejected', "
            "'suspended', 'ending', 'retired')",
            name="status",
        ),
        sa.CheckConstraint("max_confidentiality BETWEEN 1 AND 3", name="confidentiality"),
        sa.CheckConstraint("network_segment IN ('mynumber', 'lgwan', 'internet')", name="segment"),
        # 兼務の禁止 (対策基準 2(6)), also held by the database.
        sa.CheckConstraint(
            "decided_by_id IS NULL OR decided_by_id <> applicant_id", name="second_person"
        ),
        # 約款型 services never hold 機密性2以上 information (対策基準 9.3(1)).
        sa.CheckConstraint("category <> '9.3' OR max_confidentiality = 1", name="terms_only_c1"),
        # The register (``portal/register/service.py``): a page's ids and the counts by status
        # are read from this index alone (the filters it holds, the service to sort by name).
        sa.Index(
            "ix_use_application_register",
            "organisation_id",
            "status",
            "next_review_on",
            "service_id",
            "department_id",
        ),
    )

    @property
    def status_label(self) -> str:
        return STATUS_LABELS.get(self.status, self.status)

    @property
    def decision_label(self) -> str:
        return DECISIONS.get(self.decision or "", "")

    @property
    def category_label(self) -> str:
        return CATEGORIES.get(self.category, self.category)

    @property
    def segment_label(self) -> str:
        return SEGMENTS.get(self.network_segment, self.network_segment)

    @property
    def classification_label(self) -> str:
        return CLASSIFICATION_LABELS.get(self.max_confidentiality, "")

    @property
    def personal_data_labels(self) -> list[str]:
        return [
            label
            for flag, label in (
                (self.personal_data, "個人情報"),
                (self.specific_personal_data, "特定個人情報"),
                (self.sensitive_personal_data, "要配慮個人情報"),
            )
            if flag
        ]

    @property
    def in_register(self) -> bool:
        return self.status in REGISTER_STATES

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATES

    @property
    def current_manager(self) -> ManagerAssignment | None:
        return next((m for m in reversed(self.managers) if m.ended_on is None), None)

    @property
    def accepted_terms(self) -> TermsVersion | None:
        return next((t for t in reversed(self.terms_versions) if t.confirmed_at), None)

    @property
    def pending_terms(self) -> TermsVersion | None:
        """A recorded terms version not yet re-confirmed (9.3(2)): the service needs attention."""
        latest = self.terms_versions[-1] if self.terms_versions else None
        return latest if latest is not None and latest.confirmed_at is None else None

    @property
    def title(self) -> str:
        plan = f"　{self.plan.name}" if self.plan else ""
        return f"{self.service.name}{plan}"


class ManagerAssignment(Base):
    """Who is the 外部サービス管理者 of a register entry, from when to when (handovers kept)."""

    __tablename__ = "service_manager_assignment"

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(
        sa.ForeignKey("use_application.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id"), index=True)
    appointed_on: Mapped[date] = mapped_column(sa.Date)
    ended_on: Mapped[date | None] = mapped_column(sa.Date)
    appointed_by_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id"))
    note: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    application: Mapped[UseApplication] = relationship(back_populates="managers")
    user: Mapped[User] = relationship(foreign_keys=[user_id])
    appointed_by: Mapped[User] = relationship(foreign_keys=[appointed_by_id])

    __table_args__ = (
        sa.CheckConstraint("ended_on IS NULL OR ended_on >= appointed_on", name="period"),
    )


class TermsVersion(Base):
    """A version of a 約款型 service's terms, by the SHA-256 of its text (9.3). A version not
    yet confirmed marks the service for re-confirmation of the 9.3(2) risks."""

    __tablename__ = "terms_version"

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(
        sa.ForeignKey("use_application.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(sa.String(500))
    sha256: Mapped[str] = mapped_column(sa.String(64))
    source: Mapped[str] = mapped_column(sa.String(300))  # the uploaded file's name, or 貼り付け
    recorded_by_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id"))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    confirmed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    application: Mapped[UseApplication] = relationship(back_populates="terms_versions")
    recorded_by: Mapped[User] = relationship(foreign_keys=[recorded_by_id])
    confirmed_by: Mapped[User | None] = relationship(foreign_keys=[confirmed_by_id])
