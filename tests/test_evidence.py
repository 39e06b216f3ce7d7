"""The evidence store (SECURITY.md "Files"): types checked by content, random names outside
``static/``, SHA-256 re-checked on download, attachment headers, the virus-scan hook and its
quarantine, object-level access (404), the audit trail, and ``evidence rescan``."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from portal import create_app
from portal.assessments.models import Answer, Assessment
from portal.audit.models import AuditEvent
from portal.evidence import filetypes, service
from portal.evidence.models import EvidenceFile
from portal.evidence.scanner import ClamdScanner, NoScanner, ScanError
from portal.permissions import Role
from portal.questionnaires import loader
from tests.factories import Factory
from tests.helpers import flashes, reload, soup
from tests.test_evidence_files import (
    ACCEPTED,
    EICAR,
    REFUSED,
    clamd,  # noqa: F401 (fixture)
    image_bytes,
    office_bytes,
    pdf_bytes,
)
from tests.test_headers import assert_security_headers
from tests.test_routes import changed_tables, csrf_token, error_title, signed_in, snapshot

QUESTIONNAIRE = """
key = "evidence_test"
version = "1"
title = "添付ファイル試験用"

[[section]]
key = "certs"
title = "認証"

[[section.question]]
key = "certs.ismap"
type = "evidence"
label = "ISMAP登録を証する書類"
help = "登録の有無と範囲を確認するため。"
cites = ["9.2(2)⑨"]
max_files = 3

[[section.question]]
key = "certs.has_pmark"
type = "yes_no"
label = "プライバシーマークを取得していますか。"
help = "個人情報の取扱体制を確認するため。"
cites = ["9.2(2)⑨"]
allow = ["yes", "no"]

[[section.question]]
key = "certs.pmark"
type = "evidence"
label = "プライバシーマーク登録証"
help = "登録の有効期間を確認するため。"
cites = ["9.2(2)⑨"]
when = { answer = { "certs.has_pmark" = ["yes"] } }

[[section.question]]
key = "certs.note"
type = "text"
label = "備考"
help = "補足のため。"
cites = ["9.2(2)⑨"]
required = false
"""
QUESTION = "certs.ismap"

# ---------------------------------------------------------------------------------------------
# Arranged data
# ---------------------------------------------------------------------------------------------


class FakeScanner:
    def __init__(self, verdict: str = "clean"):
        self.verdict = verdict
        self.scanned: list[bytes] = []

    def scan(self, path: Path) -> str:
        self.scanned.append(Path(path).read_bytes())
        if self.verdict == "raise":
            raise ScanError("clamd is down")
        return self.verdict


@pytest.fixture(autouse=True)
def questionnaire(monkeypatch, tmp_path):
    source = tmp_path / "evidence_test.toml"
    source.write_text(QUESTIONNAIRE, encoding="utf-8")
    loaded = loader.load_file(source)
    real_get = loader.get

    def get(key, version, *args, **kwargs):
        if (key, version) == (loaded.key, loaded.version):
            return loaded
        return real_get(key, version, *args, **kwargs)

    monkeypatch.setattr(loader, "get", get)
    return loaded


@pytest.fixture
def scanner(app):
    fake = FakeScanner()
    app.extensions["evidence_scanner"] = fake
    return fake


def make_assessment(db, org, department, company, staff, status: str = "draft") -> Assessment:
    """An engagement of ``department`` and its assessment addressed to ``company``."""
    make = Factory(db, None)
    engagement = make.engagement(
        org,
        department,
        staff,
        kind="external_service",
        title="クラウド型グループウェアの利用",
        purpose="庁内の情報共有",
        information="職員の予定表",
    )
    return make.assessment(
        engagement, company, staff, questionnaire=("evidence_test", "1"), status=status
    )


@pytest.fixture
def w(app, db, make, org, other_org, scanner):
    department = make.department(org, name="情報政策課")
    other_department = make.department(org, name="税務課")
    company = make.company(org, name="証拠書類株式会社")
    rival = make.company(org, name="競合システム株式会社")
    staff = make.user(org, roles={Role.STAFF}, departments=[department])
    foreign_department = make.department(other_org, name="他団体の情報政策課")
    return SimpleNamespace(
        org=org,
        company=company,
        staff=staff,
        vendor=make.user(company=company, invited_by=org, name="委託先担当"),
        rival_vendor=make.user(company=rival, invited_by=org, name="競合の担当"),
        auditor=make.user(org, roles={Role.AUDITOR}),
        admin=make.user(org, roles={Role.ADMIN}),
        other_department_staff=make.user(org, roles={Role.STAFF}, departments=[other_department]),
        foreign_staff=make.user(other_org, roles={Role.STAFF}, departments=[foreign_department]),
        foreign_auditor=make.user(other_org, roles={Role.AUDITOR}),
        assessment=make_assessment(db, org, department, company, staff),
        evidence_dir=Path(app.config["EVIDENCE_DIR"]),
    )


def multipart(fields: dict[str, str], files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart body encoded here: the test client leaks temporary files for big bodies."""
    boundary = "evidence-test-boundary-7e1f"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts += [
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + content
        + b"\r\n"
        for filename, content in files
    ]
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def upload(browser, assessment_id: int, files, question: str = QUESTION, next_: str = "/"):
    body, content_type = multipart({"csrf_token": csrf_token(browser), "next": next_}, files)
    return browser.client.post(
        f"/assessments/{assessment_id}/evidence/{question}", data=body, content_type=content_type
    )


def download(browser, evidence_id: int):
    # buffered: the test client reads and closes the file the response streams
    return browser.client.post(
        f"/evidence/{evidence_id}/download",
        data={"csrf_token": csrf_token(browser)},
        buffered=True,
    )


def rows(db) -> list[EvidenceFile]:
    db.rollback()
    return list(db.scalars(sa.select(EvidenceFile).order_by(EvidenceFile.id)))


def events(db, action: str) -> list[AuditEvent]:
    db.rollback()
    return list(
        db.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
        )
    )


def stored_files(evidence_dir: Path) -> list[Path]:
    return [p for p in evidence_dir.rglob("*") if p.is_file()] if evidence_dir.exists() else []


def store(db, w, name: str, content: bytes, scanner=None, **kwargs) -> EvidenceFile:
    actor = db.get(type(w.vendor), w.vendor.id)
    evidence = service.store(
        db,
        assessment=db.get(Assessment, w.assessment.id),
        question_key=kwargs.pop("question_key", QUESTION),
        upload=SimpleNamespace(filename=name, stream=io.BytesIO(content)),
        actor=actor,
        evidence_dir=w.evidence_dir,
        scanner=scanner or NoScanner(),
        **kwargs,
    )
    db.commit()
    return evidence


# ---------------------------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(ACCEPTED))
def test_each_allowed_type_is_accepted(db, w, kind):
    name, build, content_type = ACCEPTED[kind]
    content = build()
    evidence = store(db, w, name, content)
    assert evidence.content_type == content_type
    assert evidence.original_name == name
    assert evidence.size == len(content)
    assert evidence.sha256 == hashlib.sha256(content).hexdigest()
    assert evidence.scan_status == "clean"


@pytest.mark.parametrize("case", list(REFUSED))
def test_files_that_are_not_what_they_claim_are_refused(db, w, case):
    name, content = REFUSED[case]
    with pytest.raises(filetypes.EvidenceError) as refused:
        store(db, w, name, content)
    db.rollback()
    message = str(refused.value)
    assert any("\u3040" <= ch <= "\u30ff" for ch in message), message  # Japanese kana
    assert rows(db) == []
    assert stored_files(w.evidence_dir) == []  # nothing left behind, not even a temporary file


def test_an_oversized_file_is_refused_by_the_store(db, w):
    with pytest.raises(filetypes.EvidenceError, match="1ファイル1MBまで"):
        store(db, w, "big.txt", b"a" * (1024 * 1024 + 1), max_bytes=1024 * 1024)
    db.rollback()
    assert stored_files(w.evidence_dir) == []


# ---------------------------------------------------------------------------------------------
# Upload through the portal
# ---------------------------------------------------------------------------------------------


def test_an_upload_is_stored_outside_static_under_a_random_name(app, db, w):
    vendor = signed_in(app, w.vendor)
    content = pdf_bytes()
    response = upload(
        vendor, w.assessment.id, [("ISMAP登録証.pdf", content)], next_="/vendor/profile"
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/vendor/profile"
    [evidence] = rows(db)
    assert evidence.original_name == "ISMAP登録証.pdf"
    assert evidence.question_key == QUESTION
    assert (evidence.organisation_id, evidence.vendor_company_id) == (w.org.id, w.company.id)
    assert evidence.uploaded_by_id == w.vendor.id
    assert evidence.sha256 == hashlib.sha256(content).hexdigest()
    assert len(evidence.stored_name) == 64 and int(evidence.stored_name, 16) >= 0

    path = service.stored_path(w.evidence_dir, evidence.stored_name)
    assert stored_files(w.evidence_dir) == [path]  # and no temporary file left behind
    assert path.read_bytes() == content
    assert path.parent.parent.parent == w.evidence_dir  # ab/cd/abcd…
    assert path.stat().st_mode & 0o077 == 0
    assert not path.resolve().is_relative_to(Path(app.static_folder).resolve())
    assert "ISMAP" not in str(path)
    followed = vendor.get("/vendor/profile")
    assert flashes(followed) == ["ファイルを添付しました（1件）。"]


def test_an_evidence_store_inside_static_is_refused_at_start(app, database_url):
    with pytest.raises(RuntimeError, match="must not be inside"):
        create_app(
            {"DATABASE_URL": database_url, "EVIDENCE_DIR": str(Path(app.static_folder) / "ev")}
        )


def test_several_files_at_once_and_all_or_nothing(app, db, w):
    vendor = signed_in(app, w.vendor)
    assert upload(vendor, w.assessment.id, [("a.pdf", pdf_bytes())]).status_code == 302

    # One bad file among good ones: nothing of this request is kept, and the message names it.
    mixed = [("c.pdf", pdf_bytes()), ("偽物.pdf", REFUSED["html named .pdf"][1])]
    response = upload(vendor, w.assessment.id, mixed)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert flashes(vendor.get("/")) == [f"「偽物.pdf」: {filetypes.NOT_ALLOWED}"]
    assert [e.original_name for e in rows(db)] == ["a.pdf"]
    assert len(stored_files(w.evidence_dir)) == 1

    two = [("b.png", image_bytes("PNG")), ("d.xlsx", office_bytes("xl/workbook.xml"))]
    assert upload(vendor, w.assessment.id, two).status_code == 302
    assert flashes(vendor.get("/")) == ["ファイルを添付しました（2件）。"]
    assert [e.original_name for e in rows(db)] == ["a.pdf", "b.png", "d.xlsx"]

    # The question allows three files: a fourth is refused.
    upload(vendor, w.assessment.id, [("e.pdf", pdf_bytes())])
    assert flashes(vendor.get("/")) == ["この設問に添付できるファイルは3件までです。"]
    assert len(rows(db)) == 3
    assert len(stored_files(w.evidence_dir)) == 3


def test_a_refused_upload_flashes_the_japanese_message_and_keeps_nothing(app, db, w):
    vendor = signed_in(app, w.vendor)
    response = upload(vendor, w.assessment.id, [("report.pdf", REFUSED["html named .pdf"][1])])
    assert response.status_code == 302
    assert flashes(vendor.get("/")) == [filetypes.NOT_ALLOWED]
    assert rows(db) == []
    assert stored_files(w.evidence_dir) == []
    response = upload(vendor, w.assessment.id, [])
    assert flashes(vendor.get("/")) == ["添付するファイルを選んでください。"]


def test_oversized_uploads_get_413_or_the_japanese_message(app, db, w):
    vendor = signed_in(app, w.vendor)
    app.config["EVIDENCE_MAX_MB"] = 1
    big = b"a" * (1024 * 1024 + 10)
    assert upload(vendor, w.assessment.id, [("big.txt", big)]).status_code == 302
    assert flashes(vendor.get("/")) == ["ファイルが大きすぎます。1ファイル1MBまでです。"]
    app.config["MAX_CONTENT_LENGTH"] = 512 * 1024
    response = upload(vendor, w.assessment.id, [("big.txt", big)])
    assert response.status_code == 413
    assert error_title(response) == "データが大きすぎます"
    assert rows(db) == []
    assert stored_files(w.evidence_dir) == []


@pytest.mark.parametrize(
    ("next_", "location"),
    [
        ("/assessments/1/sections/certs", "/assessments/1/sections/certs"),
        ("https://evil.example/", "/"),
        ("//evil.example/x", "/"),
        ("", "/"),
    ],
)
def test_the_redirect_after_upload_stays_on_the_portal(app, w, next_, location):
    vendor = signed_in(app, w.vendor)
    response = upload(vendor, w.assessment.id, [("a.txt", b"memo")], next_=next_)
    assert response.headers["Location"] == location


def test_forged_question_keys_and_submitted_assessments(app, db, w, make, org):
    vendor = signed_in(app, w.vendor)
    files = [("a.pdf", pdf_bytes())]
    for question in ("certs.note", "certs.nothing", "..", "x" * 120):
        assert upload(vendor, w.assessment.id, files, question=question).status_code == 404
    assessment = db.get(Assessment, w.assessment.id)
    assessment.status = "submitted"
    db.commit()
    response = upload(vendor, w.assessment.id, files)
    assert response.status_code == 302
    assert flashes(vendor.get("/")) == ["提出済みのため、ファイルの追加や削除はできません。"]
    assert rows(db) == []


def answer(db, assessment, key: str, value, returned: bool = False) -> None:
    db.add(
        Answer(
            assessment_id=assessment.id,
            question_key=key,
            value=json.dumps(value),
            returned=returned,
        )
    )
    db.commit()


def test_files_go_only_to_questions_the_answers_show(app, db, w):
    vendor = signed_in(app, w.vendor)
    upload(vendor, w.assessment.id, [("pmark.pdf", pdf_bytes())], question="certs.pmark")
    assert flashes(vendor.get("/")) == [
        "この設問は現在の回答では対象外のため、ファイルを添付できません。"
    ]
    assert rows(db) == []
    answer(db, w.assessment, "certs.has_pmark", "yes")
    upload(vendor, w.assessment.id, [("pmark.pdf", pdf_bytes())], question="certs.pmark")
    assert [e.question_key for e in rows(db)] == ["certs.pmark"]


def test_a_returned_assessment_changes_only_the_files_of_returned_questions(app, db, w):
    kept = store(db, w, "ismap.pdf", pdf_bytes())
    answer(db, w.assessment, "certs.has_pmark", "yes", returned=True)
    answer(db, w.assessment, "certs.pmark", None, returned=True)
    db.get(Assessment, w.assessment.id).status = "returned"
    db.commit()
    vendor = signed_in(app, w.vendor)

    upload(vendor, w.assessment.id, [("ismap2.pdf", pdf_bytes())])
    assert flashes(vendor.get("/")) == ["差し戻された設問のファイルだけを変更できます。"]
    page = vendor.get(f"/evidence/{kept.id}")
    assert soup(page).select_one("form[action$='/delete']") is None
    vendor.client.post(f"/evidence/{kept.id}/delete", data={"csrf_token": csrf_token(vendor)})
    assert flashes(vendor.get("/")) == ["差し戻された設問のファイルだけを変更できます。"]
    assert reload(db, kept).deleted_at is None

    upload(vendor, w.assessment.id, [("pmark.pdf", pdf_bytes())], question="certs.pmark")
    assert [e.question_key for e in rows(db)] == [QUESTION, "certs.pmark"]


# ---------------------------------------------------------------------------------------------
# Download
# ---------------------------------------------------------------------------------------------


def test_download_is_an_attachment_with_the_japanese_name_and_safe_headers(app, db, w):
    content = pdf_bytes()
    evidence = store(db, w, "ISMAP登録証 2026.pdf", content)
    for user in (w.vendor, w.staff, w.auditor):
        browser = signed_in(app, user)
        page = browser.get(f"/evidence/{evidence.id}")
        assert page.status_code == 200
        assert soup(page).select_one("[data-field=name]").get_text() == "ISMAP登録証 2026.pdf"
        assert soup(page).select_one("[data-field=kind]").get_text() == "PDF"
        assert soup(page).select_one(f"form[action='/evidence/{evidence.id}/download']")
        response = download(browser, evidence.id)
        assert response.status_code == 200
        assert response.get_data() == content
        assert response.headers["Content-Disposition"] == (
            "attachment; filename=\"ISMAP_2026.pdf\"; filename*=UTF-8''"
            + quote("ISMAP登録証 2026.pdf", safe="")
        )
        assert response.headers["Content-Type"] == "application/pdf"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Content-Security-Policy"].split("; ")[0] == "sandbox"
        assert_security_headers(response, f"download by {user.email}")
        assert response.headers["Cache-Control"] == "no-store"
    downloads = events(db, "evidence.downloaded")
    assert [e.actor_user_id for e in downloads] == [w.vendor.id, w.staff.id, w.auditor.id]
    assert {(e.organisation_id, e.object_type, e.object_id) for e in downloads} == {
        (w.org.id, "evidence_file", str(evidence.id))
    }


def test_download_names_end_in_the_type_that_was_checked(app, db, w):
    png = store(db, w, "certificate.pdf", image_bytes("PNG"))
    text = store(db, w, "証明書", "消去しました".encode())
    browser = signed_in(app, w.vendor)
    png_response = download(browser, png.id)
    assert png_response.headers["Content-Type"] == "image/png"
    assert png_response.headers["Content-Disposition"] == (
        "attachment; filename=\"certificate.pdf.png\"; filename*=UTF-8''certificate.pdf.png"
    )
    text_response = download(browser, text.id)
    assert text_response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert text_response.headers["Content-Disposition"] == (
        f"attachment; filename=\"evidence-{text.id}.txt\"; filename*=UTF-8''"
        + quote("証明書.txt", safe="")
    )


@pytest.mark.parametrize("damage", ["edit", "remove"])
def test_a_tampered_file_is_refused_on_download_and_audited(app, db, w, damage):
    evidence = store(db, w, "cert.pdf", pdf_bytes())
    path = service.stored_path(w.evidence_dir, evidence.stored_name)
    if damage == "edit":
        path.write_bytes(path.read_bytes().replace(b"/MediaBox", b"/MediaBoy"))
    else:
        path.unlink()
    browser = signed_in(app, w.staff)
    response = download(browser, evidence.id)
    assert response.status_code == 500
    assert "ダウンロードを止めました" in soup(response).get_text()
    assert response.headers.get("Content-Disposition") is None
    [failure] = events(db, "evidence.integrity_failed")
    assert (failure.actor_user_id, failure.object_id) == (w.staff.id, str(evidence.id))
    assert events(db, "evidence.downloaded") == []


@pytest.mark.parametrize(
    ("verdict", "status", "title"),
    [
        ("infected", "infected", "このファイルはダウンロードできません"),
        ("raise", "error", "ファイルを確認しています"),
        ("unexpected", "error", "ファイルを確認しています"),
    ],
)
def test_infected_and_unscanned_files_are_quarantined(app, db, w, scanner, verdict, status, title):
    scanner.verdict = verdict
    vendor = signed_in(app, w.vendor)
    content = EICAR if verdict == "infected" else b"memo"
    upload(vendor, w.assessment.id, [("memo.txt", content)])
    [evidence] = rows(db)
    assert evidence.scan_status == status
    assert scanner.scanned == [content]
    expected = "隔離しました" if status == "infected" else "ウイルス検査が終わるまで"
    assert expected in flashes(vendor.get("/"))[0]
    for user in (w.vendor, w.staff):
        browser = signed_in(app, user)
        page = browser.get(f"/evidence/{evidence.id}")
        assert page.status_code == 200
        assert soup(page).select_one(f"form[action='/evidence/{evidence.id}/download']") is None
        response = download(browser, evidence.id)
        assert response.status_code == 409
        assert error_title(response) == title
        assert response.headers.get("Content-Disposition") is None
    assert len(events(db, "evidence.infected")) == (1 if status == "infected" else 0)
    assert events(db, "evidence.downloaded") == []
    assert service.counts_by_question(db, w.assessment) == (
        {} if status == "infected" else {QUESTION: 1}
    )


# ---------------------------------------------------------------------------------------------
# Who may read, upload and delete
# ---------------------------------------------------------------------------------------------

NO_SUCH_ID = 987654


def test_outsiders_get_404_and_nothing_changes(app, db, w):
    evidence = store(db, w, "cert.pdf", pdf_bytes())
    files = [("x.pdf", pdf_bytes())]
    outsiders = {
        "another company's vendor": w.rival_vendor,
        "staff of another department": w.other_department_staff,
        "staff of another organisation": w.foreign_staff,
        "auditor of another organisation": w.foreign_auditor,
    }
    browsers = {label: signed_in(app, user) for label, user in outsiders.items()}
    before, stored_before = snapshot(app), stored_files(w.evidence_dir)
    wrong = []
    for label, user in outsiders.items():
        browser = browsers[label]
        token = csrf_token(browser)
        for evidence_id in (evidence.id, NO_SUCH_ID):
            for method, path, status in [
                ("GET", f"/evidence/{evidence_id}", 404),
                ("POST", f"/evidence/{evidence_id}/download", 404),
                # Staff hold no answering permission: 403 whatever the id (no existence oracle).
                ("POST", f"/evidence/{evidence_id}/delete", 404 if user.is_vendor else 403),
            ]:
                if method == "GET":
                    response = browser.get(path)
                else:
                    response = browser.client.post(path, data={"csrf_token": token})
                if response.status_code != status:
                    wrong.append(f"{label}: {method} {path} → {response.status_code}")
        for assessment_id in (w.assessment.id, NO_SUCH_ID):
            response = upload(browser, assessment_id, files)
            if response.status_code != (404 if user.is_vendor else 403):
                wrong.append(f"{label}: upload to {assessment_id} → {response.status_code}")
    assert wrong == []
    assert changed_tables(before, snapshot(app)) == []
    assert stored_files(w.evidence_dir) == stored_before


def test_the_admin_role_has_no_access_to_evidence(app, db, w):
    evidence = store(db, w, "cert.pdf", pdf_bytes())
    admin = signed_in(app, w.admin)
    assert admin.get(f"/evidence/{evidence.id}").status_code == 403
    assert download(admin, evidence.id).status_code == 403


def test_the_vendor_deletes_its_own_file_while_it_may_still_edit(app, db, w):
    keep = store(db, w, "keep.pdf", pdf_bytes())
    evidence = store(db, w, "old.pdf", pdf_bytes())
    vendor = signed_in(app, w.vendor)
    page = vendor.get(f"/evidence/{evidence.id}")
    form = soup(page).select_one(f"form[action='/evidence/{evidence.id}/delete']")
    assert form is not None
    token = form.select_one("[name=csrf_token]")["value"]
    response = vendor.client.post(
        f"/evidence/{evidence.id}/delete", data={"csrf_token": token, "next": "/vendor/profile"}
    )
    assert response.headers["Location"] == "/vendor/profile"
    assert reload(db, evidence).deleted_at is not None
    assert service.stored_path(w.evidence_dir, evidence.stored_name).exists()  # kept on record
    assert vendor.get(f"/evidence/{evidence.id}").status_code == 404
    assert signed_in(app, w.staff).get(f"/evidence/{evidence.id}").status_code == 404
    assert service.counts_by_question(db, w.assessment) == {QUESTION: 1}
    assert [e.id for e in service.files_by_question(db, w.assessment)[QUESTION]] == [keep.id]
    # A second submit of the same form is harmless.
    again = vendor.client.post(f"/evidence/{evidence.id}/delete", data={"csrf_token": token})
    assert again.status_code == 302
    [deleted] = events(db, "evidence.deleted")
    assert (deleted.actor_user_id, deleted.object_id) == (w.vendor.id, str(evidence.id))
    assert deleted.organisation_id == w.org.id

    # After submission the files are part of the record: no delete.
    db.get(Assessment, w.assessment.id).status = "submitted"
    db.commit()
    assert soup(vendor.get(f"/evidence/{keep.id}")).select_one("form[action$='/delete']") is None
    vendor.client.post(f"/evidence/{keep.id}/delete", data={"csrf_token": token})
    assert flashes(vendor.get("/")) == ["提出済みのため、ファイルの追加や削除はできません。"]
    assert reload(db, keep).deleted_at is None


def test_uploads_are_audited_with_object_question_hash_and_size(app, db, w):
    content = image_bytes("PNG")
    upload(signed_in(app, w.vendor), w.assessment.id, [("scan.png", content)])
    [evidence] = rows(db)
    [event] = events(db, "evidence.uploaded")
    details = json.loads(event.details)
    assert (event.actor_user_id, event.organisation_id) == (w.vendor.id, w.org.id)
    assert (event.object_type, event.object_id) == ("evidence_file", str(evidence.id))
    assert details["question_key"] == QUESTION
    assert details["sha256"] == hashlib.sha256(content).hexdigest()
    assert details["size"] == len(content)
    assert details["assessment_id"] == w.assessment.id
    assert event.request_id and event.ip


def test_uploads_are_scanned_by_clamd_when_configured(app, db, w, clamd):  # noqa: F811
    app.extensions["evidence_scanner"] = ClamdScanner(clamd.tcp_address, timeout=5)
    vendor = signed_in(app, w.vendor)
    upload(vendor, w.assessment.id, [("ok.txt", b"fine"), ("eicar.txt", EICAR)])
    assert [(e.original_name, e.scan_status) for e in rows(db)] == [
        ("ok.txt", "clean"),
        ("eicar.txt", "infected"),
    ]
    [infected] = events(db, "evidence.infected")
    assert infected.object_id == str(rows(db)[1].id)


# ---------------------------------------------------------------------------------------------
# evidence rescan
# ---------------------------------------------------------------------------------------------


def test_rescan_retries_pending_and_failed_files_and_is_idempotent(app, db, w, runner, scanner):
    scanner.verdict = "raise"
    failed = store(db, w, "a.txt", b"first", scanner=scanner)
    eicar = store(db, w, "b.txt", EICAR, scanner=scanner)
    gone = store(db, w, "c.txt", b"deleted", scanner=scanner)
    db.get(EvidenceFile, gone.id).deleted_at = failed.uploaded_at
    pending = store(db, w, "d.txt", b"later")
    db.get(EvidenceFile, pending.id).scan_status = "pending"
    db.commit()
    assert [e.scan_status for e in rows(db)] == ["error", "error", "error", "pending"]

    scanner.verdict = "clean"
    dry = runner.invoke(args=["evidence", "rescan", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"{pending.id}: 検査済み" in dry.output
    assert [e.scan_status for e in rows(db)] == ["error", "error", "error", "pending"]

    scanner.verdict, scanner.scanned = "clean", []
    scanner.scan = lambda path: "infected" if Path(path).read_bytes() == EICAR else "clean"
    result = runner.invoke(args=["evidence", "rescan"])
    assert result.exit_code == 0, result.output
    assert "3件を検査しました" in result.output
    assert [e.scan_status for e in rows(db)] == ["clean", "infected", "error", "clean"]
    [infected] = events(db, "evidence.infected")
    assert (infected.object_id, infected.organisation_id) == (str(eicar.id), w.org.id)

    before = snapshot(app)
    again = runner.invoke(args=["evidence", "rescan"])
    assert again.exit_code == 0
    assert "0件を検査しました" in again.output
    assert changed_tables(before, snapshot(app)) == []


def test_rescan_leaves_a_changed_file_quarantined(app, db, w, runner, scanner):
    scanner.verdict = "raise"
    evidence = store(db, w, "a.txt", b"original", scanner=scanner)
    service.stored_path(w.evidence_dir, evidence.stored_name).write_bytes(b"swapped")
    scanner.verdict = "clean"
    assert runner.invoke(args=["evidence", "rescan"]).exit_code == 0
    assert reload(db, evidence).scan_status == "error"
