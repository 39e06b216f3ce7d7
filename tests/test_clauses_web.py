# ruff: noqa: F811 - the `people` fixture comes from test_review_web
"""特記事項 through the web: the page, editing within limits, the preview, generated versions
(PDF text, numbering, marking, fonts), downloads, comparison, the contract, refusals and hostile
vendor text."""

from __future__ import annotations

import hashlib
import http.server
import json
import logging
import threading
from datetime import date

import pytest
import sqlalchemy as sa

from portal.assessments import store
from portal.clauses.models import ClauseDocument, ClauseVersion, Contract
from portal.evaluations.models import Outcome
from portal.permissions import Role
from tests.helpers import flashes, soup, text_of
from tests.pdf_helpers import pdf_attachments, pdf_fonts, pdf_text
from tests.test_review_web import events, people, signed_in, submitted  # noqa: F401 - fixture

CONTRACT_ITEMS = [f"9.1(2){c}" for c in "①②③④⑤⑥⑦⑧⑨⑩⑪⑫⑬"]


def ready(db, make, org, people, **fields):
    """A submitted 業務委託 assessment with a contract period: everything the clauses need."""
    period = {"period_start": date(2026, 4, 1), "period_end": date(2027, 3, 31)}
    return submitted(db, make, org, people, **({"kind": "outsourcing"} | period | fields))


def details(event) -> dict:
    return json.loads(event.details)


def page_url(assessment) -> str:
    return f"/assessments/{assessment.id}/clauses"


def generate(browser, assessment):
    return browser.submit(page_url(assessment), selector="form[action$='/clauses/versions']")


def versions(db, assessment) -> list[ClauseVersion]:
    db.rollback()
    return list(
        db.scalars(
            sa.select(ClauseVersion)
            .join(ClauseDocument)
            .where(ClauseDocument.assessment_id == assessment.id)
            .order_by(ClauseVersion.number)
        )
    )


def download(browser, assessment, number):
    return browser.submit(
        page_url(assessment), selector=f"form[action$='/clauses/versions/{number}/pdf']"
    )


@pytest.fixture
def outsourcing(db, make, org, people):
    return ready(
        db,
        make,
        org,
        people,
        title="住民情報入力業務委託",
        personal_data=True,
        changes={
            "contract.emergency_notice_hours": 3,
            "contract.deletion_deadline_days": 14,
            "contract.report_interval": "quarterly",
            "contract.manager_name": "業務部長　責任 太郎",
        },
    )


def test_staff_generate_a_numbered_hashed_version_whose_pdf_says_what_the_vendor_committed(
    app,
    db,
    outsourcing,
    people,
):
    staff = signed_in(app, people["staff"])
    page = staff.get(page_url(outsourcing))
    assert page.status_code == 200
    rows = soup(page).select("[data-table=articles] tr[data-article]")
    assert rows[0].select("td")[0].get_text() == "第1条"
    assert not soup(page).select("[data-section=missing]")

    response = generate(staff, outsourcing)

    assert response.status_code == 303
    assert "第1版を作成しました" in flashes(staff.get(response.headers["Location"]))[0]
    [version] = versions(db, outsourcing)
    document = db.get(ClauseDocument, version.document_id)
    assert version.number == 1 and version.created_by_id == people["staff"].id
    assert version.sha256 == hashlib.sha256(version.pdf).hexdigest()
    [event] = events(db, "clauses.generate")
    assert details(event)["sha256"] == version.sha256 and details(event)["version"] == 1

    pdf = download(staff, outsourcing, 1)
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    assert "attachment" in pdf.headers["Content-Disposition"]
    assert pdf.data == version.pdf
    text = pdf_text(pdf.data)
    flat = text.replace("\n", "")
    # Articles, numbered in order, the vendor's own commitments and the parties.
    for n in range(1, 20):
        assert f"第{n}条" in flat
    for expected in (
        "情報セキュリティに関する特記事項",
        "（総則）",
        "（秘密の保持）",
        "3時間以内",
        "14日",
        "四半期ごと",
        "業務部長　責任 太郎",
        "株式会社審査対象",
        "体制届・誓約書",
        "再委託承認申請書",
        "消去証明書",
        "定期報告書",
        "様式第1号",
    ):
        assert expected in flat, expected
    # Header: document number, version and the classification marking on every page.
    pages = text.count(" / ")
    assert pages >= 5
    assert flat.count(f"文書番号 {document.number}　第1版") >= pages
    assert flat.count("機密性2") >= pages
    assert f"1 / {pages}" in flat and f"{pages} / {pages}" in flat
    # Every contract item is served by an article of the generated document.
    for item in CONTRACT_ITEMS:
        assert item in flat, item
    fonts = pdf_fonts(pdf.data)
    assert any(f.endswith("+IPAexMincho") for f in fonts), fonts  # embedded subset
    assert events(db, "clauses.download")


def test_the_preview_is_the_same_document_as_the_pdf(app, db, outsourcing, people):
    staff = signed_in(app, people["staff"])
    preview = staff.get(f"{page_url(outsourcing)}/preview")
    assert preview.status_code == 200
    html = soup(preview)
    headings = [h.get_text() for h in html.select(".article-heading")]
    generate(staff, outsourcing)
    [version] = versions(db, outsourcing)
    flat = pdf_text(version.pdf).replace("\n", "")
    assert headings and all(h in flat for h in headings)
    assert html.select_one("link[rel=stylesheet]")["href"].endswith("/assessments/clauses.css")
    assert "（プレビュー）" in html.select_one("[data-field=document-number]").get_text()
    css = staff.get("/assessments/clauses.css")
    assert css.status_code == 200 and css.mimetype == "text/css"


def test_optional_articles_switch_off_and_numbers_and_references_follow(
    app,
    db,
    outsourcing,
    people,
):
    staff = signed_in(app, people["staff"])
    page = soup(staff.get(page_url(outsourcing)))
    optional = [i["value"] for i in page.select("input[name=included]")]
    assert optional
    before = [r["data-article"] for r in page.select("[data-table=articles] tr[data-article]")]

    response = staff.submit(
        page_url(outsourcing),
        {"included": optional[1:], "special_terms": "乙は、作業日報を毎週提出する。"},
        selector="form[action$='/clauses/options']",
    )

    assert response.status_code == 303
    page = soup(staff.get(page_url(outsourcing)))
    after = [r["data-article"] for r in page.select("[data-table=articles] tr[data-article]")]
    assert optional[0] not in after and after[-1] == "special_terms"
    labels = [r.select("td")[0].get_text() for r in page.select("tr[data-article]")]
    assert labels == [f"第{n}条" for n in range(1, len(after) + 1)]
    assert len(after) == len(before)  # one article out, the special terms in
    generate(staff, outsourcing)
    flat = pdf_text(versions(db, outsourcing)[0].pdf).replace("\n", "")
    assert "特約事項" in flat and "作業日報を毎週提出する" in flat


def test_mandatory_articles_cannot_be_removed_and_unknown_ones_are_refused(
    app,
    db,
    outsourcing,
    people,
):
    staff = signed_in(app, people["staff"])
    response = staff.submit(
        page_url(outsourcing),
        {"included": ["general", "no_such_article"]},
        selector="form[action$='/clauses/options']",
    )
    assert response.status_code == 303
    assert "選択できない条項" in flashes(staff.get(response.headers["Location"]))[0]
    # Leaving every optional article out keeps every mandatory one.
    staff.submit(
        page_url(outsourcing), {"included": []}, selector="form[action$='/clauses/options']"
    )
    page = soup(staff.get(page_url(outsourcing)))
    shown = {r["data-article"] for r in page.select("tr[data-article]")}
    assert {"general", "confidentiality", "subcontracting", "return_disposal"} <= shown
    assert not page.select("input[name=included][checked]")


def test_versions_are_kept_and_compared_article_by_article(app, db, outsourcing, people):
    staff = signed_in(app, people["staff"])
    generate(staff, outsourcing)
    staff.submit(
        page_url(outsourcing),
        {"special_terms": "追加の取決め。"},
        selector="form[action$='/clauses/options']",
    )
    generate(staff, outsourcing)
    first, second = versions(db, outsourcing)
    assert (first.number, second.number) == (1, 2) and first.sha256 != second.sha256

    assert download(staff, outsourcing, 1).data == first.pdf  # earlier versions stay
    compare = staff.get(f"{page_url(outsourcing)}/compare?before=1&after=2")
    rows = {r["data-article"]: r["data-state"] for r in soup(compare).select("tr[data-article]")}
    assert rows["special_terms"] == "追加"
    assert rows["general"] == "変更なし"
    assert text_of(compare, "[data-field=changed-count]") == "変更のある条項・様式: 1件"
    assert staff.get(f"{page_url(outsourcing)}/compare?before=1&after=9").status_code == 404
    assert staff.get(f"{page_url(outsourcing)}/compare?before=x&after=2").status_code == 302


def test_versions_are_immutable(app, db, outsourcing, people):
    generate(signed_in(app, people["staff"]), outsourcing)
    [version] = versions(db, outsourcing)
    version.sha256 = "0" * 64
    with pytest.raises(ValueError, match="immutable"):
        db.flush()
    db.rollback()


def test_the_contract_is_recorded_with_the_attached_version(app, db, outsourcing, people):
    staff = signed_in(app, people["staff"])
    generate(staff, outsourcing)
    [version] = versions(db, outsourcing)
    data = {
        "contract_number": "令和8年度第42号",
        "contract_date": "2026-03-30",
        "period_start": "2026-04-01",
        "period_end": "2027-03-31",
        "amount": "1200000",
        "signatory": "代表取締役　契約 花子",
        "attached_version": str(version.id),
    }
    bad = staff.submit(
        page_url(outsourcing),
        data | {"period_end": "2026-01-01"},
        selector="form[action$='/clauses/contract']",
    )
    assert bad.status_code == 422
    assert "終了日は開始日以降" in soup(bad).select_one("[data-field=period_end]").get_text()

    response = staff.submit(
        page_url(outsourcing), data, selector="form[action$='/clauses/contract']"
    )

    assert response.status_code == 303
    db.rollback()
    contract = db.scalar(sa.select(Contract))
    assert contract.contract_number == "令和8年度第42号"
    assert contract.attached_version_id == version.id and contract.amount == 1_200_000
    page = staff.get(page_url(outsourcing))
    assert "第1版" in text_of(page, "[data-field=attached-version]")
    engagement = staff.get(f"/engagements/{outsourcing.engagement_id}")
    cell = text_of(engagement, f"tr[data-assessment-id='{outsourcing.id}'] [data-field=contract]")
    assert "令和8年度第42号" in cell and "第1版" in cell
    assert details(events(db, "contract.record")[0])["attached_sha256"] == version.sha256


def test_missing_values_refuse_generation_and_say_where_to_fill_them(
    app,
    db,
    make,
    org,
    people,
):
    assessment = ready(db, make, org, people, title="期間未定の委託")
    assessment.engagement.period_start = None
    store.save(db, assessment, "contract.emergency_notice_hours", None, people["vendor"])
    db.commit()
    staff = signed_in(app, people["staff"])

    page = staff.get(page_url(assessment))

    missing = soup(page).select("[data-table=missing] tr[data-missing]")
    keys = {row["data-missing"] for row in missing}
    assert "contract.emergency_notice_hours" in keys and "契約期間" in keys
    where = {row["data-missing"]: row.select("td")[2] for row in missing}
    assert where["契約期間"].select_one("a")["href"].endswith("/edit")
    assert not soup(page).select("form[action$='/clauses/versions']")
    response = staff.post(f"{page_url(assessment)}/versions", token_from=page_url(assessment))
    assert "必要な項目が埋まっていない" in flashes(staff.get(response.headers["Location"]))[0]
    assert not versions(db, assessment)


def test_clauses_are_refused_for_terms_of_service_rejected_vendors_and_unsubmitted_answers(
    app,
    db,
    make,
    org,
    people,
):
    terms = submitted(db, make, org, people, title="約款型", confidentiality=1)
    rejected = ready(db, make, org, people, title="不可の委託")
    rejected.status = "decided"
    db.add(
        Outcome(
            assessment_id=rejected.id,
            decision="reject",
            reasoning="要件を満たさない",
            score_id=_score_id(db, rejected),
            recommended_by_id=people["staff"].id,
        )
    )
    db.commit()
    staff = signed_in(app, people["staff"])
    for assessment, message in ((terms, "約款"), (rejected, "不可")):
        page = staff.get(page_url(assessment))
        assert message in text_of(page, "[data-field=unavailable]")
        response = staff.post(f"{page_url(assessment)}/versions", token_from=page_url(assessment))
        assert message in flashes(staff.get(response.headers["Location"]))[0]
        assert not versions(db, assessment)


def _score_id(db, assessment) -> int:
    from portal.evaluations.models import Score

    return db.scalar(sa.select(Score.id).where(Score.assessment_id == assessment.id))


def test_only_the_departments_staff_edit_and_others_see_nothing(
    app,
    db,
    make,
    org,
    outsourcing,
    people,
):
    generate(signed_in(app, people["staff"]), outsourcing)
    approver = signed_in(app, people["approver"])
    assert approver.get(page_url(outsourcing)).status_code == 200
    assert not soup(approver.get(page_url(outsourcing))).select("form[action$='/versions']")
    assert download(approver, outsourcing, 1).status_code == 200  # reads, audited
    assert (
        approver.post(
            f"{page_url(outsourcing)}/versions", token_from=page_url(outsourcing)
        ).status_code
        == 403
    )
    other = make.user(org, roles={Role.STAFF}, departments=[make.department(org, "税務課")])
    outsider = signed_in(app, other)
    assert outsider.get(page_url(outsourcing)).status_code == 404
    vendor = signed_in(app, people["vendor"])
    assert vendor.get(page_url(outsourcing)).status_code == 403


def test_generation_is_rate_limited_per_user_together_with_other_pdfs(
    app,
    db,
    outsourcing,
    people,
):
    app.config["PDF_PER_MINUTE"] = 1
    staff = signed_in(app, people["staff"])
    generate(staff, outsourcing)
    response = generate(staff, outsourcing)
    assert "短時間に多くのPDFを作成しました" in flashes(staff.get(response.headers["Location"]))[0]
    assert len(versions(db, outsourcing)) == 1


class _Probe(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802
        _Probe.hits.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def probe():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Probe)
    _Probe.hits = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_hostile_vendor_text_renders_literally_without_fetching(
    app,
    db,
    make,
    org,
    people,
    probe,
):
    hostile = {
        "contract.work_sites": (
            f'<img src="{probe}/img"><link rel=attachment href="file:///etc/passwd">'
            f"<style>@import url({probe}/css);</style> file:///etc/passwd"
        ),
        "contract.manager_name": "髙﨑 ｶﾅ é́ 👩‍💻 \u202eتجربة\u202c",
        "contract.return_deletion_method": "長い説明" * 2500,  # 10,000 characters
        "company.representative": f"<script>fetch('{probe}/js')</script>",
    }
    assessment = ready(db, make, org, people, title="敵対的な入力", changes=hostile)
    staff = signed_in(app, people["staff"])
    preview = staff.get(f"{page_url(assessment)}/preview")
    assert not soup(preview).select("img, script, style, link[rel=attachment]")

    response = generate(staff, assessment)

    assert response.status_code == 303
    [version] = versions(db, assessment)
    flat = pdf_text(version.pdf).replace("\n", "")
    assert "<img src=" in flat and "file:///etc/passwd" in flat and "<script>" in flat
    assert "髙﨑 ｶﾅ é́" in flat and "長い説明長い説明" in flat
    assert "〓" in flat  # the emoji and the Arabic letters: no font draws them
    assert "👩" not in flat
    assert "root:" not in flat
    assert pdf_attachments(version.pdf) == {}
    assert _Probe.hits == []


def test_weasyprint_subsets_fonts_with_harfbuzz(app, caplog):
    """Without libharfbuzz-subset WeasyPrint falls back to fontTools (10–50× slower)."""
    from portal.pdf.render import _render_in_process

    caplog.set_level(logging.WARNING, logger="weasyprint")
    with app.test_request_context():
        _render_in_process(
            '<p style="font-family: IPAexMincho">特記事項の本文</p>', ("contracts/clauses.css",)
        )
    assert not [r for r in caplog.records if "fontTools" in r.getMessage()]
    assert not [r for r in caplog.records if "subset" in r.getMessage().lower()]
