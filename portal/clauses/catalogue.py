"""The clause catalogue as data: ``contracts/*.toml`` loaded into typed, immutable objects.

Every file is checked on load (format in ``contracts/README.md``): unknown fields, duplicate or
malformed ids, bad citations, conditions, placeholders that do not exist, questions that are not
in the questionnaire, cross-references to no article, form templates that are missing. Problems
name the file and the article.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from portal.questionnaires import loader as questionnaires
from portal.questionnaires.loader import _Checker, _cites, _condition, _version_order
from portal.questionnaires.schema import TRACKS, Condition, Questionnaire

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CATALOGUE_DIR = PROJECT_ROOT / "contracts"
TEMPLATE_DIR = CATALOGUE_DIR / "templates"
FORM_TEMPLATE_DIR = TEMPLATE_DIR / "clauses"

ID = re.compile(r"^[a-z][a-z0-9_]*$")
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
# Values taken from the organisation, the vendor company and the engagement (see assemble.py).
FIELDS = {
    "org.name": "甲の名称",
    "org.self": "団体の自称（本市・本村 など）",
    "org.ciso_title": "最高情報セキュリティ責任者の職名",
    "org.network_admin_title": "ネットワーク管理者の職名",
    "vendor.name": "乙の名称",
    "vendor.address": "乙の所在地",
    "vendor.representative": "乙の代表者",
    "engagement.title": "案件名",
    "engagement.information": "取り扱う情報",
    "engagement.period": "契約期間",
}
FILE_FIELDS = {"key", "version", "title", "questionnaire", "tracks", "marking", "part", "form"}
PART_FIELDS = {"key", "title", "when", "article"}
ARTICLE_FIELDS = {"id", "title", "cites", "mandatory", "default", "when", "paragraphs", "table"}
PARAGRAPH_FIELDS = {"text", "items", "when"}
FORM_FIELDS = {"id", "title", "template", "cites", "when"}


class CatalogueError(ValueError):
    """A catalogue file is not valid; every problem names the file and the article at fault."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Paragraph:
    text: str
    items: tuple[str, ...] = ()
    when: Condition | None = None

    @property
    def texts(self) -> tuple[str, ...]:
        return (self.text, *self.items)


@dataclass(frozen=True)
class Article:
    id: str
    title: str
    cites: tuple[str, ...]
    paragraphs: tuple[Paragraph, ...]
    mandatory: bool = True
    default: bool = True
    when: Condition | None = None
    table: str | None = None  # question key of a table question


@dataclass(frozen=True)
class Part:
    key: str
    title: str
    articles: tuple[Article, ...]
    when: Condition | None = None


@dataclass(frozen=True)
class Form:
    id: str
    title: str
    template: str  # relative to contracts/templates/clauses/
    cites: tuple[str, ...]
    when: Condition | None = None


@dataclass(frozen=True)
class Catalogue:
    key: str
    version: str
    title: str
    questionnaire: str
    tracks: frozenset[str]
    marking: str
    parts: tuple[Part, ...]
    forms: tuple[Form, ...]
    source: str = ""

    @property
    def articles(self) -> list[Article]:
        return [a for p in self.parts for a in p.articles]


def placeholders(text: str) -> list[str]:
    return PLACEHOLDER.findall(text)


def _check_text(
    check: _Checker,
    text: str,
    where: str,
    questionnaire: Questionnaire,
    article_ids: set[str],
    form_ids: set[str],
) -> None:
    if text.count("{") != text.count("}"):
        check.fail(where, "波括弧 { } の対応が取れていません")
    for name in placeholders(text):
        kind, _, target = name.partition(":")
        if name in FIELDS:
            continue
        if kind == "answer" and target:
            question = questionnaire.question(target)
            if question is None:
                check.fail(where, f"{{{name}}}: 評価票にない設問です")
            elif question.type in ("table", "evidence"):
                check.fail(where, f"{{{name}}}: 表・ファイルの設問は table = で指定してください")
        elif kind == "ref" and target:
            if target not in article_ids:
                check.fail(where, f"{{{name}}}: 存在しない条項を参照しています")
        elif kind == "form" and target:
            if target not in form_ids:
                check.fail(where, f"{{{name}}}: 存在しない様式を参照しています")
        else:
            check.fail(where, f"{{{name}}}: 未知の差込み項目です（contracts/README.md 参照）")


def _ident(check: _Checker, raw: dict, where: str, seen: set[str]) -> str:
    ident = raw.get("id")
    if not isinstance(ident, str) or not ID.match(ident):
        check.fail(f"{where}.id", "英小文字・数字・_ の識別子で指定してください")
        return ""
    if ident in seen:
        check.fail(f"{where}.id", f"{ident} が重複しています")
    seen.add(ident)
    return ident


def _flag(check: _Checker, raw: dict, name: str, where: str, default: bool) -> bool:
    value = raw.get(name, default)
    if not isinstance(value, bool):
        check.fail(f"{where}.{name}", "true か false で指定してください")
        return default
    return value


def _paragraph(check: _Checker, raw: Any, where: str, questions: dict) -> Paragraph | None:
    if isinstance(raw, str):
        raw = {"text": raw}
    if not isinstance(raw, dict):
        check.fail(where, "文字列か { text = …, items = […] } で指定してください")
        return None
    check.unknown_fields(raw, PARAGRAPH_FIELDS, where)
    text = check.string(raw, "text", where)
    items = raw.get("items", [])
    if not isinstance(items, list) or not all(isinstance(i, str) and i.strip() for i in items):
        check.fail(f"{where}.items", "空でない文字列のリストで指定してください")
        items = []
    when = _condition(check, raw.get("when"), f"{where}.when", questions)
    return Paragraph(text=text, items=tuple(i.strip() for i in items), when=when)


def _article(
    check: _Checker, raw: Any, where: str, questionnaire: Questionnaire, seen: set[str]
) -> Article | None:
    if not isinstance(raw, dict):
        check.fail(where, "表で指定してください")
        return None
    check.unknown_fields(raw, ARTICLE_FIELDS, where)
    ident = _ident(check, raw, where, seen)
    where = f"article[{ident}]" if ident else where
    questions = {q.key: q for q in questionnaire.questions}
    mandatory = _flag(check, raw, "mandatory", where, True)
    if mandatory and "default" in raw:
        check.fail(f"{where}.default", "必須の条項には default を指定できません")
    raw_paragraphs = raw.get("paragraphs")
    if not isinstance(raw_paragraphs, list) or not raw_paragraphs:
        check.fail(f"{where}.paragraphs", "1つ以上の項を指定してください")
        raw_paragraphs = []
    paragraphs = [
        _paragraph(check, p, f"{where}.paragraphs[{n}]", questions)
        for n, p in enumerate(raw_paragraphs, 1)
    ]
    table = raw.get("table")
    if table is not None:
        question = questionnaire.question(table) if isinstance(table, str) else None
        if question is None or question.type != "table":
            check.fail(f"{where}.table", f"表形式の設問の key を指定してください: {table!r}")
            table = None
    return Article(
        id=ident,
        title=check.string(raw, "title", where),
        cites=_cites(check, raw.get("cites"), where, required=True),
        paragraphs=tuple(p for p in paragraphs if p is not None),
        mandatory=mandatory,
        default=_flag(check, raw, "default", where, True),
        when=_condition(check, raw.get("when"), f"{where}.when", questions),
        table=table,
    )


def _form(check: _Checker, raw: Any, where: str, questions: dict, seen: set[str]) -> Form | None:
    if not isinstance(raw, dict):
        check.fail(where, "表で指定してください")
        return None
    check.unknown_fields(raw, FORM_FIELDS, where)
    ident = _ident(check, raw, where, seen)
    where = f"form[{ident}]" if ident else where
    template = check.string(raw, "template", where)
    path = (FORM_TEMPLATE_DIR / template).resolve()
    if template and not (
        path.is_relative_to(FORM_TEMPLATE_DIR) and path.suffix == ".html" and path.is_file()
    ):
        check.fail(f"{where}.template", f"contracts/templates/clauses/ に {template} がありません")
    return Form(
        id=ident,
        title=check.string(raw, "title", where),
        template=template,
        cites=_cites(check, raw.get("cites"), where, required=True),
        when=_condition(check, raw.get("when"), f"{where}.when", questions),
    )


def parse(data: dict, source: str) -> Catalogue:
    check = _Checker(source)
    check.unknown_fields(data, FILE_FIELDS, "file")
    key = check.string(data, "key", "file")
    if key and not ID.match(key):
        check.fail("key", "英小文字・数字・_ の識別子で指定してください")
    questionnaire_key = check.string(data, "questionnaire", "file")
    try:
        questionnaire = questionnaires.latest(questionnaire_key)
    except KeyError:
        check.fail("questionnaire", f"評価票 {questionnaire_key!r} がありません")
        raise CatalogueError(check.problems) from None
    questions = {q.key: q for q in questionnaire.questions}
    tracks = data.get("tracks")
    if not isinstance(tracks, list) or not tracks or not set(tracks) <= set(TRACKS):
        check.fail("tracks", f"次の値のリストで指定してください: {', '.join(TRACKS)}")
        tracks = []

    form_ids: set[str] = set()
    raw_forms = data.get("form", [])
    forms = [
        _form(check, raw, f"form[{n}]", questions, form_ids) for n, raw in enumerate(raw_forms)
    ]
    article_ids: set[str] = set()
    parts: list[Part] = []
    part_keys: set[str] = set()
    raw_parts = data.get("part")
    if not isinstance(raw_parts, list) or not raw_parts:
        check.fail("part", "1つ以上の章を指定してください")
        raw_parts = []
    for n, raw in enumerate(raw_parts):
        where = f"part[{n}]"
        if not isinstance(raw, dict):
            check.fail(where, "表で指定してください")
            continue
        check.unknown_fields(raw, PART_FIELDS, where)
        part_key = check.string(raw, "key", where)
        if part_key in part_keys:
            check.fail(f"{where}.key", f"{part_key} が重複しています")
        part_keys.add(part_key)
        raw_articles = raw.get("article")
        if not isinstance(raw_articles, list) or not raw_articles:
            check.fail(f"{where}.article", "1つ以上の条項を指定してください")
            raw_articles = []
        articles = [
            _article(check, a, f"{where}.article[{m}]", questionnaire, article_ids)
            for m, a in enumerate(raw_articles)
        ]
        parts.append(
            Part(
                key=part_key,
                title=check.string(raw, "title", where),
                articles=tuple(a for a in articles if a is not None),
                when=_condition(check, raw.get("when"), f"{where}.when", questions),
            )
        )
    # Placeholders are checked once every article and form id is known.
    for part in parts:
        for article in part.articles:
            for n, paragraph in enumerate(article.paragraphs, 1):
                for text in paragraph.texts:
                    _check_text(
                        check,
                        text,
                        f"article[{article.id}].paragraphs[{n}]",
                        questionnaire,
                        article_ids,
                        form_ids,
                    )
    if check.problems:
        raise CatalogueError(check.problems)
    return Catalogue(
        key=key,
        version=check.string(data, "version", "file"),
        title=check.string(data, "title", "file"),
        questionnaire=questionnaire_key,
        tracks=frozenset(tracks),
        marking=check.string(data, "marking", "file"),
        parts=tuple(parts),
        forms=tuple(f for f in forms if f is not None),
        source=source,
    )


def load_file(path: Path) -> Catalogue:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError([f"{path.name}: TOMLとして読めません: {exc}"]) from exc
    return parse(data, path.name)


def check(directory: Path = CATALOGUE_DIR) -> tuple[list[Catalogue], list[str]]:
    """Every catalogue that loads, and every problem of those that do not."""
    loaded: list[Catalogue] = []
    problems: list[str] = []
    for path in sorted(directory.rglob("*.toml")):  # archive/ keeps earlier versions
        try:
            loaded.append(load_file(path))
        except CatalogueError as exc:
            problems.extend(exc.problems)
    seen: dict[tuple[str, str], str] = {}
    for catalogue in loaded:
        ident = (catalogue.key, catalogue.version)
        if ident in seen:
            problems.append(f"{catalogue.source}: version: {seen[ident]} と重複しています")
        seen[ident] = catalogue.source
    return loaded, problems


@cache
def all_catalogues(directory: Path = CATALOGUE_DIR) -> dict[tuple[str, str], Catalogue]:
    loaded, problems = check(directory)
    if problems:
        raise CatalogueError(problems)
    return {(c.key, c.version): c for c in loaded}


def latest(key: str = "security_clauses", directory: Path = CATALOGUE_DIR) -> Catalogue:
    versions = [c for (k, _v), c in all_catalogues(directory).items() if k == key]
    if not versions:
        raise KeyError(key)
    return max(versions, key=lambda c: _version_order(c.version))
