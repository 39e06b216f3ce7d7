"""Organisation profile and departments."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.audit import service as audit
from portal.errors import ConflictError
from portal.orgs.models import Department, Organisation

PROFILE_FIELDS = (
    "name",
    "kind",
    "self_designation",
    "ciso_title",
    "network_admin_title",
    "approver_title",
    "review_interval_months",
    "high_risk_review_interval_months",
    "decision_requires_confirmation",
)


class OrganisationError(Exception):
    """A refused change, with a message in Japanese."""


def create_organisation(
    session: Session,
    *,
    name: str,
    self_designation: str,
    kind: str = "municipality",
    ciso_title: str = "最高情報セキュリティ責任者（CISO）",
    network_admin_title: str = "ネットワーク管理者",
    approver_title: str = "許可権限者",
    review_interval_months: int = 12,
    high_risk_review_interval_months: int = 6,
) -> Organisation:
    if session.scalar(sa.select(Organisation.id).where(Organisation.name == name)) is not None:
        raise OrganisationError("同じ名称の団体がすでに登録されています。")
    org = Organisation(
        name=name,
        kind=kind,
        self_designation=self_designation,
        ciso_title=ciso_title,
        network_admin_title=network_admin_title,
        approver_title=approver_title,
        review_interval_months=review_interval_months,
        high_risk_review_interval_months=high_risk_review_interval_months,
    )
    session.add(org)
    session.flush()
    audit.record(
        session, "organisation.created", organisation_id=org.id, obj=org, details={"name": name}
    )
    return org


def update_profile(
    session: Session, actor, org: Organisation, values: dict, expected_version: int
) -> None:
    if expected_version != org.version:
        raise ConflictError
    if values["high_risk_review_interval_months"] > values["review_interval_months"]:
        raise OrganisationError("高リスクの確認間隔は、通常の確認間隔以下にしてください。")
    if values["name"] != org.name and session.scalar(
        sa.select(Organisation.id).where(Organisation.name == values["name"])
    ):
        raise OrganisationError("同じ名称の団体がすでに登録されています。")
    changes = {
        key: [getattr(org, key), values[key]]
        for key in PROFILE_FIELDS
        if getattr(org, key) != values[key]
    }
    if not changes:
        return
    for key, (_old, new) in changes.items():
        setattr(org, key, new)
    audit.record(session, "organisation.updated", actor=actor, obj=org, details=changes)
    session.flush()


def create_department(
    session: Session, actor, org: Organisation, name: str, code: str | None
) -> Department:
    _unique_department_name(session, org.id, name, None)
    department = Department(organisation_id=org.id, name=name, code=code or None)
    session.add(department)
    session.flush()
    audit.record(
        session,
        "department.created",
        actor=actor,
        obj=department,
        organisation_id=org.id,
        details={"name": name},
    )
    return department


def update_department(
    session: Session, actor, department: Department, *, name: str, code: str | None, active: bool
) -> None:
    _unique_department_name(session, department.organisation_id, name, department.id)
    changes = {}
    for key, value in (("name", name), ("code", code or None), ("active", active)):
        if getattr(department, key) != value:
            changes[key] = [getattr(department, key), value]
            setattr(department, key, value)
    if changes:
        audit.record(
            session,
            "department.updated",
            actor=actor,
            obj=department,
            organisation_id=department.organisation_id,
            details=changes,
        )
        session.flush()


def _unique_department_name(
    session: Session, organisation_id: int, name: str, own_id: int | None
) -> None:
    existing = session.scalar(
        sa.select(Department.id).where(
            Department.organisation_id == organisation_id, Department.name == name
        )
    )
    if existing is not None and existing != own_id:
        raise OrganisationError("同じ名称の所属がすでにあります。")


def departments_of(
    session: Session, organisation_id: int, active_only: bool = False
) -> list[Department]:
    query = sa.select(Department).where(Department.organisation_id == organisation_id)
    if active_only:
        query = query.where(Department.active.is_(True))
    return list(session.scalars(query.order_by(Department.name)))


def get_department(session: Session, organisation_id: int, department_id: int) -> Department | None:
    department = session.get(Department, department_id)
    if department is None or department.organisation_id != organisation_id:
        return None
    return department
