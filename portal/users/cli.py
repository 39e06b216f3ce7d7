"""``flask --app wsgi create-admin``: the first administrator (there is no default admin)."""

from __future__ import annotations

import secrets

import click
from flask.cli import with_appcontext

from portal.audit import service as audit
from portal.auth import passwords
from portal.auth.service import normalise_email
from portal.db import writing
from portal.orgs import service as orgs
from portal.orgs.models import Organisation
from portal.permissions import Role
from portal.users.models import User
from portal.users.service import UserAdminError, check_email


def temporary_password() -> str:
    """16 characters, easy to read out; must be changed at first login."""
    alphabet = "23456789abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"
    return "".join(secrets.choice(alphabet) for _ in range(16))


@click.command("create-admin", help="団体のシステム管理者を作成し、仮パスワードを表示する")
@click.option("--email", prompt="管理者のメールアドレス")
@click.option("--name", prompt="管理者の氏名")
@click.option("--organisation", prompt="団体の正式名称（例: 西原村）")
@click.option(
    "--self-designation", default=None, help="団体が新規のときの自称（例: 本村）。省略時は尋ねる"
)
@with_appcontext
def create_admin(email: str, name: str, organisation: str, self_designation: str | None) -> None:
    import sqlalchemy as sa

    try:
        email = check_email(normalise_email(email))
    except UserAdminError as exc:
        raise click.BadParameter(str(exc), param_hint="--email") from exc
    password = temporary_password()
    with writing() as session:
        if session.scalar(sa.select(User.id).where(User.email == email)):
            raise click.ClickException("このメールアドレスはすでに登録されています。")
        org = session.scalar(sa.select(Organisation).where(Organisation.name == organisation))
        if org is None:
            designation = self_designation or click.prompt("団体の自称（例: 本市、本村、本組合）")
            org = orgs.create_organisation(session, name=organisation, self_designation=designation)
        user = User(
            email=email,
            name=name,
            organisation_id=org.id,
            password_hash=passwords.hash_password(password),
            password_is_temporary=True,
        )
        user.set_roles({Role.ADMIN})
        session.add(user)
        session.flush()
        audit.record(
            session,
            "user.created",
            actor_label="cli",
            organisation_id=org.id,
            obj=user,
            details={"email": email, "roles": [Role.ADMIN.value], "via": "create-admin"},
        )
    click.echo(f"システム管理者を作成しました: {email}（{organisation}）")
    click.echo(f"仮パスワード: {password}")
    click.echo("初回ログイン時に二要素認証の設定とパスワードの変更が必要です。")
