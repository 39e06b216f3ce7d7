"""The people of the large dataset: 大規模デモ市 with its twelve departments and staff (one
担当職員 per department, the approver, CISO, ネットワーク管理者, auditor and three 外部サービス管理者),
and the vendor companies, each with a contact who may answer this organisation's requests.

The organisation was set up before the oldest 案件 of the story (``Load.founded``)."""

from __future__ import annotations

import sqlalchemy as sa

from portal.auth import totp
from portal.orgs.models import Department, Organisation
from portal.permissions import STAFF_ROLES, Role
from portal.seeding import names
from portal.seeding.plan import Load
from portal.users.models import User, UserRole, user_department
from portal.vendors.models import OrganisationVendor, VendorAccess, VendorCompany

LARGE_ORGANISATION = "大規模デモ市"
DOMAIN = "daikibo.example.jp"
DEPARTMENTS = (
    "総務課", "情報政策課", "契約検査課", "市民課", "税務課", "保険年金課",
    "健康福祉課", "子育て支援課", "環境課", "都市計画課", "教育総務課", "上下水道課",
)  # fmt: skip
# (local part, name, roles, department index); staff01 … staff12 follow, one per department.
ACCOUNTS = (
    ("admin", "大規 管理", {Role.ADMIN}, 1),
    ("approver", "大規 許可", {Role.APPROVER}, 0),
    ("ciso", "大規 副市長", {Role.CISO}, 0),
    ("netadmin", "大規 情報", {Role.NETWORK_ADMIN}, 1),
    ("auditor", "大規 監査", {Role.AUDITOR}, 0),
    ("manager1", "大規 運用一", {Role.STAFF, Role.SERVICE_MANAGER}, 1),
    ("manager2", "大規 運用二", {Role.STAFF, Role.SERVICE_MANAGER}, 1),
    ("manager3", "大規 運用三", {Role.STAFF, Role.SERVICE_MANAGER}, 1),
)


def staff_emails() -> list[str]:
    return [f"{local}@{DOMAIN}" for local, *_rest in ACCOUNTS] + [
        f"staff{index + 1:02d}@{DOMAIN}" for index in range(len(DEPARTMENTS))
    ]


def organisation(load: Load) -> None:
    writer, at = load.writer, load.founded
    (load.org_id,) = writer.ids(Organisation.__table__, 1)
    writer.insert_dicts(
        Organisation.__table__,
        [
            {
                "id": load.org_id,
                "name": LARGE_ORGANISATION,
                "kind": "municipality",
                "self_designation": "本市",
                "ciso_title": "副市長",
                "network_admin_title": "総務部情報政策課長",
                "approver_title": "総務部長",
                "review_interval_months": 12,
                "high_risk_review_interval_months": 6,
                "decision_requires_confirmation": True,
                "active": True,
                "version": 1,
                "created_at": at,
            }
        ],
    )
    load.event(
        at, "organisation.created", None, "organisation", load.org_id, name=LARGE_ORGANISATION
    )
    load.departments = list(writer.ids(Department.__table__, len(DEPARTMENTS)))
    writer.insert_dicts(
        Department.__table__,
        [
            {
                "id": department_id,
                "organisation_id": load.org_id,
                "name": name,
                "code": f"D{index + 1:02d}",
                "active": True,
                "created_at": at,
            }
            for index, (department_id, name) in enumerate(
                zip(load.departments, DEPARTMENTS, strict=True)
            )
        ],
    )
    for department_id, name in zip(load.departments, DEPARTMENTS, strict=True):
        load.event(at, "department.created", None, "department", department_id, name=name)


def _user(load: Load, user_id: int, email: str, name: str, **values) -> dict:
    return {
        "id": user_id,
        "email": email,
        "name": name,
        "organisation_id": None,
        "vendor_company_id": None,
        "invited_by_organisation_id": None,
        "active": True,
        "password_hash": load.password_hash,
        "password_is_temporary": False,
        "password_changed_at": load.founded,
        "session_version": 1,
        "totp_secret": None,
        "totp_enabled": False,
        "totp_last_step": 0,
        "failed_login_count": 0,
        "locked_until": None,
        "last_login_at": None,
        "previous_login_at": None,
        "failures_before_last_login": 0,
        "version": 1,
        "created_at": load.founded,
        **values,
    }


def staff(load: Load) -> None:
    specs = list(ACCOUNTS) + [
        (f"staff{index + 1:02d}", f"大規 職員{index + 1:02d}", {Role.STAFF}, index)
        for index in range(len(DEPARTMENTS))
    ]
    ids = load.writer.ids(User.__table__, len(specs))
    users, roles, memberships = [], [], []
    for user_id, (local, name, granted, department) in zip(ids, specs, strict=True):
        email = f"{local}@{DOMAIN}"
        users.append(
            _user(
                load,
                user_id,
                email,
                name,
                organisation_id=load.org_id,
                totp_secret=totp.new_secret(),
                totp_enabled=bool(granted & STAFF_ROLES),
            )
        )
        roles += [{"user_id": user_id, "role": str(role)} for role in sorted(granted)]
        memberships.append({"user_id": user_id, "department_id": load.departments[department]})
        actor = (user_id, email)
        if local == "approver":
            load.approver = actor
        elif local.startswith("manager"):
            load.managers.append(actor)
        elif local.startswith("staff"):
            load.staff.append(actor)
        load.event(
            load.founded,
            "user.created",
            None,
            "user_account",
            user_id,
            email=email,
            roles=sorted(granted),
            state="active",
        )
    load.writer.insert_dicts(User.__table__, users)
    load.writer.insert_dicts(UserRole.__table__, roles)
    load.writer.insert_dicts(user_department, memberships)


def companies(load: Load, count: int) -> None:
    writer, at = load.writer, load.founded
    taken = set(
        writer.connection.scalars(
            sa.select(VendorCompany.corporate_number).where(
                VendorCompany.corporate_number.like(f"_{names.NUMBER_PREFIX}%")
            )
        )
    )
    load.companies = list(names.companies(load.rng, count, taken))
    load.company_ids = list(writer.ids(VendorCompany.__table__, count))
    load.contacts = list(writer.ids(User.__table__, count))
    writer.insert_dicts(
        VendorCompany.__table__,
        [
            {
                "id": company_id,
                "corporate_number": c.corporate_number,
                "name": c.name,
                "address": c.address,
                "representative": c.representative,
                "created_at": at,
            }
            for company_id, c in zip(load.company_ids, load.companies, strict=True)
        ],
    )
    writer.insert_dicts(
        OrganisationVendor.__table__,
        [
            {"organisation_id": load.org_id, "vendor_company_id": company_id, "created_at": at}
            for company_id in load.company_ids
        ],
    )
    writer.insert_dicts(
        User.__table__,
        [
            _user(
                load,
                user_id,
                c.email,
                c.contact,
                vendor_company_id=company_id,
                invited_by_organisation_id=load.org_id,
            )
            for user_id, company_id, c in zip(
                load.contacts, load.company_ids, load.companies, strict=True
            )
        ],
    )
    writer.insert_dicts(
        UserRole.__table__, [{"user_id": user_id, "role": "vendor"} for user_id in load.contacts]
    )
    writer.insert_dicts(
        VendorAccess.__table__,
        [
            {
                "user_id": user_id,
                "organisation_id": load.org_id,
                "granted_at": at,
                "granted_by_id": None,
            }
            for user_id in load.contacts
        ],
    )
    for company_id, user_id, c in zip(load.company_ids, load.contacts, load.companies, strict=True):
        load.event(
            at,
            "vendor.created",
            None,
            "vendor_company",
            company_id,
            corporate_number=c.corporate_number,
            name=c.name,
        )
        load.event(
            at,
            "user.created",
            None,
            "user_account",
            user_id,
            email=c.email,
            roles=["vendor"],
            state="active",
        )
