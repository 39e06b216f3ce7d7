"""Factory helpers: ``make.user(roles={Role.STAFF})`` and friends. Each commits."""

from __future__ import annotations

import itertools

import pyotp

from portal.assessments.models import Assessment
from portal.auth import passwords
from portal.engagements.models import Engagement
from portal.orgs.models import Department, Organisation
from portal.permissions import STAFF_ROLES, Role
from portal.questionnaires import loader
from portal.users.models import User
from portal.vendors.corporate_number import with_check_digit
from portal.vendors.models import OrganisationVendor, VendorCompany

PASSWORD = "テスト用の長いパスフレーズ 2026"
_counter = itertools.count(1)


class Factory:
    def __init__(self, session, app):
        self.session = session
        self.app = app

    def hash(self, password: str) -> str:
        with self.app.app_context():
            return passwords.hash_password(password)

    def _save(self, obj):
        self.session.add(obj)
        self.session.commit()
        return obj

    def org(self, name: str | None = None, self_designation: str = "本市") -> Organisation:
        org = Organisation(
            name=name or f"テスト市{next(_counter)}",
            self_designation=self_designation,
            ciso_title="副市長",
            network_admin_title="情報政策課長",
            approver_title="総務部長",
        )
        return self._save(org)

    def department(self, org: Organisation, name: str | None = None) -> Department:
        return self._save(
            Department(organisation_id=org.id, name=name or f"テスト課{next(_counter)}")
        )

    def company(self, org: Organisation | None = None, name: str | None = None) -> VendorCompany:
        n = next(_counter)
        company = self._save(
            VendorCompany(
                corporate_number=with_check_digit(f"{n:012d}"), name=name or f"テスト株式会社{n}"
            )
        )
        if org is not None:
            self._save(OrganisationVendor(organisation_id=org.id, vendor_company_id=company.id))
        return company

    def engagement(
        self, org: Organisation, department: Department, staff: User, **fields
    ) -> Engagement:
        """A 案件 of ``department`` (業務委託, 機密性2 unless ``fields`` say otherwise)."""
        values = {
            "kind": "outsourcing",
            "title": "窓口業務委託",
            "purpose": "窓口業務の一部を委託する。",
            "information": "業務マニュアル",
            "confidentiality": 2,
            "integrity": 1,
            "availability": 1,
            **fields,
        }
        return self._save(
            Engagement(
                organisation_id=org.id,
                department_id=department.id,
                created_by_id=staff.id,
                **values,
            )
        )

    def assessment(
        self,
        engagement: Engagement,
        company: VendorCompany,
        staff: User,
        *,
        questionnaire: tuple[str, str] | None = None,
        status: str = "draft",
    ) -> Assessment:
        """The engagement's questionnaire addressed to ``company`` (the real bank by default)."""
        if questionnaire is None:
            bank = loader.latest("assessment")
            questionnaire = (bank.key, bank.version)
        return self._save(
            Assessment(
                organisation_id=engagement.organisation_id,
                engagement_id=engagement.id,
                vendor_company_id=company.id,
                questionnaire_key=questionnaire[0],
                questionnaire_version=questionnaire[1],
                created_by_id=staff.id,
                status=status,
            )
        )

    def user(
        self,
        org: Organisation | None = None,
        *,
        roles: set[Role] | None = None,
        company: VendorCompany | None = None,
        email: str | None = None,
        name: str = "試験 太郎",
        password: str | None = PASSWORD,
        totp: bool | None = None,
        departments: list[Department] | None = None,
        temporary: bool = False,
        active: bool = True,
        invited_by: Organisation | None = None,
    ) -> User:
        roles = roles or ({Role.VENDOR} if company else {Role.STAFF})
        user = User(
            email=email or f"user{next(_counter)}@example.jp",
            name=name,
            organisation_id=None if company else (org.id if org else None),
            vendor_company_id=company.id if company else None,
            invited_by_organisation_id=(invited_by or org).id
            if company and (invited_by or org)
            else None,
            password_hash=self.hash(password) if password else None,
            password_is_temporary=temporary,
            active=active,
        )
        user.set_roles(roles)
        if user.invited_by_organisation_id:
            user.grant_vendor_access(user.invited_by_organisation_id, None)
        if departments:
            user.departments = departments
        if totp if totp is not None else bool(roles & STAFF_ROLES):
            user.totp_secret = pyotp.random_base32()
            user.totp_enabled = True
        return self._save(user)
