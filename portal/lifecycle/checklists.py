"""The build, operation and exit checklists of a cloud service (対策基準 9.2(5)–(7)) as data:
``questionnaires/checklists/lifecycle.toml`` (format in ``questionnaires/checklists/README.md``).

Checked on load: unknown fields, missing phases, duplicate or malformed item keys, citations
(the question bank's rules, and every item must cite its phase's policy item), the recurrence
interval of the operation phase and the categories an item applies to. Problems name the file
and the item."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from portal.questionnaires.loader import _Checker, _cites
from portal.questionnaires.schema import TRACKS

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CHECKLIST_PATH = PROJECT_ROOT / "questionnaires" / "checklists" / "lifecycle.toml"

KEY = re.compile(r"^[a-z][a-z0-9_]*$")
PHASES = {
    "build": "導入・構築時",
    "operation": "運用・保守時",
    "exit": "利用終了時",
}
PHASE_CITES = {"build": "9.2(5)", "operation": "9.2(6)", "exit": "9.2(7)"}
FILE_FIELDS = {"version", "title", *PHASES}
PHASE_FIELDS = {"title", "description", "interval_months", "item"}
ITEM_FIELDS = {"key", "label", "help", "cites", "categories"}
MAX_INTERVAL_MONTHS = 60


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


def _item(check: _Checker, raw: object, where: str, phase: str) -> Item | None:
    if not isinstance(raw, dict):
        check.fail(where, "表（[[…item]]）で指定してください")
        return None
    key = check.string(raw, "key", where)
    if key and not KEY.match(key):
        check.fail(f"{where}.key", "英小文字・数字・_ で指定してください")
    elif key:
        where = f"{phase}.item[{key}]"
    check.unknown_fields(raw, ITEM_FIELDS, where)
    cites = _cites(check, raw.get("cites"), where, required=True)
    if cites and not any(c.startswith(PHASE_CITES[phase]) for c in cites):
        check.fail(f"{where}.cites", f"{PHASE_CITES[phase]} を含む規定を引用してください")
    categories = raw.get("categories", list(TRACKS))
    if (
        not isinstance(categories, list)
        or not categories
        or not all(isinstance(c, str) and c in TRACKS for c in categories)
    ):
        check.fail(f"{where}.categories", f"次の値のリストで指定してください: {', '.join(TRACKS)}")
        categories = list(TRACKS)
    return Item(
        key=key,
        label=check.string(raw, "label", where),
        help=check.string(raw, "help", where, required=False),
        cites=cites,
        categories=frozenset(categories),
    )


def _phase(check: _Checker, data: dict, key: str) -> Phase | None:
    raw = data.get(key)
    if raw is None:
        check.fail(key, f"{PHASES[key]}のチェックリスト [{key}] がありません")
        return None
    if not isinstance(raw, dict):
        check.fail(key, "表（[…]）で指定してください")
        return None
    check.unknown_fields(raw, PHASE_FIELDS, key)
    interval = raw.get("interval_months")
    if key == "operation":
        if (
            isinstance(interval, bool)
            or not isinstance(interval, int)
            or not 1 <= interval <= MAX_INTERVAL_MONTHS
        ):
            check.fail(
                f"{key}.interval_months",
                f"繰り返しの間隔（月数）を1から{MAX_INTERVAL_MONTHS}の整数で指定してください",
            )
            interval = None
    elif interval is not None:
        check.fail(f"{key}.interval_months", "繰り返しの間隔は運用・保守時（operation）だけです")
        interval = None
    raw_items = raw.get("item")
    if not isinstance(raw_items, list) or not raw_items:
        check.fail(f"{key}.item", "確認項目を1つ以上指定してください")
        raw_items = []
    items: list[Item] = []
    seen: set[str] = set()
    for index, raw_item in enumerate(raw_items, 1):
        item = _item(check, raw_item, f"{key}.item[{index}]", key)
        if item is None:
            continue
        if item.key and item.key in seen:
            check.fail(f"{key}.item[{item.key}]", "確認項目のキーが重複しています")
        seen.add(item.key)
        items.append(item)
    return Phase(
        key=key,
        title=check.string(raw, "title", key, required=False) or PHASES[key],
        description=check.string(raw, "description", key, required=False),
        items=tuple(items),
        interval_months=interval,
    )


def parse(data: dict, source: str) -> Checklist:
    """Build the checklist from parsed TOML; raises ChecklistError listing every problem."""
    check = _Checker(source)
    check.unknown_fields(data, FILE_FIELDS, "file")
    version = data.get("version")
    if not isinstance(version, str) or not version.strip() or len(version) > 20:
        check.fail("version", '20文字以内の文字列で指定してください（例: "2026.11"）')
        version = ""
    title = check.string(data, "title", "file", required=False)
    phases = [_phase(check, data, key) for key in PHASES]
    if check.problems:
        raise ChecklistError(check.problems)
    return Checklist(
        version=version.strip(),
        title=title or "外部サービスの構築・運用・利用終了時の確認",
        source=source,
        phases=tuple(p for p in phases if p is not None),
    )


def load_file(path: Path) -> Checklist:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ChecklistError([f"{path.name}: 読み込めません: {exc}"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ChecklistError([f"{path.name}: TOMLとして読めません: {exc}"]) from exc
    return parse(data, path.name)


def check(path: Path = CHECKLIST_PATH) -> tuple[Checklist | None, list[str]]:
    """The checklist when it loads, else every problem."""
    try:
        return load_file(path), []
    except ChecklistError as exc:
        return None, exc.problems


@cache
def latest(path: Path = CHECKLIST_PATH) -> Checklist:
    return load_file(path)
