"""Checklists as data, checked on load — one loader for every checklist file:

- ``questionnaires/checklists/lifecycle.toml``: the build, operation and exit checks of a cloud
  service (対策基準 9.2(5)–(7)), recorded by its 外部サービス管理者;
- ``questionnaires/checklists/exit.toml``: the exit checklist of a 業務委託 contract (9.1(2)⑧⑨),
  recorded by the responsible department when the contract ends.

What a file may hold is its ``Layout`` (phases, the policy item every item of a phase must cite,
the name of the item's text, whether items recur or apply to some register categories only).
The format is in ``questionnaires/checklists/README.md``. Checked on load: unknown fields,
missing phases, duplicate, malformed or reserved item keys, citations (the question bank's
rules, and every item must cite its phase's policy item), the recurrence interval and the
categories an item applies to. Problems name the file and the item."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from portal.questionnaires.loader import _Checker, _cites
from portal.questionnaires.schema import TRACKS

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CHECKLIST_DIR = PROJECT_ROOT / "questionnaires" / "checklists"
CHECKLIST_PATH = CHECKLIST_DIR / "lifecycle.toml"
CONTRACT_EXIT_PATH = CHECKLIST_DIR / "exit.toml"

KEY = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_INTERVAL_MONTHS = 60
PHASE_FIELDS = {"title", "description", "interval_months", "item"}


@dataclass(frozen=True, eq=False)  # compared (and cached) by identity
class Layout:
    """What one kind of checklist file holds."""

    title: str  # the default title of the file
    phases: dict[str, str]  # key → name, in order; every phase is required
    phase_cites: dict[str, str]  # every item of the phase cites something under this item
    text_field: str = "label"  # the item's wording, as the file names it
    recurring: tuple[str, ...] = ()  # phases whose items recur (``interval_months``)
    categories: bool = False  # items may be limited to some register categories (9.1–9.3)
    reserved_keys: frozenset[str] = frozenset()  # item keys that would clash with a URL

    @property
    def file_fields(self) -> set[str]:
        return {"version", "title", *self.phases}

    @property
    def item_fields(self) -> set[str]:
        found = {"key", self.text_field, "help", "cites", "requires_file"}
        return found | {"categories"} if self.categories else found


LIFECYCLE = Layout(
    title="外部サービスの構築・運用・利用終了時の確認",
    phases={"build": "導入・構築時", "operation": "運用・保守時", "exit": "利用終了時"},
    phase_cites={"build": "9.2(5)", "operation": "9.2(6)", "exit": "9.2(7)"},
    recurring=("operation",),
    categories=True,
)
CONTRACT_EXIT = Layout(
    title="業務委託の契約終了時の確認",
    phases={"exit": "契約終了時"},
    phase_cites={"exit": "9.1(2)"},
    text_field="title",
    reserved_keys=frozenset({"close", "override"}),
)
# Every checklist file, with its layout: what ``flask --app wsgi questionnaires check`` checks.
FILES: tuple[tuple[Path, Layout], ...] = (
    (CHECKLIST_PATH, LIFECYCLE),
    (CONTRACT_EXIT_PATH, CONTRACT_EXIT),
)

# The lifecycle checklist's phases (its views route by them).
PHASES = LIFECYCLE.phases
PHASE_CITES = LIFECYCLE.phase_cites


class ChecklistError(ValueError):
    """The checklist file is not valid; every problem names the file and the item at fault."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Item:
    key: str
    label: str
    help: str
    cites: tuple[str, ...]
    categories: frozenset[str]
    requires_file: bool = False  # the record needs an uploaded file (the 消去証明書)

    @property
    def title(self) -> str:
        return self.label

    def applies_to(self, category: str) -> bool:
        return category in self.categories


@dataclass(frozen=True)
class Phase:
    key: str
    title: str
    description: str
    items: tuple[Item, ...]
    interval_months: int | None = None  # operation checks recur

    def items_for(self, category: str) -> tuple[Item, ...]:
        return tuple(item for item in self.items if item.applies_to(category))

    def item(self, key: str) -> Item | None:
        return next((item for item in self.items if item.key == key), None)


@dataclass(frozen=True)
class Checklist:
    version: str
    title: str
    source: str
    phases: tuple[Phase, ...]

    def phase(self, key: str) -> Phase | None:
        return next((phase for phase in self.phases if phase.key == key), None)


def _item(check: _Checker, raw: object, where: str, phase: str, layout: Layout) -> Item | None:
    if not isinstance(raw, dict):
        check.fail(where, "表（[[…item]]）で指定してください")
        return None
    key = check.string(raw, "key", where)
    if key and not KEY.match(key):
        check.fail(f"{where}.key", "英小文字・数字・_ で指定してください")
    elif key:
        where = f"{phase}.item[{key}]"
        if key in layout.reserved_keys:
            check.fail(
                f"{where}.key", f"このキーは使えません: {', '.join(sorted(layout.reserved_keys))}"
            )
    check.unknown_fields(raw, layout.item_fields, where)
    cites = _cites(check, raw.get("cites"), where, required=True)
    required = layout.phase_cites[phase]
    if cites and not any(c.startswith(required) for c in cites):
        check.fail(f"{where}.cites", f"{required} を含む規定を引用してください")
    categories = raw.get("categories", list(TRACKS)) if layout.categories else list(TRACKS)
    if (
        not isinstance(categories, list)
        or not categories
        or not all(isinstance(c, str) and c in TRACKS for c in categories)
    ):
        check.fail(f"{where}.categories", f"次の値のリストで指定してください: {', '.join(TRACKS)}")
        categories = list(TRACKS)
    requires_file = raw.get("requires_file", False)
    if not isinstance(requires_file, bool):
        check.fail(f"{where}.requires_file", "true 又は false で指定してください")
        requires_file = False
    return Item(
        key=key,
        label=check.string(raw, layout.text_field, where),
        help=check.string(raw, "help", where, required=False),
        cites=cites,
        categories=frozenset(categories),
        requires_file=requires_file,
    )


def _interval(check: _Checker, raw: dict, key: str, layout: Layout) -> int | None:
    interval = raw.get("interval_months")
    if key in layout.recurring:
        if (
            isinstance(interval, bool)
            or not isinstance(interval, int)
            or not 1 <= interval <= MAX_INTERVAL_MONTHS
        ):
            check.fail(
                f"{key}.interval_months",
                f"繰り返しの間隔（月数）を1から{MAX_INTERVAL_MONTHS}の整数で指定してください",
            )
            return None
        return interval
    if interval is not None:
        recurring = "、".join(f"{layout.phases[p]}（{p}）" for p in layout.recurring)
        check.fail(
            f"{key}.interval_months",
            f"繰り返しの間隔は{recurring}だけです"
            if recurring
            else "繰り返しの間隔は指定できません",
        )
    return None


def _phase(check: _Checker, data: dict, key: str, layout: Layout) -> Phase | None:
    raw = data.get(key)
    name = layout.phases[key]
    if raw is None:
        check.fail(key, f"{name}のチェックリスト [{key}] がありません")
        return None
    if not isinstance(raw, dict):
        check.fail(key, "表（[…]）で指定してください")
        return None
    check.unknown_fields(raw, PHASE_FIELDS, key)
    interval = _interval(check, raw, key, layout)
    raw_items = raw.get("item")
    if not isinstance(raw_items, list) or not raw_items:
        check.fail(f"{key}.item", "確認項目を1つ以上指定してください")
        raw_items = []
    items: list[Item] = []
    seen: set[str] = set()
    for index, raw_item in enumerate(raw_items, 1):
        item = _item(check, raw_item, f"{key}.item[{index}]", key, layout)
        if item is None:
            continue
        if item.key and item.key in seen:
            check.fail(f"{key}.item[{item.key}]", "確認項目のキーが重複しています")
        seen.add(item.key)
        items.append(item)
    return Phase(
        key=key,
        title=check.string(raw, "title", key, required=False) or name,
        description=check.string(raw, "description", key, required=False),
        items=tuple(items),
        interval_months=interval,
    )


def parse(data: dict, source: str, layout: Layout = LIFECYCLE) -> Checklist:
    """Build the checklist from parsed TOML; raises ChecklistError listing every problem."""
    check = _Checker(source)
    check.unknown_fields(data, layout.file_fields, "file")
    version = data.get("version")
    if not isinstance(version, str) or not version.strip() or len(version) > 20:
        check.fail("version", '20文字以内の文字列で指定してください（例: "2026.11"）')
        version = ""
    title = check.string(data, "title", "file", required=False)
    phases = [_phase(check, data, key, layout) for key in layout.phases]
    if check.problems:
        raise ChecklistError(check.problems)
    return Checklist(
        version=version.strip(),
        title=title or layout.title,
        source=source,
        phases=tuple(p for p in phases if p is not None),
    )


def load_file(path: Path, layout: Layout = LIFECYCLE) -> Checklist:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ChecklistError([f"{path.name}: 読み込めません: {exc}"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ChecklistError([f"{path.name}: TOMLとして読めません: {exc}"]) from exc
    return parse(data, path.name, layout)


def check(
    path: Path = CHECKLIST_PATH, layout: Layout = LIFECYCLE
) -> tuple[Checklist | None, list[str]]:
    """The checklist when it loads, else every problem."""
    try:
        return load_file(path, layout), []
    except ChecklistError as exc:
        return None, exc.problems


def check_all() -> list[tuple[Checklist | None, list[str]]]:
    """Every checklist file of ``FILES``: the checklist or its problems."""
    return [check(path, layout) for path, layout in FILES]


@cache
def latest(path: Path = CHECKLIST_PATH, layout: Layout = LIFECYCLE) -> Checklist:
    return load_file(path, layout)


def contract_exit() -> Checklist:
    """The exit checklist of a 業務委託 contract (9.1(2)⑨)."""
    return latest(CONTRACT_EXIT_PATH, CONTRACT_EXIT)
