"""The shape of a questionnaire once loaded: immutable, typed, validated (see loader.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

QUESTION_TYPES = (
    "yes_no",
    "single",
    "multiple",
    "text",
    "long_text",
    "number",
    "date",
    "country",
    "url",
    "evidence",
    "table",
)

YES_NO_LABELS = {"yes": "はい", "no": "いいえ", "partly": "一部", "na": "該当なし"}

TRACKS = {
    "9.1": "業務委託（対策基準9.1）",
    "9.2": "外部サービス・機密性2以上（対策基準9.2）",
    "9.3": "外部サービス・約款型（対策基準9.3）",
}
KINDS = {"outsourcing": "業務委託", "external_service": "外部サービス利用"}
SEGMENTS = {
    "mynumber": "マイナンバー利用事務系",
    "lgwan": "LGWAN接続系",
    "internet": "インターネット接続系",
}
PREFILL_SOURCES = {
    "company.name": "name",
    "company.corporate_number": "corporate_number",
    "company.address": "address",
    "company.representative": "representative",
}

DATA_PURPOSES = {
    "primary": "本番",
    "backup": "バックアップ",
    "dr": "災害対策",
    "logs": "ログ",
    "support": "保守・サポートからのアクセス",
}
CERTIFICATION_KINDS = {
    "ismap": "ISMAP",
    "ismap_liu": "ISMAP-LIU",
    "iso27001": "ISO/IEC 27001（JIS Q 27001）",
    "iso27017": "ISO/IEC 27017",
    "iso27018": "ISO/IEC 27018",
    "soc2": "SOC 2",
    "pmark": "プライバシーマーク",
    "csmark": "CSマーク",
    "aspic": "ASPIC 情報開示認定",
    "other": "その他",
}


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    type: str  # text | country | single | yes_no | date | evidence | corporate_id
    required: bool = True
    max_length: int = 200
    choices: tuple[tuple[str, str], ...] = ()


TABLES: dict[str, tuple[Column, ...]] = {
    "subcontractors": (
        Column("name", "名称", "text"),
        Column(
            "identifier",
            "法人番号又は外国の登録番号",
            "corporate_id",
            required=False,
            max_length=40,
        ),
        Column("country", "所在国", "country"),
        Column("role", "担当業務", "text", max_length=300),
        Column(
            "wholly_owned", "完全子会社か", "yes_no", choices=(("yes", "はい"), ("no", "いいえ"))
        ),
    ),
    "data_locations": (
        Column("purpose", "用途", "single", choices=tuple(DATA_PURPOSES.items())),
        Column("country", "国", "country"),
        Column("region", "地域（都道府県・リージョン）", "text", required=False, max_length=100),
    ),
    "certifications": (
        Column("kind", "種類", "single", choices=tuple(CERTIFICATION_KINDS.items())),
        Column("number", "登録・認証番号", "text", required=False, max_length=100),
        Column("body", "認証機関", "text", required=False, max_length=200),
        Column("scope", "範囲", "text", required=False, max_length=500),
        Column("issued", "取得日", "date", required=False),
        Column("expires", "有効期限", "date", required=False),
        Column("document", "証明書", "evidence", required=False),
    ),
}


@dataclass(frozen=True)
class Condition:
    """All given parts must hold. ``answers`` maps a question key to accepted values."""

    tracks: frozenset[str] | None = None
    kinds: frozenset[str] | None = None
    segments: frozenset[str] | None = None
    confidentiality_min: int | None = None
    integrity_min: int | None = None
    availability_min: int | None = None
    personal_data: bool | None = None
    specific_personal_data: bool | None = None
    sensitive_personal_data: bool | None = None
    answers: tuple[tuple[str, frozenset[str]], ...] = ()

    @property
    def depends_on_answers(self) -> bool:
        return bool(self.answers)


@dataclass(frozen=True)
class Choice:
    value: str
    label: str


@dataclass(frozen=True)
class Question:
    key: str
    section_key: str
    type: str
    label: str
    help: str
    cites: tuple[str, ...]
    required: bool = True
    when: Condition | None = None
    prefill: str | None = None
    choices: tuple[Choice, ...] = ()
    min: float | None = None
    max: float | None = None
    integer: bool = False
    unit: str | None = None
    max_length: int | None = None
    min_date: date | None = None
    max_date: date | None = None
    max_files: int = 5
    table: str | None = None
    min_rows: int = 0
    max_rows: int = 50

    @property
    def columns(self) -> tuple[Column, ...]:
        return TABLES[self.table] if self.table else ()

    def choice_label(self, value: str) -> str:
        for choice in self.choices:
            if choice.value == value:
                return choice.label
        return value


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    description: str
    questions: tuple[Question, ...]
    when: Condition | None = None
    cites: tuple[str, ...] = ()


@dataclass(frozen=True)
class Questionnaire:
    key: str
    version: str
    title: str
    description: str
    sections: tuple[Section, ...]
    source: str = ""
    _index: dict[str, Question] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for section in self.sections:
            for question in section.questions:
                self._index[question.key] = question

    @property
    def questions(self) -> list[Question]:
        return [q for s in self.sections for q in s.questions]

    def question(self, key: str) -> Question | None:
        return self._index.get(key)

    def section(self, key: str) -> Section | None:
        return next((s for s in self.sections if s.key == key), None)

    def cited_items(self) -> set[str]:
        return {cite for q in self.questions for cite in q.cites}
