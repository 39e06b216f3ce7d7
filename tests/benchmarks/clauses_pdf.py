"""Benchmark: how much the portal adds on top of WeasyPrint when it makes a 特記事項 PDF.

Run with ``make bench`` (or ``PORTAL_ENV=testing .venv/bin/python -m tests.benchmarks.clauses_pdf``).
Not a pytest test: it only prints timings and exits 0 unless something crashes.

A typical document (an outsourcing engagement with personal data, every visible question answered
with demo values: 16 pages with the current catalogue) is built in memory, without a database.
Then, after one warm-up of each, two things are timed in interleaved rounds:

(a) the portal's full path: ``assemble`` + ``document_html`` + ``render_pdf`` (forked child with
    time and memory limits, locked-down ``asset:`` URL fetcher, attachments stripped);
(b) WeasyPrint alone, in-process, on the same final HTML with the same stylesheet and fonts.

The figure that matters is the ratio of the medians (a)/(b), target ≤ 1.3: absolute times depend
on the machine and its load, while the ratio shows the cost of the portal's own work (assembling,
templating, forking, isolation) relative to the unavoidable layout and PDF writing.
"""

from __future__ import annotations

import io
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pypdf
import weasyprint
from weasyprint.text.fonts import FontConfiguration

from portal import PROJECT_ROOT, create_app
from portal.assessments.answers import validate
from portal.assessments.demo import sample_answer
from portal.clauses import catalogue as catalogues
from portal.clauses.assemble import Document, assemble
from portal.clauses.catalogue import Catalogue
from portal.clauses.pdf import STYLESHEETS, document_html
from portal.pdf.render import render_pdf
from portal.questionnaires import loader
from portal.questionnaires.conditions import EngagementFacts, visible_questions
from portal.questionnaires.schema import Questionnaire

ROUNDS = 7
TARGET = 1.3
NUMBER, VERSION = "BENCH-0001", "第1版"
FACTS = EngagementFacts(
    track="9.1",
    kind="outsourcing",
    confidentiality=3,
    integrity=2,
    availability=2,
    personal_data=True,
)
FIELDS = {
    "org.name": "さくら台市",
    "org.self": "本市",
    "org.ciso_title": "副市長",
    "org.network_admin_title": "情報政策課長",
    "vendor.name": "株式会社ベンチマーク",
    "vendor.address": "東京都千代田区霞が関1-1",
    "vendor.representative": "代表取締役 試験 太郎",
    "engagement.title": "住民情報システム運用保守業務委託",
    "engagement.information": "住民の氏名・住所等",
    "engagement.period": "2026年4月1日から2027年3月31日まで",
}


def answer_all(questionnaire: Questionnaire, facts: EngagementFacts) -> dict[str, Any]:
    """Demo answers to every visible question, in order so that follow-ups appear."""
    answers: dict[str, Any] = {}
    questions = visible_questions(questionnaire, facts, answers)
    index = 0
    while index < len(questions):
        question = questions[index]
        value = validate(question, sample_answer(question))
        if value is not None:
            answers[question.key] = value
            questions = visible_questions(questionnaire, facts, answers)
        index += 1
    return answers


def build(catalogue: Catalogue, questionnaire: Questionnaire, answers: dict[str, Any]) -> Document:
    document = assemble(catalogue, questionnaire, FACTS, answers, FIELDS)
    if document.missing:
        raise SystemExit(f"document incomplete, missing: {[m.label for m in document.missing]}")
    return document


def median_seconds(rounds: list[Callable[[], bytes]]) -> list[float]:
    """The median time of each function over ROUNDS interleaved runs."""
    times: list[list[float]] = [[] for _ in rounds]
    for _ in range(ROUNDS):
        for fn, spent in zip(rounds, times, strict=True):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [statistics.median(spent) for spent in times]


def page_count(pdf: bytes) -> int:
    return len(pypdf.PdfReader(io.BytesIO(pdf)).pages)


def main() -> None:
    catalogue = catalogues.latest()
    questionnaire = loader.latest("assessment")
    answers = answer_all(questionnaire, FACTS)
    stylesheet = PROJECT_ROOT / "contracts" / "clauses.css"

    def portal_path() -> bytes:
        html = document_html(build(catalogue, questionnaire, answers), NUMBER, VERSION)
        return render_pdf(html, stylesheets=STYLESHEETS)

    def weasyprint_alone() -> bytes:
        fonts = FontConfiguration()
        css = weasyprint.CSS(filename=str(stylesheet), font_config=fonts)
        return weasyprint.HTML(string=html, base_url=str(stylesheet.parent)).write_pdf(
            stylesheets=[css], font_config=fonts
        )

    with tempfile.TemporaryDirectory(prefix="portal-bench-") as tmp:
        os.environ.setdefault("PORTAL_ENV", "testing")
        os.environ["PORTAL_DATABASE_URL"] = f"sqlite:///{Path(tmp) / 'unused.db'}"
        os.environ["PORTAL_INSTANCE_PATH"] = str(Path(tmp) / "instance")
        app = create_app()
        with app.test_request_context():
            document = build(catalogue, questionnaire, answers)
            html = document_html(document, NUMBER, VERSION)
            pdf = portal_path()  # the warm-ups
            pages = page_count(pdf)
            if page_count(weasyprint_alone()) != pages:
                raise SystemExit("WeasyPrint alone gives a different page count: not comparable")
            portal, alone = median_seconds([portal_path, weasyprint_alone])

    ratio = portal / alone
    verdict = "met" if ratio <= TARGET else "NOT met"
    rows = [
        ("engagement", f"track {FACTS.track}, {FACTS.kind}, personal data: {FACTS.personal_data}"),
        ("document", f"{pages} pages, {len(pdf) / 1024:.0f} KiB, {len(answers)} answers"),
        ("", f"{len(document.articles)} articles, {len(document.forms)} forms"),
        ("rounds", f"{ROUNDS} interleaved, after 1 warm-up each; medians below"),
        ("(a) portal full path", f"{portal * 1000:7.0f} ms  (assemble + HTML + render_pdf)"),
        ("(b) WeasyPrint alone", f"{alone * 1000:7.0f} ms  (same HTML, CSS and fonts)"),
        ("ratio (a)/(b)", f"{ratio:7.2f}     target ≤ {TARGET}: {verdict}"),
    ]
    print("特記事項 PDF benchmark")
    for label, value in rows:
        print(f"  {label:<22} {value}")


if __name__ == "__main__":
    main()
