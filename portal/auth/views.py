"""Login, second factor, logout, password changes, invitations and resets."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user

from portal.audit import service as audit
from portal.auth import service, tokens, totp
from portal.auth import session as login_session
from portal.auth.forms import ChangePasswordForm, CodeForm, LoginForm, NewPasswordForm
from portal.db import get_session
from portal.permissions import authenticated, public, requires_mfa
from portal.web import format_jst

bp = Blueprint("auth", __name__, url_prefix="/auth", template_folder="templates")

LOGIN_FAILED = (
    "ログインできませんでした。メールアドレスとパスワードを確認してください。"
    "続けて失敗すると、アカウントは一定時間ロックされます。"
)
MFA_FAILED = "確認コードが正しくないか、使用済みです。"
ISSUER = "委託先リスク評価ポータル"


def safe_next(target: str | None) -> str | None:
    """Only local paths are followed after login (no open redirects)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ord(ch) < 32 for ch in target):
        return None
    return target


def login_redirect() -> Response:
    """To the login page; back here afterwards only for a page (GET), never a form action."""
    flash("このページを表示するにはログインしてください。", "info")
    if request.method != "GET":
        return redirect(url_for("auth.login"))
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def _policy() -> service.LoginPolicy:
    return service.LoginPolicy.from_config(current_app.config)


def _ip() -> str:
    return request.remote_addr or ""


def _start_logged_in(user, method: str) -> str | None:
    """Record the login, open a fresh session, and say when the previous login was and how
    many attempts failed since (対策基準 7.2(3)) — whatever page comes next."""
    db = get_session()
    service.complete_login(db, user, _ip(), method)
    db.commit()
    target = safe_next(session.get("next"))
    login_session.start(user)
    previous = format_jst(user.previous_login_at) or "記録なし（初めてのログイン）"
    flash(
        f"前回のログイン: {previous}／前回のログイン以降のログイン失敗: "
        f"{user.failures_before_last_login}回",
        "warning" if user.failures_before_last_login else "info",
    )
    return target


def _finish_login(user, method: str) -> Response:
    return redirect(_start_logged_in(user, method) or url_for("main.dashboard"))


def _show_recovery_codes(codes: list[str], enrolled: bool, then: str | None = None) -> Response:
    """Post/Redirect/Get: the codes are shown once by a GET; reloading does not replace them."""
    session["recovery_codes"] = {"codes": codes, "enrolled": enrolled, "then": then}
    return redirect(url_for("auth.new_recovery_codes"))


@bp.route("/login", methods=["GET", "POST"])
@public
def login():
    if current_user.is_authenticated:
        return redirect(url_for("main.dashboard"))
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        db = get_session()
        try:
            user = service.check_password(db, form.email.data, form.password.data, _ip(), _policy())
        except service.LoginThrottled:
            db.commit()
            flash("ログインの試行が多すぎます。しばらく待ってからお試しください。", "error")
            status = 429
        except service.LoginRefused:
            db.commit()
            flash(LOGIN_FAILED, "error")
            status = 200
        else:
            next_target = safe_next(request.args.get("next"))
            if requires_mfa(user):
                db.commit()
                login_session.begin_pending(user)
                if next_target:
                    session["next"] = next_target
                return redirect(url_for("auth.mfa" if user.totp_enabled else "auth.mfa_setup"))
            session["next"] = next_target
            return _finish_login(user, "none")
    return render_template("auth/login.html", form=form), status


@bp.route("/mfa", methods=["GET", "POST"])
@public
def mfa():
    user = login_session.pending_user()
    if user is None:
        return redirect(url_for("auth.login"))
    if not user.totp_enabled:
        return redirect(url_for("auth.mfa_setup"))
    form = CodeForm()
    if form.validate_on_submit():
        db = get_session()
        try:
            method = service.verify_second_factor(db, user, form.code.data, _ip(), _policy())
        except service.LoginRefused:
            db.commit()
            if service.is_locked(user):
                login_session.end()
                flash(LOGIN_FAILED, "error")
                return redirect(url_for("auth.login"))
            form.code.errors = [MFA_FAILED]
        else:
            return _finish_login(user, method)
    return render_template("auth/mfa.html", form=form)


def _setup_user():
    if current_user.is_authenticated:
        return current_user, False
    return login_session.pending_user(), True


@bp.route("/mfa/setup", methods=["GET", "POST"])
@public
def mfa_setup():
    """TOTP enrolment: at first login for staff (mandatory), from the account page for vendors."""
    user, pending = _setup_user()
    if user is None:
        return redirect(url_for("auth.login"))
    if user.totp_enabled:
        if pending:
            return redirect(url_for("auth.mfa"))
        # Replacing a working second factor needs more than a session: an administrator resets
        # it (the user proves who they are to the administrator, not to a stolen session).
        flash(
            "二要素認証は設定済みです。認証アプリを変更する場合は、システム管理者に初期化を依頼してください。",
            "info",
        )
        return redirect(url_for("auth.account"))
    secret = session.get("totp_setup_secret")
    if not secret:
        secret = session["totp_setup_secret"] = totp.new_secret()
    form = CodeForm()
    if form.validate_on_submit():
        db = get_session()
        codes = service.enrol_totp(db, user, secret, form.code.data)
        if codes is None:
            form.code.errors = [MFA_FAILED]
        else:
            session.pop("totp_setup_secret", None)
            if pending:
                target = _start_logged_in(user, "totp")
                return _show_recovery_codes(codes, True, target or url_for("main.dashboard"))
            db.commit()
            return _show_recovery_codes(codes, True)
    return render_template(
        "auth/mfa_setup.html",
        form=form,
        secret=secret,
        mandatory=pending,
    )


@bp.route("/mfa/qr.svg")
@public
def mfa_qr():
    user, _pending = _setup_user()
    secret = session.get("totp_setup_secret")
    if user is None or not secret:
        abort(404)
    svg = totp.qr_svg(totp.provisioning_uri(secret, user.email, ISSUER))
    return Response(svg, mimetype="image/svg+xml")


@bp.route("/logout", methods=["POST"])
@authenticated
def logout():
    db = get_session()
    user = current_user._get_current_object()
    service.end_all_sessions(user)
    audit.record(db, "auth.logout", actor=user, obj=user)
    db.commit()
    login_session.end()
    flash("ログアウトしました。", "info")
    return redirect(url_for("auth.login"))


@bp.route("/password", methods=["GET", "POST"])
@authenticated
def change_password():
    form = ChangePasswordForm()
    if form.validate_on_submit():
        db = get_session()
        user = current_user._get_current_object()
        try:
            service.change_own_password(db, user, form.current.data, form.password.data)
        except service.CurrentPasswordWrong:
            # Guessing the password through a stolen session counts like failed logins.
            service.register_failure(db, user, user.email, _ip(), _policy(), "current_password")
            db.commit()
            if service.is_locked(user):
                login_session.end()
                flash(LOGIN_FAILED, "error")
                return redirect(url_for("auth.login"))
            form.current.errors = ["現在のパスワードが正しくありません。"]
        except service.PasswordRejected as exc:
            form.password.errors = exc.problems
        else:
            db.commit()
            login_session.start(user)  # a new session; every other one has ended
            flash("パスワードを変更しました。ほかの端末のログインは終了しました。", "success")
            return redirect(url_for("main.dashboard"))
    return render_template("auth/change_password.html", form=form)


@bp.route("/account")
@authenticated
def account():
    db = get_session()
    return render_template(
        "auth/account.html",
        remaining_codes=service.remaining_recovery_codes(db, current_user),
    )


@bp.route("/recovery-codes", methods=["POST"])
@authenticated
def recovery_codes():
    user = current_user._get_current_object()
    if not user.totp_enabled:
        abort(400)
    db = get_session()
    codes = service.replace_recovery_codes(db, user)
    audit.record(db, "auth.recovery_codes_replaced", actor=user, obj=user)
    db.commit()
    return _show_recovery_codes(codes, False)


@bp.route("/recovery-codes/new")
@authenticated
def new_recovery_codes():
    shown = session.pop("recovery_codes", None)
    if not shown:
        flash(
            "リカバリーコードは作成した直後に一度だけ表示されます。必要な場合は作り直してください。",
            "info",
        )
        return redirect(url_for("auth.account"))
    return render_template(
        "auth/recovery_codes.html",
        codes=shown["codes"],
        enrolled=shown["enrolled"],
        then=safe_next(shown.get("then")) or url_for("main.dashboard"),
    )


def _token_page(token: str, purpose: str, template: str, success_action: str, success_message: str):
    db = get_session()
    try:
        _record, user = tokens.peek(db, token, purpose)
    except tokens.TokenError:
        return render_template("auth/token_invalid.html"), 404
    form = NewPasswordForm()
    if form.validate_on_submit():
        try:
            tokens.consume(db, token, purpose)
            service.set_password(db, user, form.password.data, actor=user, action=success_action)
        except service.PasswordRejected as exc:
            db.rollback()
            form.password.errors = exc.problems
        else:
            user.failed_login_count = 0
            user.locked_until = None
            db.commit()
            login_session.end()
            flash(success_message, "success")
            return redirect(url_for("auth.login"))
    return render_template(template, form=form, user=user)


@bp.route("/invitation/<token>", methods=["GET", "POST"])
@public
def invitation(token: str):
    return _token_page(
        token,
        tokens.INVITATION,
        "auth/invitation.html",
        "auth.invitation_accepted",
        "パスワードを設定しました。メールアドレスと新しいパスワードでログインしてください。",
    )


@bp.route("/reset/<token>", methods=["GET", "POST"])
@public
def reset(token: str):
    return _token_page(
        token,
        tokens.PASSWORD_RESET,
        "auth/reset.html",
        "auth.password_reset",
        "パスワードを再設定しました。新しいパスワードでログインしてください。",
    )
