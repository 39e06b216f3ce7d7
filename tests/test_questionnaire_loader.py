"""The question bank format: loading, validation errors naming file and key, conditions."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from portal.questionnaires import loader
from portal.questionnaires.conditions import (
    EngagementFacts,
    applicable_by_engagement,
    visible_questions,
)

DATA = Path(__file__).parent / "data" / "questionnaires"


@pytest.fixture(scope="module")
def sample():
    return loader.load_file(DATA / "sample.toml")


def facts(track="9.1", kind="outsourcing", confidentiality=2, **flags) -> EngagementFacts:
    return EngagementFacts(
        track=track,
        kind=kind,
        confidentiality=confidentiality,
        integrity=1,
        availability=1,
        **flags,
    )


def broken(tmp_path, text: str) -> list[str]:
    path = tmp_path / "broken.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(loader.QuestionnaireError) as caught:
        loader.load_file(path)
    return caught.value.problems


def test_the_sample_loads_with_every_question_type(sample):
    assert (sample.key, sample.version) == ("sample", "1")
    types = {q.type for q in sample.questions}
    assert types == {
        "text",
        "yes_no",
        "table",
        "multiple",
        "number",
        "date",
        "country",
        "url",
        "long_text",
        "single",
        "evidence",
    }
    assert [c.value for c in sample.question("basic.subcontract").choices] == [
        "yes",
        "no",
        "partly",
    ]
    assert sample.question("basic.subcontractors").columns[0].label == "名称"


MINIMAL = """
key = "x"
version = "1"
title = "t"
[[section]]
key = "s"
title = "S"
[[section.question]]
key = "s.q"
type = "text"
label = "L"
help = "H"
cites = ["9.1(2)①"]
"""


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (('type = "text"', 'type = "essay"'), "s.question[s.q].type"),
        (('cites = ["9.1(2)①"]', "cites = []"), "s.question[s.q].cites"),
        (('cites = ["9.1(2)①"]', 'cites = ["section nine"]'), "s.question[s.q].cites"),
        (('help = "H"', ""), "s.question[s.q].help"),
        (('key = "s.q"', 'key = "other.q"'), "other.q"),
        (('label = "L"', 'label = "L"\ncolour = "red"'), "s.question[s.q].colour"),
        (
            ('label = "L"', 'label = "L"\nwhen = { tracks = ["9.9"] }'),
            "s.question[s.q].when.tracks",
        ),
        (
            ('label = "L"', 'label = "L"\nwhen = { answer = { "s.none" = ["yes"] } }'),
            "when.answer.s.none",
        ),
        (('label = "L"', 'label = "L"\nprefill = "company.secret"'), "s.question[s.q].prefill"),
        (('version = "1"', ""), "version"),
    ],
)
def test_a_broken_file_names_the_file_and_the_key_at_fault(tmp_path, change, where):
    old, new = change
    problems = broken(tmp_path, MINIMAL.replace(old, new, 1))
    assert problems, "expected a problem"
    assert all(p.startswith("broken.toml: ") for p in problems)
    assert any(where in p for p in problems), problems


def test_invalid_toml_names_the_file(tmp_path):
    problems = broken(tmp_path, "key = ")
    assert problems[0].startswith("broken.toml: ")


def test_duplicate_question_keys_and_choice_values_are_refused(tmp_path):
    text = MINIMAL + MINIMAL[MINIMAL.index("[[section.question]]") :]
    assert any("同じキー" in p for p in broken(tmp_path, text))


def test_a_condition_on_a_later_question_is_refused(tmp_path):
    data = (
        (DATA / "sample.toml")
        .read_text("utf-8")
        .replace('when = { answer = { "basic.subcontract"', 'when = { answer = { "cloud.region"')
    )
    assert any("これより前にない設問" in p for p in broken(tmp_path, data))


def test_check_collects_every_problem_and_refuses_duplicate_versions(tmp_path):
    (tmp_path / "a.toml").write_text(MINIMAL, encoding="utf-8")
    (tmp_path / "b.toml").write_text(MINIMAL, encoding="utf-8")
    (tmp_path / "c.toml").write_text(
        MINIMAL.replace('type = "text"', 'type = "x"'), encoding="utf-8"
    )
    loaded, problems = loader.check(tmp_path)
    assert len(loaded) == 2
    assert any(p.startswith("b.toml: ") and "重複" in p for p in problems)
    assert any(p.startswith("c.toml: ") for p in problems)


def test_sections_follow_the_track_and_flags(sample):
    keys = lambda f, answers=None: {q.key for q in visible_questions(sample, f, answers or {})}  # noqa: E731
    assert "cloud.region" not in keys(facts("9.1"))
    assert "cloud.region" in keys(facts("9.2", "external_service"))
    assert "cloud.mynumber" not in keys(facts("9.2", "external_service"))
    assert "cloud.mynumber" in keys(facts("9.2", "external_service", specific_personal_data=True))
    assert "terms.change_notice" in keys(facts("9.3", "external_service", confidentiality=1))


def test_a_question_appears_after_the_answer_it_depends_on(sample):
    shown = lambda answers: {q.key for q in visible_questions(sample, facts(), answers)}  # noqa: E731
    assert "basic.subcontractors" not in shown({})
    assert "basic.subcontractors" not in shown({"basic.subcontract": "no"})
    assert "basic.subcontractors" in shown({"basic.subcontract": "partly"})


def test_the_engagement_summary_counts_follow_up_questions(sample):
    summary = {s.key: (n, f) for s, n, f in applicable_by_engagement(sample, facts())}
    assert summary == {"basic": (11, 1)}


def test_the_real_bank_is_valid():
    loaded, problems = loader.check()
    assert problems == []
    assert {q.key for q in loaded} >= {"assessment"}


def test_the_bank_files_parse_as_toml():
    for path in loader.BANK_DIR.rglob("*.toml"):
        tomllib.loads(path.read_text("utf-8"))
