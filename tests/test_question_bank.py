"""The real question bank: every required policy item is asked about, and it is well formed."""

from __future__ import annotations

from collections import Counter

import pytest

from portal.questionnaires import loader
from portal.questionnaires.conditions import EngagementFacts, visible_questions
from portal.questionnaires.schema import QUESTION_TYPES

CIRCLED = "①②③④⑤⑥⑦⑧⑨⑩⑪⑫⑬"
KATAKANA = "アイウエオカキ"
REQUIRED_ITEMS = (
    [f"9.1(2){c}" for c in CIRCLED]
    + [f"9.2(2)②({k})" for k in KATAKANA]
    + [f"9.2(2){c}" for c in CIRCLED[2:9]]  # ③–⑨
)


@pytest.fixture(scope="module")
def bank():
    return loader.latest("assessment")


def test_the_required_items_are_the_33_of_the_policy():
    assert len(REQUIRED_ITEMS) == 13 + 7 + 7
    assert "9.1(2)⑬" in REQUIRED_ITEMS
    assert "9.2(2)②(キ)" in REQUIRED_ITEMS
    assert "9.2(2)⑨" in REQUIRED_ITEMS


def test_every_contract_item_and_selection_criterion_is_cited_by_a_question(bank):
    cited = bank.cited_items()
    assert [item for item in REQUIRED_ITEMS if item not in cited] == []


def test_the_bank_uses_every_question_type_and_every_table(bank):
    assert {q.type for q in bank.questions} == set(QUESTION_TYPES)
    assert {q.table for q in bank.questions if q.table} == {
        "subcontractors",
        "data_locations",
        "certifications",
    }


def test_every_question_explains_why_it_is_asked_in_japanese(bank):
    def japanese(text: str) -> bool:
        return any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in text)

    assert [q.key for q in bank.questions if not (japanese(q.label) and japanese(q.help))] == []
    # The bank serves every body: no hard-coded way a body calls itself.
    for question in bank.questions:
        for word in ("本市", "本村", "本町", "本組合", "本市議会"):
            assert word not in question.label + question.help, question.key


@pytest.mark.parametrize(
    ("facts", "present", "absent"),
    [
        (
            EngagementFacts("9.1", "outsourcing", 2, 1, 1),
            {"company", "contract"},
            {"external", "terms"},
        ),
        (EngagementFacts("9.2", "external_service", 2, 1, 1), {"external", "lifecycle"}, {"terms"}),
        (EngagementFacts("9.3", "external_service", 1, 1, 1), {"terms"}, {"external", "contract"}),
        (EngagementFacts("9.1", "outsourcing", 3, 2, 2, personal_data=True), {"personal"}, set()),
    ],
)
def test_sections_follow_the_track(bank, facts, present, absent):
    sections = {q.section_key for q in visible_questions(bank, facts, {})}
    assert present <= sections
    assert not (absent & sections)


def test_question_counts_per_track_are_plausible(bank):
    counts = Counter()
    for track, kind, conf in (
        ("9.1", "outsourcing", 2),
        ("9.2", "external_service", 2),
        ("9.3", "external_service", 1),
    ):
        counts[track] = len(visible_questions(bank, EngagementFacts(track, kind, conf, 1, 1), {}))
    assert counts["9.2"] > counts["9.1"] > counts["9.3"] > 10
