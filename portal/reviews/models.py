"""定期確認 (periodic confirmation) of contractors and approved external services, and what
keeps it honest: the schedule with its triggers, the confirmation a vendor answers and staff
review, findings with corrective actions, the vendor's incident and change reports, the exit
checklist of a 業務委託 contract, files kept as evidence and the record of reminders sent
(対策基準 9.1(2)⑨⑩, 9.1(3), 9.2(6), 9.2(7), 10.1(4)).

A schedule belongs to exactly one subject: the assessment of a 業務委託 contractor (engagement ×
vendor, 9.1) or an approved 利用申請 of an external service (9.2 / 9.3). External-service
engagements are confirmed through the application that uses them, never twice."""

from __future__ import annotations

import json
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.approvals.models import UseApplication
from portal.assessments.models import Assessment
from portal.db import Base, TimestampMixin, UTCDateTime, utcnow
from portal.orgs.models import Department, Organisation
from portal.users.models import User
from portal.vendors.models import VendorCompany

SCHEDULE_STATUSES = {
    "active": "契約・利用中",
    "ending": "終了手続中",
    "ended": "終了",
}

TRIGGER_KINDS = {
    "certificate_expiry": "認証の有効期限",
    "ismap_expiry": "ISMAP登録の有効期限",
    "subcontractor_change": "再委託先の変更",
    "location_change": "データの保存場所の変更",
    "terms_change": "利用規約の変更",
    "incident": "事故（インシデント）の報告",
}

CONFIRMATION_REASONS = {"scheduled": "確認の間隔による定期の確認", **TRIGGER_KINDS}

CONFIRMATION_STATUSES = {
    "open": "回答待ち",
    "submitted": "確認待ち",
    "returned": "再回答待ち",
    "completed": "完了",
}
VENDOR_CONFIRMATION_STATUSES = {**CONFIRMATION_STATUSES, "submitted": "提出済み"}

METHODS = {
    "document": "書面",
    "onsite": "実地",
    "remote": "リモート",
    "third_party": "第三者報告",
}

SEVERITIES = {"high": "高", "medium": "中", "low": "低"}
FINDING_STATUSES = {"open": "対応中", "closed": "完了"}

REPORT_KINDS = {
    "incident": "事故（インシデント）",
    "subcontractor_change": "再委託先の変更",
    "location_change": "データの保存場所の変更",
}

EXIT_RESULTS = {
    "done": "実施済み",
    "not_applicable": "該当なし",
}

FILE_PURPOSES = {
    "evidence": "証跡",
    "deletion_certificate": "消去証明書",
    "audit_report": "監査報告書",
    "report": "報告の添付資料",
}

REMINDER_STATUSES = ("sent", "failed")


class ReviewSchedule(TimestampMixin, Base):
    """When the next confirmation of one contractor or service is due, and why."""

    __tablename__ = "review_schedule"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(sa.ForeignKey("organisation.id"), index=True)
    department_id: Mapped[int] = mapped_column(sa.ForeignKey("department.id"), index=True)
    vendor_company_id: Mapped[int] = mapped_column(sa.ForeignKey("vendor_company.id"), index=True)
    assessment_id: Mapped[int | None] = mapped_column(sa.ForeignKey("assessment.id"), unique=True)
    application_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("use_application.id"), unique=True
    )
    title: Mapped[str] = mapped_column(sa.String(300))
    risk_rating: Mapped[str | None] = mapped_column(sa.String(20))
    personal_data: Mapped[bool] = mapped_column(default=False)
    interval_months: Mapped[int] = mapped_column(sa.SmallInteger)
    interval_custom: Mapped[bool] = mapped_column(default=False)  # set per item by staff
    starts_on: Mapped[date] = mapped_column(sa.Date)  # the decision: the first period's start
    last_confirmed_on: Mapped[date | None] = mapped_column(sa.Date)
    regular_due_on: Mapped[date] = mapped_column(sa.Date)  # by the interval, a business day
    due_on: Mapped[date] = mapped_column(sa.Date, index=True)  # brought forward by triggers
    status: Mapped[str] = mapped_column(sa.String(10), default="active", index=True)
    ending_on: Mapped[date | None] = mapped_column(sa.Date)  # the contract / use ends
    ended_on: Mapped[date | None] = mapped_column(sa.Date)
    end_reason: Mapped[str] = mapped_column(sa.Text, default="")
    exit_override_reason: Mapped[str] = mapped_column(sa.Text, default="")
    version: Mapped[int] = mapped_column(default=1)

    organisation: Mapped[Organisation] = relationship()
    department: Mapped[Department] = relationship()
    vendor_company: Mapped[VendorCompany] = relationship()
    assessment: Mapped[Assessment | None] = relationship()
    application: Mapped[UseApplication | None] = relationship()
    triggers: Mapped[list[ReviewTrigger]] = relationship(
        back_populates="schedule", order_by="ReviewTrigger.id", cascade="all, delete-orphan"
    )
    confirmations: Mapped[list[Confirmation]] = relationship(
        back_populates="schedule", order_by="Confirmation.number", cascade="all, delete-orphan"
    )

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        sa.CheckConstraint(
            "(assessment_id IS NULL) <> (application_id IS NULL)", name="one_subject"
        ),
        sa.CheckConstraint("interval_months BETWEEN 1 AND 60", name="interval"),
        sa.CheckConstraint("status IN ('active', 'ending', 'ended')", name="status"),
        sa.CheckConstraint("due_on <= regular_due_on", name="due"),
    )

    @property
    def kind(self) -> str:
        return "assessment" if self.assessment_id else "application"

    @property
    def kind_label(self) -> str:
        return "業務委託" if self.assessment_id else "外部サービス"

    @property
    def status_label(self) -> str:
        return SCHEDULE_STATUSES.get(self.status, self.status)

    @property
    def open_triggers(self) -> list[ReviewTrigger]:
        return [t for t in self.triggers if t.confirmation_id is None]

    @property
    def current_confirmation(self) -> Confirmation | None:
        for confirmation in reversed(self.confirmations):
            if confirmation.status != "completed":
                return confirmation
        return None

    @property
    def last_confirmation(self) -> Confirmation | None:
        done = [c for c in self.confirmations if c.status == "completed"]
        return done[-1] if done else None


class ReviewTrigger(Base):
    """Something that brings the next confirmation forward. ``key`` makes the triggers found by
    the daily job (certificate expiries) idempotent; it is answered by the confirmation that
    covered it."""

    __tablename__ = "review_trigger"

    id: Mapped[int] = mapped_column(primary_key=True)
    schedule_id: Mapped[int] = mapped_column(
        sa.ForeignKey("review_schedule.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(sa.String(30))
    key: Mapped[str] = mapped_column(sa.String(200))
    occurred_on: Mapped[date] = mapped_column(sa.Date)
    due_on: Mapped[date] = mapped_column(sa.Date)
    detail: Mapped[str] = mapped_column(sa.Text, default="")
    report_id: Mapped[int | None] = mapped_column(sa.ForeignKey("vendor_report.id"))
    confirmation_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("confirmation.id"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    schedule: Mapped[ReviewSchedule] = relationship(back_populates="triggers")

    __table_args__ = (
        sa.UniqueConstraint("schedule_id", "key"),
        sa.CheckConstraint(
            "kind IN ('certificate_expiry', 'ismap_expiry', 'subcontractor_change', "
            "'location_change', 'terms_change', 'incident')",
            name="kind",
        ),
    )

    @property
    def kind_label(self) -> str:
        return TRIGGER_KINDS.get(self.kind, self.kind)


class Confirmation(TimestampMixin, Base):
    """One 定期確認: the vendor's answers per section against the baseline, staff's review,
    the method, the sign-off and the next due date."""

    __tablename__ = "confirmation"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(sa.ForeignKey("organisation.id"), index=True)
    schedule_id: Mapped[int] = mapped_column(
        sa.ForeignKey("review_schedule.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column()  # 第n回
    reason: Mapped[str] = mapped_column(sa.String(30))  # scheduled | a trigger kind
    questionnaire_key: Mapped[str] = mapped_column(sa.String(50))
    questionnaire_version: Mapped[str] = mapped_column(sa.String(20))
    period_from: Mapped[date] = mapped_column(sa.Date)
    period_to: Mapped[date] = mapped_column(sa.Date)
    due_on: Mapped[date] = mapped_column(sa.Date, index=True)
    status: Mapped[str] = mapped_column(sa.String(10), default="open", index=True)
    method: Mapped[str | None] = mapped_column(sa.String(20))
    baseline: Mapped[str] = mapped_column(sa.Text, default="{}")  # JSON: answers confirmed before
    opened_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    answered_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    return_comment: Mapped[str] = mapped_column(sa.Text, default="")
    checked_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    completed_on: Mapped[date | None] = mapped_column(sa.Date)
    result: Mapped[str] = mapped_column(sa.Text, default="")  # sign-off: the reviewer's summary
    next_due_on: Mapped[date | None] = mapped_column(sa.Date)
    version: Mapped[int] = mapped_column(default=1)

    schedule: Mapped[ReviewSchedule] = relationship(back_populates="confirmations")
    sections: Mapped[list[ConfirmationSection]] = relationship(
        back_populates="confirmation",
        order_by="ConfirmationSection.id",
        cascade="all, delete-orphan",
    )
    answered_by: Mapped[User | None] = relationship(foreign_keys=[answered_by_id])
    checked_by: Mapped[User | None] = relationship(foreign_keys=[checked_by_id])

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        sa.UniqueConstraint("schedule_id", "number"),
        sa.CheckConstraint(
            "status IN ('open', 'submitted', 'returned', 'completed')", name="status"
        ),
        sa.CheckConstraint(
            "method IS NULL OR method IN ('document', 'onsite', 'remote', 'third_party')",
            name="method",
        ),
        sa.CheckConstraint("period_to >= period_from", name="period"),
        # The vendor (or the staff member keying in a paper reply) is not the one who checks.
        sa.CheckConstraint(
            "checked_by_id IS NULL OR answered_by_id IS NULL OR checked_by_id <> answered_by_id",
            name="second_person",
        ),
    )

    @property
    def status_label(self) -> str:
        return CONFIRMATION_STATUSES.get(self.status, self.status)

    @property
    def vendor_status_label(self) -> str:
        return VENDOR_CONFIRMATION_STATUSES.get(self.status, self.status)

    @property
    def reason_label(self) -> str:
        return CONFIRMATION_REASONS.get(self.reason, self.reason)

    @property
    def method_label(self) -> str:
        return METHODS.get(self.method or "", "未記録")

    @property
    def label(self) -> str:
        return f"第{self.number}回 定期確認"

    def baseline_values(self) -> dict:
        return json.loads(self.baseline or "{}")

    @property
    def editable_by_vendor(self) -> bool:
        return self.status in ("open", "returned")


class ConfirmationSection(Base):
    """The answer to one section: no change, or the changed values (question key → value)."""

    __tablename__ = "confirmation_section"

    id: Mapped[int] = mapped_column(primary_key=True)
    confirmation_id: Mapped[int] = mapped_column(
        sa.ForeignKey("confirmation.id", ondelete="CASCADE"), index=True
    )
    section_key: Mapped[str] = mapped_column(sa.String(50))
    changed: Mapped[bool | None] = mapped_column()  # None: not answered yet
    values: Mapped[str] = mapped_column(sa.Text, default="{}")  # JSON: the section's answers
    note: Mapped[str] = mapped_column(sa.Text, default="")
    updated_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    confirmation: Mapped[Confirmation] = relationship(back_populates="sections")

    __table_args__ = (sa.UniqueConstraint("confirmation_id", "section_key"),)

    def value_map(self) -> dict:
        return json.loads(self.values or "{}")


class Finding(TimestampMixin, Base):
    """A finding of a confirmation or of a contractor audit, with its corrective action."""

    __tablename__ = "finding"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(sa.ForeignKey("organisation.id"), index=True)
    department_id: Mapped[int] = mapped_column(sa.ForeignKey("department.id"), index=True)
    confirmation_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("confirmation.id"), index=True
    )
    audit_id: Mapped[int | None] = mapped_column(sa.ForeignKey("contractor_audit.id"), index=True)
    severity: Mapped[str] = mapped_column(sa.String(10))
    title: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    corrective_action: Mapped[str] = mapped_column(sa.Text)  # 是正措置
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id"), index=True)
    due_on: Mapped[date] = mapped_column(sa.Date, index=True)
    status: Mapped[str] = mapped_column(sa.String(10), default="open", index=True)
    closed_on: Mapped[date | None] = mapped_column(sa.Date)
    closed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    closing_note: Mapped[str] = mapped_column(sa.Text, default="")
    created_by_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id"))
    version: Mapped[int] = mapped_column(default=1)

    owner: Mapped[User] = relationship(foreign_keys=[owner_id])
    closed_by: Mapped[User | None] = relationship(foreign_keys=[closed_by_id])

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        sa.CheckConstraint("(confirmation_id IS NULL) <> (audit_id IS NULL)", name="one_source"),
        sa.CheckConstraint("severity IN ('high', 'medium', 'low')", name="severity"),
        sa.CheckConstraint("status IN ('open', 'closed')", name="status"),
        sa.CheckConstraint("status = 'open' OR closed_on IS NOT NULL", name="closed"),
    )

    @property
    def severity_label(self) -> str:
        return SEVERITIES.get(self.severity, self.severity)

    @property
    def status_label(self) -> str:
        return FINDING_STATUSES.get(self.status, self.status)


class VendorReport(Base):
    """An incident or a change (subcontractor, data location) reported by the vendor."""

    __tablename__ = "vendor_report"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(sa.ForeignKey("organisation.id"), index=True)
    schedule_id: Mapped[int] = mapped_column(sa.ForeignKey("review_schedule.id"), index=True)
    vendor_company_id: Mapped[int] = mapped_column(sa.ForeignKey("vendor_company.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(30))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())  # when it happened / takes effect
    summary: Mapped[str] = mapped_column(sa.Text)  # what happened / what changes
    information_affected: Mapped[str] = mapped_column(sa.Text, default="")
    personal_data_affected: Mapped[bool] = mapped_column(default=False)
    measures: Mapped[str] = mapped_column(sa.Text, default="")  # what has been done
    reported_by_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id"))
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    acknowledged_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user_account.id"))
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    schedule: Mapped[ReviewSchedule] = relationship()
    reported_by: Mapped[User] = relationship(foreign_keys=[reported_by_id])
    acknowledged_by: Mapped[User | None] = relationship(foreign_keys=[acknowledged_by_id])

    __table_args__ = (
        sa.CheckConstraint(
            "kind IN ('incident', 'subcontractor_change', 'location_change')", name="kind"
        ),
    )

    @property
    def kind_label(self) -> str:
        return REPORT_KINDS.get(self.kind, self.kind)


class ExitCheck(Base):
    """One item of the exit checklist of a 業務委託 contract (9.1(2)⑨); the latest record of an
    item is its state. External services record their exit in ``LifecycleCheck`` (9.2(7))."""

    __tablename__ = "exit_check"

    id: Mapped[int] = mapped_column(primary_key=True)
    schedule_id: Mapped[int] = mapped_column(
        sa.ForeignKey("review_schedule.id", ondelete="CASCADE"), index=True
    )
    item_key: Mapped[str] = mapped_column(sa.String(100))
    checklist_version: Mapped[str] = mapped_column(sa.String(20))
    result: Mapped[str] = mapped_column(sa.String(20))
    checked_on: Mapped[date] = mapped_column(sa.Date)
    note: Mapped[str] = mapped_column(sa.Text, default="")
    file_id: Mapped[int | None] = mapped_column(sa.ForeignKey("review_file.id"))
    recorded_by_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id"))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    recorded_by: Mapped[User] = relationship()
    file: Mapped[ReviewFile | None] = relationship()

    __table_args__ = (sa.CheckConstraint("result IN ('done', 'not_applicable')", name="result"),)

    @property
    def result_label(self) -> str:
        return EXIT_RESULTS.get(self.result, self.result)


class ReviewFile(Base):
    """A file kept as evidence of a confirmation, an exit (消去証明書), a contractor audit or a
    vendor's report. Stored, checked and scanned like assessment evidence (``portal.evidence``);
    exactly one owner."""

    __tablename__ = "review_file"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(sa.ForeignKey("organisation.id"), index=True)
    schedule_id: Mapped[int | None] = mapped_column(sa.ForeignKey("review_schedule.id"), index=True)
    confirmation_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("confirmation.id"), index=True
    )
    audit_id: Mapped[int | None] = mapped_column(sa.ForeignKey("contractor_audit.id"), index=True)
    report_id: Mapped[int | None] = mapped_column(sa.ForeignKey("vendor_report.id"), index=True)
    purpose: Mapped[str] = mapped_column(sa.String(30))
    original_name: Mapped[str] = mapped_column(sa.String(255))
    stored_name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    content_type: Mapped[str] = mapped_column(sa.String(100))
    size: Mapped[int] = mapped_column()
    sha256: Mapped[str] = mapped_column(sa.String(64))
    scan_status: Mapped[str] = mapped_column(sa.String(10), default="pending", index=True)
    uploaded_by_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id"))
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    uploaded_by: Mapped[User] = relationship()

    __table_args__ = (
        sa.CheckConstraint(
            "scan_status IN ('pending', 'clean', 'infected', 'error')", name="scan_status"
        ),
        sa.CheckConstraint("size > 0", name="size"),
        sa.CheckConstraint(
            "purpose IN ('evidence', 'deletion_certificate', 'audit_report', 'report')",
            name="purpose",
        ),
    )

    @property
    def downloadable(self) -> bool:
        return self.scan_status == "clean" and self.deleted_at is None

    @property
    def purpose_label(self) -> str:
        return FILE_PURPOSES.get(self.purpose, self.purpose)


class ReminderLog(Base):
    """One reminder to one recipient: the sent flag that makes ``send-reminders`` idempotent.
    ``failed`` rows (not yet sent: failed, or queued with no attempt) are retried by the next
    run; ``sent`` rows are never sent again; ``sending`` rows are claimed by a run (or a web
    request) sending them since ``claimed_at`` — others leave them alone until the claim is
    stale (``reminders.CLAIM_TIMEOUT``)."""

    __tablename__ = "reminder_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(sa.ForeignKey("organisation.id"), index=True)
    key: Mapped[str] = mapped_column(sa.String(300), unique=True)
    item: Mapped[str] = mapped_column(sa.String(100))  # e.g. confirmation:12
    stage: Mapped[str] = mapped_column(sa.String(30))
    recipient: Mapped[str] = mapped_column(sa.String(320))
    subject: Mapped[str] = mapped_column(sa.String(300))
    status: Mapped[str] = mapped_column(sa.String(10))
    attempts: Mapped[int] = mapped_column(default=1)
    last_error: Mapped[str] = mapped_column(sa.Text, default="")
    first_tried_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (sa.CheckConstraint("status IN ('sent', 'failed', 'sending')", name="status"),)
