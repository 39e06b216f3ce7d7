"""Assembling the 特記事項 for one engagement and vendor: a pure function of the catalogue, the
engagement, the parties' fields, the vendor's answers and the staff's choices.

Articles that apply are numbered 第1条, 第2条 … in catalogue order; ``{ref:ID}`` becomes the
number the article got, ``{form:ID}`` the number of the form. Inserted values are kept apart from
the clause text (``Segment.value``) so that templates print them literally. Every value a kept
paragraph needs but nobody has filled in is listed in ``Document.missing``; such a document is
shown but never generated.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from portal.clauses.catalogue import FIELDS, PLACEHOLDER, Article, Catalogue
from portal.questionnaires.conditions import EngagementFacts, holds, visible_questions
from portal.questionnaires.countries import COUNTRIES
from portal.questionnaires.schema import YES_NO_LABELS, Question, Questionnaire
from portal.web import format_date as japanese_date

SPECIAL_TERMS_ID = "special_terms"
SPECIAL_TERMS_TITLE = "特約事項"
SPECIAL_TERMS_MAX = 10_000
KANJI_DIGITS = "〇一二三四五六七八九"
FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


def kanji_number(n: int) -> str:
    """1 → 一, 10 → 十, 12 → 十二, 20 → 二十 (item numbers 号)."""
    tens, ones = divmod(n, 10)
    return (
        ("" if tens < 2 else KANJI_DIGITS[tens])
        + ("十" if tens else "")
        + (KANJI_DIGITS[ones] if ones else "")
    )


@dataclass(frozen=True)
class Segment:
    text: str
    value: bool = False  # inserted data: printed literally, marked in the preview


@dataclass(frozen=True)
class Missing:
    """A value the document needs: what it is, where it is filled in, which article needs it."""

    label: str
    source: str  # organisation | company | engagement | answer | reference
    article: str  # 第n条（title）
    question_key: str | None = None
    section_key: str | None = None


@dataclass(frozen=True)
class Clause:
    """One paragraph (項) of an article, with its items (号)."""

    number: str  # "" for the first paragraph, then "２", "３" …
    segments: tuple[Segment, ...]
    items: tuple[tuple[str, tuple[Segment, ...]], ...] = ()


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Numbered:
    id: str
    number: int
    title: str
    cites: tuple[str, ...]
    mandatory: bool
    clauses: tuple[Clause, ...]
    table: Table | None = None

    @property
    def label(self) -> str:
        return f"第{self.number}条"

    def plain_text(self) -> str:
        lines = []
        for clause in self.clauses:
            text = "".join(s.text for s in clause.segments)
            lines.append(f"{clause.number}　{text}" if clause.number else text)
            lines += [f"{n}　{''.join(s.text for s in segs)}" for n, segs in clause.items]
        if self.table:
            lines.append(" | ".join(self.table.columns))
            lines += [" | ".join(row) for row in self.table.rows]
        return "\n".join(lines)


@dataclass(frozen=True)
class NumberedForm:
    id: str
    number: str  # 様式第1号
    title: str
    template: str
    cites: tuple[str, ...]


@dataclass(frozen=True)
class Option:
    """An optional article that applies to this engagement, and whether it is switched on."""

    article: Article
    included: bool


@dataclass(frozen=True)
class Document:
    title: str
    marking: str
    catalogue_version: str
    parts: tuple[tuple[str, tuple[Numbered, ...]], ...]
    forms: tuple[NumberedForm, ...]
    options: tuple[Option, ...]
    missing: tuple[Missing, ...]
    fields: Mapping[str, str] = field(default_factory=dict)
    answers: Mapping[str, str] = field(default_factory=dict)
    tables: Mapping[str, tuple[dict[str, str], ...]] = field(default_factory=dict)

    @property
    def articles(self) -> list[Numbered]:
        return [a for _title, articles in self.parts for a in articles]

    @property
    def complete(self) -> bool:
        return not self.missing

    # For the form templates: formatted values, "" when there is none.
    def field(self, name: str) -> str:
        return self.fields.get(name) or ""

    def answer(self, key: str) -> str:
        return self.answers.get(key) or ""

    def rows(self, key: str) -> tuple[dict[str, str], ...]:
        return self.tables.get(key, ())

    def snapshot(self) -> list[dict[str, Any]]:
        """What a stored version keeps to be compared article by article later."""
        return [
            {"id": a.id, "number": a.number, "title": a.title, "text": a.plain_text()}
            for a in self.articles
        ] + [
            {"id": f"form:{f.id}", "number": None, "title": f"{f.number}　{f.title}", "text": ""}
            for f in self.forms
        ]


def _plain_number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:,}" if isinstance(value, int) and abs(value) >= 10_000 else str(value)


def format_answer(question: Question, value: Any) -> str | None:
    """The answer as it reads in a clause, or None when there is none."""
    if value is None or value == "" or value == []:
        return None
    kind = question.type
    if kind == "number":
        return f"{_plain_number(value)}{question.unit or ''}"
    if kind in ("single", "yes_no"):
        label = question.choice_label(value)
        return YES_NO_LABELS.get(label, label) if kind == "yes_no" else label
    if kind == "multiple":
        labels = [question.choice_label(v) for v in value]
        # Labels may hold 、 themselves: quote each when there are several.
        return labels[0] if len(labels) == 1 else "、".join(f"「{label}」" for label in labels)
    if kind == "country":
        return COUNTRIES.get(value, value)
    if kind == "date":
        try:
            return japanese_date(date.fromisoformat(value))
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def format_rows(question: Question, rows: Any) -> tuple[dict[str, str], ...]:
    result = []
    for row in rows if isinstance(rows, list) else []:
        cells = {}
        for column in question.columns:
            raw = row.get(column.key, "") if isinstance(row, dict) else ""
            if column.type == "country":
                cells[column.key] = COUNTRIES.get(raw, raw)
            else:
                cells[column.key] = dict(column.choices).get(raw, raw) if column.choices else raw
        result.append(cells)
    return tuple(result)


class _Resolver:
    """Turns clause text into segments, collecting what is missing."""

    def __init__(self, questionnaire, visible, fields, answers, numbers, form_numbers, sources):
        self.questionnaire = questionnaire
        self.visible = visible
        self.fields = fields
        self.answers = answers
        self.numbers = numbers
        self.form_numbers = form_numbers
        self.sources = sources
        self.missing: dict[tuple[str, str], Missing] = {}

    def _miss(self, article: str, label: str, source: str, key: str | None = None) -> None:
        question = self.questionnaire.question(key) if key else None
        self.missing.setdefault(
            (label, article),
            Missing(label, source, article, key, question.section_key if question else None),
        )

    def value(self, name: str, article: str) -> str:
        kind, _, target = name.partition(":")
        if name in FIELDS:
            if not (text := self.fields.get(name)):
                self._miss(article, FIELDS[name], self.sources[name.split(".")[0]])
            return text or f"［{FIELDS[name]}］"
        if kind == "answer":
            question = self.questionnaire.question(target)
            text = self.answers.get(target) if target in self.visible else None
            if not text:
                self._miss(article, question.label, "answer", target)
            return text or "［未回答］"
        table, what = (self.numbers, "条項") if kind == "ref" else (self.form_numbers, "様式")
        if target not in table:
            self._miss(article, f"{what}「{target}」が文書に含まれていません", "reference")
            return f"［{what}なし］"
        return table[target]

    def segments(self, text: str, article: str) -> tuple[Segment, ...]:
        result: list[Segment] = []
        position = 0
        for match in PLACEHOLDER.finditer(text):
            if match.start() > position:
                result.append(Segment(text[position : match.start()]))
            name = match.group(1)
            # References and form numbers are part of the clause text, not inserted data.
            structural = name.startswith(("ref:", "form:"))
            result.append(Segment(self.value(name, article), value=not structural))
            position = match.end()
        if position < len(text):
            result.append(Segment(text[position:]))
        return tuple(result)


SOURCES = {"org": "organisation", "vendor": "company", "engagement": "engagement"}


def assemble(
    catalogue: Catalogue,
    questionnaire: Questionnaire,
    facts: EngagementFacts,
    answers: Mapping[str, Any],
    fields: Mapping[str, str | None],
    *,
    switched_off: Collection[str] = (),
    switched_on: Collection[str] = (),
    special_terms: str = "",
) -> Document:
    """The document for these facts and answers. ``switched_off`` / ``switched_on`` name optional
    articles the staff changed from their default; mandatory articles ignore both."""
    shown = {q.key for q in visible_questions(questionnaire, facts, answers)}
    live = {k: v for k, v in answers.items() if k in shown}

    chosen: list[tuple[str, list[Article]]] = []
    options: list[Option] = []
    for part in catalogue.parts:
        if not holds(part.when, facts, live):
            continue
        kept = []
        for article in part.articles:
            if not holds(article.when, facts, live):
                continue
            included = article.mandatory or (
                article.id in switched_on or (article.default and article.id not in switched_off)
            )
            if not article.mandatory:
                options.append(Option(article, included))
            if included:
                kept.append(article)
        if kept:
            chosen.append((part.title, kept))
    forms = [f for f in catalogue.forms if holds(f.when, facts, live)]

    numbering = [a for _t, arts in chosen for a in arts]
    numbers = {a.id: f"第{n}条" for n, a in enumerate(numbering, 1)}
    form_numbers = {f.id: f"様式第{n}号" for n, f in enumerate(forms, 1)}
    formatted = {
        q.key: text
        for q in questionnaire.questions
        if q.key in live and q.type != "table" and (text := format_answer(q, live[q.key]))
    }
    tables = {
        q.key: format_rows(q, live[q.key])
        for q in questionnaire.questions
        if q.type == "table" and q.key in live
    }
    resolver = _Resolver(questionnaire, shown, fields, formatted, numbers, form_numbers, SOURCES)

    number = 0
    parts = []
    for title, articles in chosen:
        numbered = []
        for article in articles:
            number += 1
            where = f"第{number}条（{article.title}）"
            clauses = []
            for paragraph in article.paragraphs:
                if not holds(paragraph.when, facts, live):
                    continue
                clauses.append(
                    Clause(
                        number=str(len(clauses) + 1).translate(FULL_WIDTH) if clauses else "",
                        segments=resolver.segments(paragraph.text, where),
                        items=tuple(
                            (kanji_number(n), resolver.segments(item, where))
                            for n, item in enumerate(paragraph.items, 1)
                        ),
                    )
                )
            table = None
            if article.table:
                question = questionnaire.question(article.table)
                rows = tables.get(article.table, ())
                if rows:
                    table = Table(
                        tuple(c.label for c in question.columns),
                        tuple(tuple(r[c.key] for c in question.columns) for r in rows),
                    )
            numbered.append(
                Numbered(
                    article.id,
                    number,
                    article.title,
                    article.cites,
                    article.mandatory,
                    tuple(clauses),
                    table,
                )
            )
        parts.append((title, tuple(numbered)))

    terms = [p.strip() for p in special_terms.replace("\r\n", "\n").split("\n\n") if p.strip()]
    if terms:
        number += 1
        clauses = tuple(
            Clause(str(n).translate(FULL_WIDTH) if n > 1 else "", (Segment(text, value=True),))
            for n, text in enumerate(terms, 1)
        )
        special = Numbered(SPECIAL_TERMS_ID, number, SPECIAL_TERMS_TITLE, (), False, clauses)
        title, last = parts[-1] if parts else ("", ())
        parts[-1:] = [(title, (*last, special))]

    return Document(
        title=catalogue.title,
        marking=catalogue.marking,
        catalogue_version=catalogue.version,
        parts=tuple(parts),
        forms=tuple(
            NumberedForm(f.id, form_numbers[f.id], f.title, f.template, f.cites) for f in forms
        ),
        options=tuple(options),
        missing=tuple(resolver.missing.values()),
        fields={k: v for k, v in fields.items() if v},
        answers=formatted,
        tables=tables,
    )
