"""Vendor companies: registered once by 法人番号, linked to each organisation that works with them."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.audit import service as audit
from portal.vendors import corporate_number
from portal.vendors.models import OrganisationVendor, VendorCompany


class VendorError(Exception):
    """A refused change, with a message in Japanese."""


def register_company(
    session: Session,
    actor,
    *,
    number: str,
    name: str,
    address: str | None = None,
    representative: str | None = None,
    linked_ok: bool = False,
) -> tuple[VendorCompany, bool]:
    """Link the company with this 法人番号 to the actor's organisation, creating it if new.

    An existing company keeps its own profile (the vendor maintains it); returns (company, created).
    A company already linked is refused, unless ``linked_ok`` (then it is simply returned).
    """
    normalised = corporate_number.normalise(number)
    if not corporate_number.is_valid(normalised):
        raise VendorError(
            "法人番号が正しくありません（13桁の数字で、チェックデジットが一致する必要があります）。"
        )
    company = session.scalar(
        sa.select(VendorCompany).where(VendorCompany.corporate_number == normalised)
    )
    created = company is None
    if company is None:
        company = VendorCompany(
            corporate_number=normalised,
            name=name,
            address=address or None,
            representative=representative or None,
        )
        session.add(company)
        session.flush()
        audit.record(
            session,
            "vendor.created",
            actor=actor,
            obj=company,
            details={"corporate_number": normalised, "name": name},
        )
    link = session.get(OrganisationVendor, (actor.organisation_id, company.id))
    if link is None:
        session.add(
            OrganisationVendor(organisation_id=actor.organisation_id, vendor_company_id=company.id)
        )
        session.flush()
        audit.record(session, "vendor.linked", actor=actor, obj=company)
    elif not created and not linked_ok:
        raise VendorError("この事業者はすでに登録されています。")
    return company, created


PROFILE_FIELDS = ("name", "address", "representative")


def update_profile(session: Session, actor, company: VendorCompany, values: dict) -> bool:
    """The vendor's own edit of the shared company profile. Every body that works with the
    company sees the change in its audit trail, whoever made it."""
    changes = {
        key: [getattr(company, key), values[key]]
        for key in PROFILE_FIELDS
        if getattr(company, key) != values[key]
    }
    if not changes:
        return False
    for key, (_old, new) in changes.items():
        setattr(company, key, new)
    linked = session.scalars(
        sa.select(OrganisationVendor.organisation_id).where(
            OrganisationVendor.vendor_company_id == company.id
        )
    )
    for organisation_id in linked:
        audit.record(
            session,
            "vendor.profile_updated",
            actor=actor,
            obj=company,
            organisation_id=organisation_id,
            details=changes,
        )
    session.flush()
    return True


def companies_of(session: Session, organisation_id: int) -> list[VendorCompany]:
    return list(
        session.scalars(
            sa.select(VendorCompany)
            .join(OrganisationVendor, OrganisationVendor.vendor_company_id == VendorCompany.id)
            .where(OrganisationVendor.organisation_id == organisation_id)
            .order_by(VendorCompany.name)
        )
    )


def get_for_organisation(
    session: Session, organisation_id: int, company_id: int
) -> VendorCompany | None:
    """The company if it is linked to the organisation; None (→ 404) otherwise."""
    if session.get(OrganisationVendor, (organisation_id, company_id)) is None:
        return None
    return session.get(VendorCompany, company_id)
