"""Japanese error pages that leak nothing (no stack traces, no internal names)."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import HTTPException, InternalServerError

from portal.db import get_session

log = logging.getLogger(__name__)

MESSAGES: dict[int, tuple[str, str]] = {
    400: ("リクエストが正しくありません", "入力内容を確認して、もう一度お試しください。"),
    401: ("ログインが必要です", "このページを表示するにはログインしてください。"),
    403: (
        "アクセス権限がありません",
        "このページを表示する権限がありません。必要な場合はシステム管理者にお問い合わせください。",
    ),
    404: ("ページが見つかりません", "お探しのページは存在しないか、表示する権限がありません。"),
    405: ("この操作はできません", "このページではその操作を受け付けていません。"),
    409: (
        "他の操作と競合しました",
        "ほかの方が先に同じデータを更新しました。最新の内容を確認してから、もう一度操作してください。",
    ),
    413: ("データが大きすぎます", "送信されたデータまたはファイルが上限を超えています。"),
    429: (
        "操作が多すぎます",
        "短時間に多くの操作が行われました。しばらく待ってからお試しください。",
    ),
    500: (
        "システムエラーが発生しました",
        "処理中に問題が発生しました。時間をおいてもう一度お試しください。",
    ),
    503: (
        "ただいま利用できません",
        "システムが一時的に利用できません。時間をおいてもう一度お試しください。",
    ),
}
# Any other client error (415, 416, 431 …) keeps its status code and gets this generic page.
OTHER_CLIENT_ERROR = (
    "リクエストを処理できません",
    "このリクエストは処理できませんでした。ページを読み込み直してから、もう一度お試しください。",
)


class ConflictError(Exception):
    """Someone else changed the object first (optimistic locking)."""


def render_error(code: int, detail: str | None = None):
    title, message = MESSAGES.get(code) or (OTHER_CLIENT_ERROR if code < 500 else MESSAGES[500])
    if request.accept_mimetypes.best == "application/json":
        return jsonify({"error": title}), code
    return render_template(
        "errors/error.html", code=code, title=title, message=detail or message
    ), code


def init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def _csrf(_error: CSRFError):
        return render_error(
            400,
            "フォームの有効期限が切れたか、正しく送信されませんでした。"
            "ページを再読み込みしてから、もう一度お試しください。",
        )

    @app.errorhandler(ConflictError)
    def _conflict(_error: ConflictError):
        return render_error(409)

    @app.errorhandler(StaleDataError)
    def _stale(_error: StaleDataError):
        # The version column did not match: someone else saved first (optimistic locking).
        get_session().rollback()
        return render_error(409)

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException):
        body, status = render_error(error.code or 500)
        # The status code's own headers, as Werkzeug would send them: Allow (405),
        # Content-Range (416), Retry-After (429) …
        headers = [(k, v) for k, v in error.get_headers() if k.lower() != "content-type"]
        return body, status, headers

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        if isinstance(error, HTTPException):
            return _http(error)
        log.exception("unhandled error", exc_info=error)
        # A failed flush leaves the session unusable; the error page itself may need it.
        get_session().rollback()
        return render_error(InternalServerError.code)
