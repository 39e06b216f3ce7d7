"""register index: one page of the 外部サービス台帳 and its counts from the index alone

Revision ID: b7e3c9a41d52
Revises: 294091d1cbd8
Create Date: 2026-11-22 07:00:00.000000

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "b7e3c9a41d52"
down_revision: str | Sequence[str] | None = "294091d1cbd8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ["organisation_id", "status", "next_review_on", "service_id", "department_id"]


def upgrade() -> None:
    """Upgrade schema."""
    op.create_index("ix_use_application_register", "use_application", COLUMNS, unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_use_application_register", table_name="use_application")
