"""Evidence viewed in the browser (issue: "each answer with its evidence (viewable in the
browser)"): PDF and images open inline in a new tab through a POST — the download's own checks
(who may read, scanned clean, SHA-256), its audit event with ``inline``, the stored content type,
``nosniff`` and a policy that lets the browser render the file and nothing else. Office and text
files stay download-only."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from portal.errors import MESSAGES
from portal.evidence import service
from portal.evidence.models import EvidenceFile
from portal.evidence.views import IMAGE_VIEW_CSP, PDF_VIEW_CSP
from tests import test_evidence
from tests.helpers import form_fields, soup
from tests.test_evidence import NO_SUCH_ID, download, events, store
from tests.test_evidence_files import ACCEPTED, image_bytes, pdf_bytes
from tests.test_headers import csp
from tests.test_routes import changed_tables, csrf_token, error_title, signed_in, snapshot

# The arranged data of the download's tests (fixtures; the questionnaire one is autouse).
questionnaire = test_evidence.questionnaire
scanner = test_evidence.scanner
w = test_evidence.w

VIEWABLE = {"pdf", "png", "jpeg", "gif", "webp"}
DOWNLOAD_ONLY = [kind for kind in ACCEPTED if kind not in VIEWABLE]
DOWNLOAD_ONLY_NOTICE = "ブラウザで表示できません"


def view_form(page, evidence_id: int):
    return soup(page).select_one(f"form[action='/evidence/{evidence_id}/view']")


def view_from_page(browser, evidence_id: int):
    """Open the file's page and submit its 「ブラウザで表示する」 form as the browser would."""
    page = browser.get(f"/evidence/{evidence_id}")
    assert page.status_code == 200
    form = view_form(page, evidence_id)
    assert form is not None, "no view button"
    # buffered: the test client reads and closes the file the response streams
    return browser.client.post(form["action"], data=form_fields(form), buffered=True)


def post_view(browser, evidence_id: int, token: str | None = None):
    """A POST to the view URL whatever the page shows (a forged or stale form)."""
    return browser.client.post(
        f"/evidence/{evidence_id}/view",
        data={"csrf_token": token if token is not None else csrf_token(browser)},
        buffered=True,
    )


def assert_renders_only(response, policy: str) -> None:
    """The chosen policy, and what it must mean whatever it is later tuned to."""
    assert response.headers["Content-Security-Policy"] == policy
    directives = csp(response)
    assert "sandbox" in directives and directives["sandbox"] == []  # an opaque origin
    assert directives["default-src"] == ["'none'"]
    for fetching in ("script-src", "connect-src", "object-src", "frame-src", "child-src"):
        assert fetching not in directives, fetching  # falls back to default-src 'none'
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["form-action"] == ["'none'"]
    assert directives["base-uri"] == ["'none'"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"


# ---------------------------------------------------------------------------------------------
# What may be viewed, and how it is sent
# ---------------------------------------------------------------------------------------------


def test_staff_view_a_clean_pdf_inline_with_its_japanese_name(app, db, w):
    content = pdf_bytes()
    evidence = store(db, w, "ISMAP登録証 2026.pdf", content)
    for user in (w.staff, w.auditor, w.vendor):  # the vendor may view its own file too
        browser = signed_in(app, user)
        page = browser.get(f"/evidence/{evidence.id}")
        form = view_form(page, evidence.id)
        assert form is not None
        assert form["method"] == "post"
        assert form["target"] == "_blank"
        assert form.select_one("input[name=csrf_token]")["value"]
        assert form.select_one("button").get_text(strip=True) == "ブラウザで表示する"
        assert soup(page).select_one(f"form[action='/evidence/{evidence.id}/download']")
        assert soup(page).select_one("[data-field=download-only]") is None

        response = view_from_page(browser, evidence.id)
        assert response.status_code == 200, user.email
        assert response.get_data() == content
        assert response.headers["Content-Disposition"] == (
            "inline; filename=\"ISMAP_2026.pdf\"; filename*=UTF-8''"
            + quote("ISMAP登録証 2026.pdf", safe="")
        )
        assert response.headers["Content-Type"] == "application/pdf"
        assert_renders_only(response, PDF_VIEW_CSP)
    # The image policy's img-src is not needed by the PDF viewer: nothing more than necessary.
    assert "img-src" not in PDF_VIEW_CSP


@pytest.mark.parametrize("kind", ["png", "jpeg", "gif", "webp"])
def test_an_image_is_viewed_inline_with_its_stored_type(app, db, w, kind):
    name, build, content_type = ACCEPTED[kind]
    content = build()
    evidence = store(db, w, name, content)
    response = view_from_page(signed_in(app, w.staff), evidence.id)
    assert response.status_code == 200
    assert response.get_data() == content
    assert response.headers["Content-Type"] == content_type
    assert response.headers["Content-Disposition"] == (
        f"inline; filename=\"{name}\"; filename*=UTF-8''{quote(name, safe='')}"
    )
    assert_renders_only(response, IMAGE_VIEW_CSP)
    assert csp(response)["img-src"] == ["'self'"]


def test_the_type_comes_from_the_checked_bytes_never_from_the_name(app, db, w):
    evidence = store(db, w, "certificate.pdf", image_bytes("PNG"))
    response = view_from_page(signed_in(app, w.staff), evidence.id)
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["Content-Disposition"] == (
        "inline; filename=\"certificate.pdf.png\"; filename*=UTF-8''certificate.pdf.png"
    )
    assert_renders_only(response, IMAGE_VIEW_CSP)


@pytest.mark.parametrize("kind", DOWNLOAD_ONLY)
def test_office_and_text_files_are_download_only(app, db, w, kind):
    name, build, _content_type = ACCEPTED[kind]
    evidence = store(db, w, name, build())
    browser = signed_in(app, w.staff)
    page = browser.get(f"/evidence/{evidence.id}")
    assert view_form(page, evidence.id) is None
    assert "ブラウザで表示する" not in soup(page).get_text()
    assert soup(page).select_one(f"form[action='/evidence/{evidence.id}/download']")
    notice = soup(page).select_one("[data-field=download-only]").get_text()
    assert DOWNLOAD_ONLY_NOTICE in notice
    assert "ダウンロード" in notice

    before = snapshot(app)
    response = post_view(browser, evidence.id)
    assert response.status_code == 404  # as for any URL that does not exist
    assert error_title(response) == MESSAGES[404][0]
    assert response.headers.get("Content-Disposition") is None
    assert changed_tables(before, snapshot(app)) == []  # not audited: nothing was sent
    assert download(browser, evidence.id).status_code == 200  # the download stays


def test_the_view_button_is_shown_exactly_for_pdf_and_images(app, db, w):
    shown = {}
    browser = signed_in(app, w.staff)
    for kind, (name, build, _type) in ACCEPTED.items():
        evidence = store(db, w, name, build(), max_files=len(ACCEPTED))
        page = browser.get(f"/evidence/{evidence.id}")
        shown[kind] = view_form(page, evidence.id) is not None
    assert {kind for kind, has_button in shown.items() if has_button} == VIEWABLE


# ---------------------------------------------------------------------------------------------
# The download's rules hold for the view
# ---------------------------------------------------------------------------------------------


def test_get_on_the_view_url_is_405_and_changes_nothing(app, db, w):
    evidence = store(db, w, "cert.pdf", pdf_bytes())
    browser = signed_in(app, w.staff)
    before = snapshot(app)
    response = browser.get(f"/evidence/{evidence.id}/view")
    assert response.status_code == 405
    assert error_title(response) == MESSAGES[405][0]
    assert response.headers.get("Content-Disposition") is None
    assert changed_tables(before, snapshot(app)) == []


def test_a_view_without_a_valid_csrf_token_is_refused(app, db, w):
    evidence = store(db, w, "cert.pdf", pdf_bytes())
    browser = signed_in(app, w.staff)
    for token in ("", "forged-token"):
        response = post_view(browser, evidence.id, token=token)
        assert response.status_code == 400
        assert response.headers.get("Content-Disposition") is None
    assert events(db, "evidence.downloaded") == []


def test_outsiders_get_404_and_nothing_changes(app, db, w):
    evidence = store(db, w, "cert.pdf", pdf_bytes())
    outsiders = {
        "another company's vendor": w.rival_vendor,
        "staff of another department": w.other_department_staff,
        "staff of another organisation": w.foreign_staff,
        "auditor of another organisation": w.foreign_auditor,
    }
    browsers = {label: signed_in(app, user) for label, user in outsiders.items()}
    before = snapshot(app)
    wrong = []
    for label, browser in browsers.items():
        for evidence_id in (evidence.id, NO_SUCH_ID):
            response = post_view(browser, evidence_id)
            if response.status_code != 404 or response.headers.get("Content-Disposition"):
                wrong.append(f"{label}: view of {evidence_id} → {response.status_code}")
    assert wrong == []
    assert changed_tables(before, snapshot(app)) == []


def test_the_admin_role_may_not_view_evidence(app, db, w):
    evidence = store(db, w, "cert.pdf", pdf_bytes())
    assert post_view(signed_in(app, w.admin), evidence.id).status_code == 403


@pytest.mark.parametrize("status", ["pending", "infected", "error"])
def test_a_file_not_scanned_clean_is_refused(app, db, w, status):
    evidence = store(db, w, "cert.pdf", pdf_bytes())
    db.get(EvidenceFile, evidence.id).scan_status = status
    db.commit()
    browser = signed_in(app, w.staff)
    assert view_form(browser.get(f"/evidence/{evidence.id}"), evidence.id) is None
    response = post_view(browser, evidence.id)
    assert response.status_code == 409
    assert response.headers.get("Content-Disposition") is None
    assert response.headers["Content-Type"].startswith("text/html")
    assert events(db, "evidence.downloaded") == []


def test_a_deleted_file_is_not_found(app, db, w):
    evidence = store(db, w, "cert.pdf", pdf_bytes())
    db.get(EvidenceFile, evidence.id).deleted_at = evidence.uploaded_at
    db.commit()
    assert post_view(signed_in(app, w.staff), evidence.id).status_code == 404


def test_a_tampered_file_is_refused_and_audited_as_on_download(app, db, w):
    evidence = store(db, w, "cert.pdf", pdf_bytes())
    path = service.stored_path(w.evidence_dir, evidence.stored_name)
    path.write_bytes(path.read_bytes().replace(b"/MediaBox", b"/MediaBoy"))
    response = post_view(signed_in(app, w.staff), evidence.id)
    assert response.status_code == 500
    assert response.headers.get("Content-Disposition") is None
    [failure] = events(db, "evidence.integrity_failed")
    assert (failure.actor_user_id, failure.object_id) == (w.staff.id, str(evidence.id))
    assert events(db, "evidence.downloaded") == []


# ---------------------------------------------------------------------------------------------
# Audit
# ---------------------------------------------------------------------------------------------


def test_a_view_is_audited_as_a_download_with_inline_true(app, db, w):
    content = pdf_bytes()
    evidence = store(db, w, "cert.pdf", content)
    browser = signed_in(app, w.staff)
    assert view_from_page(browser, evidence.id).status_code == 200
    assert download(browser, evidence.id).status_code == 200
    viewed, downloaded = events(db, "evidence.downloaded")
    for event in (viewed, downloaded):
        assert (event.actor_user_id, event.organisation_id) == (w.staff.id, w.org.id)
        assert (event.object_type, event.object_id) == ("evidence_file", str(evidence.id))
        assert event.request_id and event.ip
    details = json.loads(viewed.details)
    assert details == {
        "assessment_id": w.assessment.id,
        "question_key": evidence.question_key,
        "sha256": evidence.sha256,
        "size": len(content),
        "inline": True,
    }
    assert "inline" not in json.loads(downloaded.details)
    assert {k: v for k, v in details.items() if k != "inline"} == json.loads(downloaded.details)
