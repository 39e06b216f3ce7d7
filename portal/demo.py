"""``flask --app wsgi seed-demo``: a demo organisation that shows every capability in several states.

Idempotent: a second run changes nothing and prints the accounts again. Every capability adds
its own demo data here (draft, submitted, returned, decided, approved, overdue …).
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import timedelta

import click
import pyotp
import sqlalchemy as sa
from flask import current_app
from flask.cli import with_appcontext

from portal.approvals import demo as approvals_demo
from portal.assessments import demo as assessments_demo
from portal.audit import service as audit
from portal.auth import passwords, tokens, totp
from portal.clauses import demo as clauses_demo
from portal.db import get_session, utcnow, writing
from portal.orgs import service as orgs
from portal.orgs.models import Organisation
from portal.permissions import STAFF_ROLES, Role
from portal.reviews import demo as reviews_demo
from portal.seeding import large
from portal.users.models import User
from portal.vendors.corporate_number import with_check_digit
from portal.vendors.models import OrganisationVendor, VendorCompany

DEMO_ORGANISATION = "さくら台市"
SECOND_ORGANISATION = "さくら台・みなと衛生組合"


@dataclass
class DemoAccount:
    email: str
    name: str
    roles: set[Role]
    departments: list[str] = field(default_factory=list)
    company: str | None = None
    state: str = "active"  # active | invited | disabled | locked | temporary


DEPARTMENTS = ["総務課", "情報政策課", "契約検査課", "市民課", "健康福祉課"]

COMPANIES = [
    # (法人番号の基礎12桁, 名称, 所在地, 代表者)
    (
        "010401099999",
        "株式会社さくらクラウドサービス",
        "東京都千代田区丸の内一丁目1番1号",
        "代表取締役 山田太郎",
    ),
    (
        "011001088888",
        "みなと情報システム株式会社",
        "神奈川県横浜市中区本町二丁目2番2号",
        "代表取締役 佐藤花子",
    ),
    ("012001077777", "有限会社データ入力センター", "埼玉県坂戸市芦山町3番3号", "取締役 鈴木一郎"),
]

ACCOUNTS = [
    DemoAccount("admin@sakuradai.example.jp", "管理 太郎", {Role.ADMIN}, ["情報政策課"]),
    DemoAccount("staff@sakuradai.example.jp", "担当 花子", {Role.STAFF}, ["情報政策課"]),
    DemoAccount("staff2@sakuradai.example.jp", "市民 次郎", {Role.STAFF}, ["市民課"]),
    DemoAccount("approver@sakuradai.example.jp", "許可 三郎", {Role.APPROVER}, ["総務課"]),
    DemoAccount(
        "manager@sakuradai.example.jp",
        "運用 四郎",
        {Role.STAFF, Role.SERVICE_MANAGER},
        ["情報政策課"],
    ),
    DemoAccount(
        "manager2@sakuradai.example.jp",
        "引継 五月",
        {Role.STAFF, Role.SERVICE_MANAGER},
        ["情報政策課"],
    ),
    DemoAccount("ciso@sakuradai.example.jp", "副市長 五郎", {Role.CISO}, ["総務課"]),
    DemoAccount("netadmin@sakuradai.example.jp", "情報 六子", {Role.NETWORK_ADMIN}, ["情報政策課"]),
    DemoAccount("auditor@sakuradai.example.jp", "監査 七海", {Role.AUDITOR}, ["総務課"]),
    DemoAccount(
        "newcomer@sakuradai.example.jp", "新任 八重", {Role.STAFF}, ["健康福祉課"], state="invited"
    ),
    DemoAccount(
        "retired@sakuradai.example.jp", "退職 九平", {Role.STAFF}, ["契約検査課"], state="disabled"
    ),
    DemoAccount(
        "locked@sakuradai.example.jp", "施錠 十和", {Role.STAFF}, ["市民課"], state="locked"
    ),
    DemoAccount(
        "vendor@sakura-cloud.example.com",
        "営業 一美",
        {Role.VENDOR},
        company="株式会社さくらクラウドサービス",
    ),
    DemoAccount(
        "security@sakura-cloud.example.com",
        "品質 二葉",
        {Role.VENDOR},
        company="株式会社さくらクラウドサービス",
    ),
    DemoAccount(
        "sales@minato-is.example.com",
        "営業 三樹",
        {Role.VENDOR},
        company="みなと情報システム株式会社",
    ),
    DemoAccount(
        "info@data-center.example.com",
        "受付 四季",
        {Role.VENDOR},
        company="有限会社データ入力センター",
        state="invited",
    ),
]

SECOND_ACCOUNTS = [
    DemoAccount(
        "admin@eisei-kumiai.example.jp", "組合 管理者", {Role.ADMIN, Role.STAFF}, ["庶務課"]
    ),
]


def _ensure_organisations(session) -> tuple[Organisation, Organisation]:
    org = session.scalar(sa.select(Organisation).where(Organisation.name == DEMO_ORGANISATION))
    if org is None:
        org = orgs.create_organisation(
            session,
            name=DEMO_ORGANISATION,
            self_designation="本市",
            kind="municipality",
            ciso_title="副市長",
            network_admin_title="総務部情報政策課長",
            approver_title="総務部長",
        )
        for name in DEPARTMENTS:
            orgs.create_department(session, None, org, name, None)
    second = session.scalar(sa.select(Organisation).where(Organisation.name == SECOND_ORGANISATION))
    if second is None:
        second = orgs.create_organisation(
            session,
            name=SECOND_ORGANISATION,
            self_designation="本組合",
            kind="union",
            ciso_title="副管理者",
            network_admin_title="事務局長",
            approver_title="事務局長",
        )
        orgs.create_department(session, None, second, "庶務課", None)
    return org, second


def _ensure_companies(session, org: Organisation) -> dict[str, VendorCompany]:
    companies = {}
    for base, name, address, representative in COMPANIES:
        number = with_check_digit(base)
        company = session.scalar(
            sa.select(VendorCompany).where(VendorCompany.corporate_number == number)
        )
        if company is None:
            company = VendorCompany(
                corporate_number=number, name=name, address=address, representative=representative
            )
            session.add(company)
            session.flush()
            session.add(OrganisationVendor(organisation_id=org.id, vendor_company_id=company.id))
            audit.record(
                session,
                "vendor.created",
                actor_label="seed-demo",
                organisation_id=org.id,
                obj=company,
                details={"corporate_number": number, "name": name},
            )
        companies[name] = company
    return companies


def _create_account(
    session, spec: DemoAccount, org: Organisation, companies, password: str
) -> None:
    user = User(email=spec.email, name=spec.name)
    if spec.company:
        user.vendor_company_id = companies[spec.company].id
        user.invited_by_organisation_id = org.id
        user.grant_vendor_access(org.id, None)
    else:
        user.organisation_id = org.id
        user.departments = [d for d in org.departments if d.name in spec.departments]
    user.set_roles(spec.roles)
    if spec.state != "invited":
        user.password_hash = passwords.hash_password(password)
    if spec.roles & STAFF_ROLES and spec.state != "invited":
        user.totp_secret = totp.new_secret()
        user.totp_enabled = True
    if spec.state == "disabled":
        user.active = False
    if spec.state == "locked":
        user.failed_login_count = current_app.config["LOGIN_MAX_FAILURES"]
        user.locked_until = utcnow() + timedelta(minutes=current_app.config["LOGIN_LOCK_MINUTES"])
    session.add(user)
    session.flush()
    audit.record(
        session,
        "user.created",
        actor_label="seed-demo",
        organisation_id=org.id,
        obj=user,
        details={"email": user.email, "roles": sorted(spec.roles), "state": spec.state},
    )
    if spec.state == "invited":
        tokens.issue(
            session,
            user,
            tokens.INVITATION,
            timedelta(hours=current_app.config["INVITATION_HOURS"]),
        )


def _describe(user: User, password: str | None, spec: DemoAccount) -> dict:
    return {
        "email": user.email,
        "name": user.name,
        "roles": sorted(r.value for r in user.role_set),
        "organisation": user.organisation.name if user.organisation else None,
        "company": user.vendor_company.name if user.vendor_company else None,
        "state": spec.state,
        "password": password if user.password_hash else None,
        "totp_secret": user.totp_secret if user.totp_enabled else None,
    }


@click.command("seed-demo", help="デモ用の団体・利用者・事業者を登録する（登録済みなら表示のみ）")
@click.option(
    "--password", default=None, help="すべてのデモアカウントに設定するパスワード（12文字以上）"
)
@click.option("--json", "as_json", is_flag=True, help="アカウントを1行1件のJSONで出力する")
@click.option(
    "--size",
    type=click.Choice(["small", "large"]),
    default="small",
    show_default=True,
    help="large: 大規模デモ市（事業者5,000社・評価2万件・回答200万件）も登録する",
)
@with_appcontext
def seed_demo(password: str | None, as_json: bool, size: str) -> None:
    # Never in production: demo accounts with known passwords must not exist there.
    if current_app.config["PORTAL_ENV"] == "production":
        raise click.ClickException(
            "本番モード（PORTAL_ENV=production）ではデモデータを登録しません。"
        )
    if password is not None and len(password) < passwords.MIN_LENGTH:
        raise click.BadParameter(
            f"{passwords.MIN_LENGTH}文字以上にしてください。", param_hint="--password"
        )
    started = time.perf_counter()
    generated = password or secrets.token_urlsafe(12)
    created: set[str] = set()
    with writing() as session:
        org, second = _ensure_organisations(session)
        companies = _ensure_companies(session, org)
        for spec, home in [(a, org) for a in ACCOUNTS] + [(a, second) for a in SECOND_ACCOUNTS]:
            if session.scalar(sa.select(User.id).where(User.email == spec.email)) is None:
                _create_account(session, spec, home, companies, generated)
                created.add(spec.email)
        session.flush()
        session.expire_all()
        assessments_demo.seed(session, org, companies)
        session.flush()
        clauses_demo.seed(session, org)
        session.flush()
        approvals_demo.seed(session, org)
        session.flush()
        reviews_demo.seed(session, org)
    session = get_session()

    def known_password(user: User) -> str | None:
        """Show a password only where it is really the account's password."""
        if user.email in created:
            return generated
        if password and passwords.verify_password(user.password_hash, password)[0]:
            return password
        return None

    rows = []
    for spec in ACCOUNTS + SECOND_ACCOUNTS:
        user = session.scalar(sa.select(User).where(User.email == spec.email))
        rows.append(_describe(user, known_password(user), spec))
    shown = {row["password"] for row in rows if row["password"]}
    shown_password = shown.pop() if len(shown) == 1 else None
    summary: list[str] = []
    if size == "large":
        large_started = time.perf_counter()
        with writing() as session:
            result = large.seed_large(session, password=generated)
        finished = time.perf_counter()
        summary = large.report(result, generated, finished - large_started, finished - started)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False))
        for line in summary:
            click.echo(line, err=True)
        return
    click.echo(
        "デモデータを登録しました。"
        if created
        else "デモデータは登録済みです（変更していません）。"
    )
    click.echo(
        f"パスワード: {shown_password or '（初回登録時に表示したもの。--password で指定した場合はその値）'}"
    )
    click.echo("職員アカウントは二要素認証が必要です。認証アプリに TOTP キーを登録するか、")
    click.echo("  flask --app wsgi demo-code メールアドレス  で現在の確認コードを表示できます。")
    for row in rows:
        who = row["company"] or row["organisation"]
        roles = ",".join(row["roles"])
        extra = f"  TOTPキー: {row['totp_secret']}" if row["totp_secret"] else ""
        click.echo(f"  {row['email']:<40} {roles:<24} {who}（{row['state']}）{extra}")
    for line in summary:
        click.echo(line)


@click.command("demo-code", help="デモアカウントの現在の二要素認証コードを表示する（開発用）")
@click.argument("email")
@with_appcontext
def demo_code(email: str) -> None:
    if current_app.config["PORTAL_ENV"] == "production":
        raise click.ClickException("本番モードでは使用できません。")
    user = get_session().scalar(sa.select(User).where(User.email == email.strip().lower()))
    if user is None or not user.totp_enabled or not user.totp_secret:
        raise click.ClickException("二要素認証が設定されたアカウントが見つかりません。")
    click.echo(pyotp.TOTP(user.totp_secret).now())
