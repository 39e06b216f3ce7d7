"""Send e-mail in Japanese (UTF-8). Templates live in ``portal/mail/templates/mail/``.

Without ``PORTAL_MAIL_SERVER`` every message is written to the outbox folder
(``instance/outbox`` by default) as an ``.eml`` file that tests and developers read back.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import uuid
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import formatdate, make_msgid
from pathlib import Path

from flask import current_app, render_template

log = logging.getLogger(__name__)


def build_message(to: str, subject: str, body: str, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or "localhost")
    message.set_content(body, charset="utf-8")
    return message


def send(to: str, subject: str, template: str, **context) -> EmailMessage:
    """Render ``mail/<template>.txt`` and send it."""
    config = current_app.config
    body = render_template(f"mail/{template}.txt", **context)
    message = build_message(to, subject, body, config["MAIL_SENDER"])
    if config["MAIL_SERVER"]:
        _send_smtp(message, config)
    else:
        _write_outbox(message, Path(config["MAIL_OUTBOX"]))
    return message


MAIL_FAILED = (
    "処理は完了しましたが、メールを送信できませんでした。"
    "時間をおいて、案内メールの再送を行ってください。"
)


def send_after_commit(to: str, subject: str, template: str, **context) -> bool:
    """Send a message about a change already committed. A mail failure must not turn that
    change into an error page: it is logged and reported to the caller (False)."""
    try:
        send(to, subject, template, **context)
    except (smtplib.SMTPException, OSError):
        log.exception("mail to %s failed", to)
        return False
    return True


def _send_smtp(message: EmailMessage, config) -> None:
    with smtplib.SMTP(config["MAIL_SERVER"], config["MAIL_PORT"], timeout=30) as smtp:
        if config["MAIL_STARTTLS"]:
            smtp.starttls(context=ssl.create_default_context())
        if config["MAIL_USERNAME"]:
            smtp.login(config["MAIL_USERNAME"], config["MAIL_PASSWORD"])
        smtp.send_message(message)


def _write_outbox(message: EmailMessage, outbox: Path) -> Path:
    outbox.mkdir(parents=True, exist_ok=True)
    path = outbox / f"{uuid.uuid4().hex}.eml"
    path.write_bytes(message.as_bytes(policy=policy.SMTP))
    return path


def read_outbox(outbox: Path) -> list[EmailMessage]:
    """Every message in the outbox, oldest first."""
    if not outbox.exists():
        return []
    files = sorted(outbox.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
    return [BytesParser(policy=policy.default).parsebytes(p.read_bytes()) for p in files]
