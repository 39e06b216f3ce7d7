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
) -> tuple[VendorCompany, bool]:
    """Link the company with this 法人番号 to the actor's organisation, creating it if new.

    An existing company keeps its own profile (the vendor maintains it); returns (company, created).
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
    elif not created:
        raise VendorError("この事業者はすでに登録されています。")
    return company, created


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
