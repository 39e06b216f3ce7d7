"""engagement list indexes: one page of the 案件 list, newest first, from the index

Revision ID: c4d8e2f1a7b3
Revises: b7e3c9a41d52
Create Date: 2026-11-22 07:30:00.000000

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "c4d8e2f1a7b3"
down_revision: str | Sequence[str] | None = "b7e3c9a41d52"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "ix_engagement_department_created": ["department_id", "created_at", "id"],
    "ix_engagement_organisation_created": ["organisation_id", "created_at", "id"],
}


def upgrade() -> None:
    """Upgrade schema."""
    for name, columns in INDEXES.items():
        op.create_index(name, "engagement", columns, unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    for name in INDEXES:
        op.drop_index(name, table_name="engagement")
