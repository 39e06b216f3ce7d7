"""委託先・外部サービス リスク評価ポータル — the application factory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask

from portal.config import load_config

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def create_app(config_overrides: dict[str, Any] | None = None) -> Flask:
    instance_path = Path(os.environ.get("PORTAL_INSTANCE_PATH") or PROJECT_ROOT / "instance")
    app = Flask(
        __name__,
        instance_path=str(instance_path),
        static_folder=str(PROJECT_ROOT / "static"),
        static_url_path="/static",
    )
    app.config.update(load_config(instance_path))
    if config_overrides:
        app.config.update(config_overrides)

    if app.config["TRUSTED_PROXIES"]:
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]

    register_extensions(app)
    register_blueprints(app)
    register_cli(app)
    return app


def register_extensions(app: Flask) -> None:
    from portal import db, errors, web
    from portal.auth import passwords
    from portal.auth.session import init_login
    from portal.extensions import csrf

    db.init_app(app)
    passwords.init_app(app)
    # Request checks (size limit, request ID, session lifetime) run before CSRF parses forms.
    web.init_app(app)
    csrf.init_app(app)
    init_login(app)
    errors.init_app(app)


def register_blueprints(app: Flask) -> None:
    from portal.admin.views import bp as admin_bp
    from portal.approvals.views import bp as approvals_bp
    from portal.assessments.views import bp as assessments_bp
    from portal.audit.views import bp as audit_bp
    from portal.auth.views import bp as auth_bp
    from portal.clauses.views import bp as clauses_bp
    from portal.contractor_audits.views import bp as contractor_audits_bp
    from portal.engagements.views import bp as engagements_bp
    from portal.evaluations.views import bp as evaluations_bp
    from portal.evidence.views import bp as evidence_bp
    from portal.lifecycle.views import bp as lifecycle_bp
    from portal.mail import bp as mail_bp
    from portal.main.views import bp as main_bp
    from portal.register.views import bp as register_bp
    from portal.reports.views import bp as reports_bp
    from portal.reviews.confirmation_views import bp as confirmations_bp
    from portal.reviews.exit_views import bp as exits_bp
    from portal.reviews.file_views import bp as review_files_bp
    from portal.reviews.findings_views import bp as findings_bp
    from portal.reviews.report_views import bp as vendor_reports_bp
    from portal.vendors.views import bp as vendors_bp

    app.register_blueprint(main_bp)
    app.register_blueprint(auth_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(audit_bp)
    app.register_blueprint(vendors_bp)
    app.register_blueprint(engagements_bp)
    app.register_blueprint(assessments_bp)
    app.register_blueprint(evidence_bp)
    app.register_blueprint(evaluations_bp)
    app.register_blueprint(clauses_bp)
    app.register_blueprint(approvals_bp)
    app.register_blueprint(lifecycle_bp)
    app.register_blueprint(register_bp)
    app.register_blueprint(reports_bp)
    app.register_blueprint(review_files_bp)
    app.register_blueprint(confirmations_bp)
    app.register_blueprint(exits_bp)
    app.register_blueprint(findings_bp)
    app.register_blueprint(contractor_audits_bp)
    app.register_blueprint(vendor_reports_bp)
    app.register_blueprint(mail_bp)


def register_cli(app: Flask) -> None:
    from portal.audit.cli import audit_cli
    from portal.backup import backup_cli
    from portal.cli import db_cli
    from portal.demo import demo_code, seed_demo
    from portal.evidence.cli import evidence_cli
    from portal.questionnaires.cli import questionnaires_cli
    from portal.reviews.cli import send_reminders
    from portal.users.cli import create_admin

    app.cli.add_command(db_cli)
    app.cli.add_command(audit_cli)
    app.cli.add_command(backup_cli)
    app.cli.add_command(create_admin)
    app.cli.add_command(seed_demo)
    app.cli.add_command(demo_code)
    app.cli.add_command(questionnaires_cli)
    app.cli.add_command(evidence_cli)
    app.cli.add_command(send_reminders)
