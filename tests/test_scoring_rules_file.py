"""Rules files are validated on load: every problem names the file and the rule at fault.
And the shipped rule set loads, cites the policy and only refers to questions that exist."""

from __future__ import annotations

import copy
import tomllib

import pytest

from portal.questionnaires import loader
from portal.questionnaires.loader import POLICY_CITE
from portal.scoring import rules

QUESTIONNAIRE = loader.latest("assessment")
SOURCE = "rules/bad.toml"
ISMAP_KEYS = {
    "registered": "certifications.ismap",
    "audit_period_end": "certifications.ismap_audit_period_end",
    "renewal_pending": "certifications.ismap_renewal_pending",
}


def rule(rule_id: str = "t.rule", **fields) -> dict:
    """A valid "then" rule on a yes_no question unless fields say otherwise."""
    base = {
        "id": rule_id,
        "title": "テスト",
        "question": "contract.publication",
        "cites": ["9.1(2)⑫"],
        "if": {"is": ["no"]},
        "then": "blocker",
        "message": "公表を了承していません。",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def scorer(rule_id: str = "t.points", **fields) -> dict:
    """A valid "points" rule unless fields say otherwise."""
    return rule(
        rule_id, **{"if": None, "then": None, "message": None, "points": {"yes": 5}, **fields}
    )


def data(*rule_list: dict, **top) -> dict:
    result = {
        "questionnaire": "assessment",
        "version": "bad-1",
        "title": "テスト用",
        "ismap": dict(ISMAP_KEYS),
        "rule": list(rule_list) or [rule()],
    }
    result.update(top)
    return {k: v for k, v in result.items() if v is not None}


def problems(raw: dict) -> list[str]:
    with pytest.raises(rules.RulesError) as info:
        rules.parse(raw, SOURCE, QUESTIONNAIRE)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def assert_problem(raw: dict, where: str, text: str) -> None:
    found = problems(raw)
    prefix = f"{SOURCE}: {where}"
    assert any(p.startswith(prefix) and text in p for p in found), found


def test_a_small_valid_file_parses():
    ruleset = rules.parse(data(rule(), scorer()), SOURCE, QUESTIONNAIRE)
    assert [r.id for r in ruleset.rules] == ["t.rule", "t.points"]
    assert ruleset.rule("t.points").max_points == 5
    assert ruleset.source == SOURCE
    assert (ruleset.rating_low, ruleset.rating_medium, ruleset.manual_max) == (80, 60, 5)


# ---------------------------------------------------------------------------------------------
# Questions and tests
# ---------------------------------------------------------------------------------------------


def test_an_unknown_question_is_refused_with_the_rule_named():
    raw = data(rule("t.unknown", question="contract.no_such_question"))
    assert_problem(
        raw,
        "rule[t.unknown].question",
        "評価票 assessment 2026.11 にない設問です: 'contract.no_such_question'",
    )


def test_an_unknown_question_in_when_is_refused():
    raw = data(rule("t.when", when={"answer": {"contract.no_such_question": ["yes"]}}))
    assert_problem(raw, "rule[t.when].when.answer.contract.no_such_question", "設問")


def test_an_unknown_question_in_one_of_several_when_tables_is_refused():
    raw = data(
        rule("t.when", when=[{"personal_data": True}, {"answer": {"company.nope": ["yes"]}}])
    )
    assert_problem(raw, "rule[t.when].when[1].answer.company.nope", "設問")


@pytest.mark.parametrize(
    ("question", "test", "where", "text"),
    [
        ("contract.publication", {"above": 3}, "if.above", "yes_no 型の設問には使えません"),
        ("contract.publication", {"at_most": 3}, "if.at_most", "yes_no 型の設問には使えません"),
        ("contract.availability", {"is": ["yes"]}, "if.is", "number 型の設問には使えません"),
        ("contract.work_scope", {"is_not": ["x"]}, "if.is_not", "long_text 型の設問には使えません"),
        (
            "contract.publication",
            {"any_row": {"country": {"is": ["JP"]}}},
            "if.any_row",
            "未知の項目",
        ),
        ("external.data_locations", {"above": 1}, "if.above", "未知の項目"),
        (
            "external.data_locations",
            {"any_row": {"country": {"expired": True}}},
            "if.any_row.country",
            "日付の列でだけ使えます",
        ),
        (
            "certifications.others",
            {"any_row": {"colour": {"is": ["red"]}}},
            "if.any_row.colour",
            "この表にない列です",
        ),
        (
            "certifications.others",
            {"any_row": {"expires": {"within_days": "soon"}}},
            "if.any_row.expires.within_days",
            "日数を整数で",
        ),
        ("contract.availability", {"above": "99"}, "if.above", "数値で指定してください"),
        ("contract.publication", {"is": "no"}, "if.is", "値の空でないリスト"),
        ("contract.publication", {"ismap": ["gone"]}, "if.ismap", "この設問にない値です: gone"),
        ("contract.publication", {"shout": True}, "if.shout", "未知の項目"),
    ],
)
def test_a_test_that_does_not_fit_the_question_is_refused(question, test, where, text):
    assert_problem(
        data(rule("t.unfit", question=question, **{"if": test})), f"rule[t.unfit].{where}", text
    )


@pytest.mark.parametrize(
    ("question", "test", "where"),
    [
        ("contract.publication", {"is": ["maybe"]}, "if.is"),
        ("contract.pledge", {"is": ["partly"]}, "if.is"),  # allow = ["yes", "no"]
        ("external.governing_law", {"is_not": ["english"]}, "if.is_not"),
        ("personal.main_foreign_country", {"is": ["XX"]}, "if.is"),
        (
            "external.data_locations",
            {"any_row": {"country": {"is_not": ["ZZ"]}}},
            "if.any_row.country.is_not",
        ),
        (
            "external.data_locations",
            {"any_row": {"purpose": {"is": ["archive"]}}},
            "if.any_row.purpose.is",
        ),
    ],
)
def test_a_value_that_is_not_among_the_choices_is_refused(question, test, where):
    assert_problem(
        data(rule("t.value", question=question, **{"if": test})),
        f"rule[t.value].{where}",
        "この設問にない値です",
    )


def test_a_points_map_with_an_unknown_value_is_refused():
    raw = data(scorer("t.points", points={"yes": 5, "sometimes": 2}))
    assert_problem(raw, "rule[t.points].points", "この設問にない値です: sometimes")


@pytest.mark.parametrize(
    ("fields", "where", "text"),
    [
        ({"points": 0, "if": {"is": ["yes"]}}, "rule[t.points].points", "1から100の整数"),
        ({"points": 101, "if": {"is": ["yes"]}}, "rule[t.points].points", "1から100の整数"),
        ({"points": True, "if": {"is": ["yes"]}}, "rule[t.points].points", "1から100の整数"),
        ({"points": {"yes": 0}}, "rule[t.points].points", "1つ以上は正の値"),
        ({"points": {"yes": -1, "partly": 3}}, "rule[t.points].points", "0から100の整数"),
        ({"points": 5}, "rule[t.points].if", "配点する条件（if）が必要です"),
        ({"points": {"yes": 5}, "if": {"answered": True}}, "rule[t.points].if", "同時に使えません"),
        (
            {"question": "contract.availability", "points": {"high": 5}},
            "rule[t.points].points",
            "選択式の設問でだけ使えます",
        ),
        (
            {"question": "personal.main_foreign_country", "points": {"JP": 5}},
            "rule[t.points].points",
            "選択式の設問でだけ使えます",
        ),
        ({"question": None}, "rule[t.points].question", "設問（question）が必要です"),
    ],
)
def test_bad_points_are_refused(fields, where, text):
    assert_problem(data(scorer("t.points", **fields)), where, text)


def test_a_rule_without_a_question_may_only_test_the_ismap_status_or_other_answers():
    assert_problem(
        data(rule("t.noq", question=None, **{"if": {"is": ["yes"]}})),
        "rule[t.noq].if",
        "ismap と answer だけを条件にできます",
    )
    ruleset = rules.parse(
        data(rule("t.noq", question=None, **{"if": {"ismap": ["expired"]}, "then": "finding"})),
        SOURCE,
        QUESTIONNAIRE,
    )
    assert ruleset.rule("t.noq").test.ismap == frozenset({"expired"})


# ---------------------------------------------------------------------------------------------
# Outcomes, ids, citations
# ---------------------------------------------------------------------------------------------


def test_then_and_points_together_are_refused():
    raw = data(rule("t.both", points={"yes": 5}))
    assert_problem(raw, "rule[t.both]:", "then（結果）と points（配点）のどちらか一方だけ")


def test_neither_then_nor_points_is_refused():
    raw = data(rule("t.neither", then=None))
    assert_problem(raw, "rule[t.neither]:", "どちらか一方だけ")


@pytest.mark.parametrize("outcome", ["reject", "points", "Blocker", ""])
def test_an_unknown_outcome_is_refused(outcome):
    assert_problem(
        data(rule("t.outcome", then=outcome)),
        "rule[t.outcome].then",
        "finding, condition, review, blocker",
    )


def test_an_outcome_without_a_message_is_refused():
    assert_problem(data(rule("t.silent", message=None)), "rule[t.silent].message", "必須")


def test_duplicate_ids_are_refused():
    raw = data(rule("t.same"), scorer("t.same"))
    assert_problem(raw, "rule[t.same].id", "同じIDの規則がすでにあります")


@pytest.mark.parametrize("rule_id", ["nodot", "Upper.case", "t.with-dash", "t..double"])
def test_a_badly_formed_id_is_refused(rule_id):
    assert_problem(data(rule(rule_id)), f"rule[{rule_id}].id", "「分類.名前」の形")


def test_a_rule_without_an_id_is_named_by_its_position():
    raw = data(rule("t.first"), rule(None, title="二つ目"))
    assert_problem(raw, "rule[1].id", "必須")


@pytest.mark.parametrize(
    ("cites", "text"),
    [
        (["第9条の2"], "規定の書き方が正しくありません"),
        (["9.2(2)②(エ) "], "規定の書き方が正しくありません"),
        (["9.2.2"], "規定の書き方が正しくありません"),
        ([7], "規定の書き方が正しくありません"),
        ([], "文字列のリスト"),
        ("9.1(2)⑫", "文字列のリスト"),
        (None, "根拠となる規定"),
    ],
)
def test_a_citation_in_the_wrong_form_is_refused(cites, text):
    assert_problem(data(rule("t.cite", cites=cites)), "rule[t.cite].cites", text)


def test_citations_of_the_policy_and_of_laws_are_accepted():
    raw = data(
        rule("t.cite", cites=["9.2(2)②(エ)", "9.1(2)⑫", "個人情報保護法66条", "番号法第12条"])
    )
    assert rules.parse(raw, SOURCE, QUESTIONNAIRE).rule("t.cite").cites[2] == "個人情報保護法66条"


@pytest.mark.parametrize(
    ("where", "raw"),
    [
        ("(file).colour", data(colour="blue")),
        ("rule[t.rule].severity", data(rule(severity="high"))),
        ("rating.high", data(rating={"low": 80, "medium": 60, "high": 40})),
        ("manual.min_points", data(manual={"max_points": 5, "min_points": 1})),
        ("ismap.valid_months", data(ismap={**ISMAP_KEYS, "valid_months": 16})),
    ],
)
def test_unknown_fields_are_refused(where, raw):
    assert_problem(raw, where, "未知の項目です")


# ---------------------------------------------------------------------------------------------
# Contradictions
# ---------------------------------------------------------------------------------------------


def test_the_same_trigger_with_different_outcomes_is_refused():
    raw = data(rule("t.blocker"), rule("t.finding", then="finding"))
    assert_problem(
        raw, "rule[t.finding]:", "rule[t.blocker] と同じ条件で異なる結果（不可の要因 と 指摘事項）"
    )


def test_the_same_trigger_with_the_same_outcome_is_allowed():
    raw = data(rule("t.one"), rule("t.two", message="別の文面"))
    assert len(rules.parse(raw, SOURCE, QUESTIONNAIRE).rules) == 2


def test_the_same_test_under_different_conditions_is_no_contradiction():
    raw = data(
        rule("t.strict", when={"personal_data": True}),
        rule("t.mild", then="finding", when={"personal_data": False}),
    )
    assert len(rules.parse(raw, SOURCE, QUESTIONNAIRE).rules) == 2


def test_full_points_for_the_answer_a_blocker_fires_on_is_refused():
    raw = data(scorer("t.points", points={"no": 5, "yes": 3}), rule("t.blocker"))
    assert_problem(
        raw, "rule[t.blocker]:", "rule[t.points] が満点とする回答を不可の要因としています"
    )


def test_partial_points_for_a_blocked_answer_are_no_contradiction():
    raw = data(scorer("t.points", points={"yes": 5, "no": 1}), rule("t.blocker"))
    assert len(rules.parse(raw, SOURCE, QUESTIONNAIRE).rules) == 2


def hours(rule_id: str, test: dict, **fields) -> dict:
    return rule(
        rule_id,
        question="contract.emergency_notice_hours",
        cites=["9.1(2)⑩"],
        **{"if": test},
        **fields,
    )


def hour_points(test: dict) -> dict:
    return scorer(
        "t.points",
        question="contract.emergency_notice_hours",
        cites=["9.1(2)⑩"],
        points=10,
        **{"if": test},
    )


@pytest.mark.parametrize(
    ("scored", "blocked"),
    [
        ({"at_most": 24}, {"above": 12}),  # 12 < h ≤ 24 both
        ({"at_most": 24}, {"at_least": 24}),  # 24 both
        ({"below": 48}, {"above": 24}),
        ({"at_least": 1}, {"below": 100}),
        ({"at_least": 0, "at_most": 24}, {"above": 20, "below": 30}),
    ],
)
def test_overlapping_numeric_ranges_are_refused(scored, blocked):
    raw = data(hour_points(scored), hours("t.blocker", blocked))
    assert_problem(
        raw, "rule[t.blocker]:", "rule[t.points] が満点とする回答を不可の要因としています"
    )


@pytest.mark.parametrize(
    ("scored", "blocked"),
    [
        ({"at_most": 24}, {"above": 24}),  # as shipped
        ({"below": 24}, {"at_least": 24}),
        ({"at_most": 12}, {"above": 24}),
        ({"at_least": 99.5}, {"below": 99.5}),
    ],
)
def test_adjacent_numeric_ranges_are_allowed(scored, blocked):
    raw = data(hour_points(scored), hours("t.blocker", blocked))
    assert len(rules.parse(raw, SOURCE, QUESTIONNAIRE).rules) == 2


def test_overlapping_ranges_for_different_engagements_are_allowed():
    raw = data(
        {**hour_points({"at_most": 24}), "when": {"tracks": ["9.1"]}},
        hours("t.blocker", {"above": 12}, when={"tracks": ["9.2"]}),
    )
    assert len(rules.parse(raw, SOURCE, QUESTIONNAIRE).rules) == 2


# ---------------------------------------------------------------------------------------------
# [rating], [manual], [ismap], the file
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rating",
    [
        {"low": 60, "medium": 60},
        {"low": 50, "medium": 70},
        {"low": 101, "medium": 60},
    ],
)
def test_a_rating_with_medium_not_below_low_is_refused(rating):
    assert_problem(data(rating=rating), "rating:", "medium < low ≦ 100")


@pytest.mark.parametrize("rating", [{"low": 0, "medium": 60}, {"low": "80", "medium": 60}])
def test_a_rating_that_is_not_a_positive_integer_is_refused(rating):
    assert_problem(data(rating=rating), "rating.low", "1以上の整数")


@pytest.mark.parametrize(
    ("name", "key", "qtype"),
    [
        ("registered", "certifications.ismap_renewal_pending", "single"),
        ("registered", "certifications.no_such_question", "single"),
        ("audit_period_end", "certifications.ismap_registered_on_text", "date"),
        ("audit_period_end", "certifications.ismap_number", "date"),
        ("renewal_pending", "certifications.ismap", "yes_no"),
    ],
)
def test_ismap_keys_must_point_at_questions_of_the_right_type(name, key, qtype):
    raw = data(ismap={**ISMAP_KEYS, name: key})
    assert_problem(raw, f"ismap.{name}", f"{qtype} 型の設問のキーを指定してください")


def test_the_ismap_table_is_required():
    found = problems(data(ismap=None))
    assert any(p.startswith(f"{SOURCE}: ismap:") for p in found), found


def test_the_ismap_warning_must_be_a_positive_number_of_days():
    assert_problem(data(ismap={**ISMAP_KEYS, "warn_days": 0}), "ismap.warn_days", "1以上の整数")


@pytest.mark.parametrize(
    ("top", "where", "text"),
    [
        ({"questionnaire": None}, "(file).questionnaire", "必須"),
        ({"version": None}, "(file).version", "必須"),
        ({"rule": []}, "rule:", "規則を1つ以上"),
        ({"rule": ["not a table"]}, "rule[0]:", "表で指定してください"),
    ],
)
def test_the_file_needs_its_parts(top, where, text):
    raw = data(**top)
    if "rule" in top:
        raw["rule"] = top["rule"]
    assert_problem(raw, where, text)


def test_an_unknown_questionnaire_is_refused():
    with pytest.raises(rules.RulesError) as info:
        rules.parse(data(questionnaire="no_such_questionnaire"), SOURCE)
    assert info.value.problems == [
        f"{SOURCE}: questionnaire: 評価票 'no_such_questionnaire' がありません"
    ]


def test_every_problem_is_reported_at_once():
    raw = data(
        rule("t.a", question="company.nope"),
        rule("t.b", then="reject"),
        rule("t.b"),
        rating={"low": 50, "medium": 70},
    )
    found = problems(raw)
    for where in ("rule[t.a].question", "rule[t.b].then", "rule[t.b].id", "rating:"):
        assert any(p.startswith(f"{SOURCE}: {where}") for p in found), (where, found)


def test_an_invalid_manual_maximum_is_refused():
    assert_problem(data(manual={"max_points": 0}), "manual.max_points", "1以上の整数")


@pytest.mark.parametrize("test", [{"missing": "yes"}, {"answered": False}])
def test_a_flag_that_is_not_true_is_refused(test):
    found = problems(data(rule("t.flag", **{"if": test})))
    assert any("rule[t.flag].if" in p for p in found), found


# ---------------------------------------------------------------------------------------------
# Files and directories
# ---------------------------------------------------------------------------------------------

SMALL_FILE = """
questionnaire = "assessment"
version = "{version}"

[ismap]
registered = "certifications.ismap"
audit_period_end = "certifications.ismap_audit_period_end"
renewal_pending = "certifications.ismap_renewal_pending"

[[rule]]
id = "incident.publication.refused"
title = "事故の公表を了承しない"
question = "contract.publication"
cites = ["9.1(2)⑫"]
if = {{ is = ["no"] }}
then = "blocker"
message = "公表を了承していません。"
"""


def test_a_file_that_is_not_toml_is_refused(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("questionnaire = \n", encoding="utf-8")
    with pytest.raises(rules.RulesError) as info:
        rules.load_file(path, QUESTIONNAIRE)
    assert info.value.problems[0].startswith("rules/broken.toml: TOMLとして読めません")


def test_check_reads_archive_and_reports_duplicate_versions(tmp_path):
    (tmp_path / "archive").mkdir()
    (tmp_path / "assessment.toml").write_text(SMALL_FILE.format(version="2"), encoding="utf-8")
    (tmp_path / "archive" / "assessment-1.toml").write_text(
        SMALL_FILE.format(version="1"), encoding="utf-8"
    )
    loaded, found = rules.check(tmp_path)
    assert found == []
    assert sorted(r.version for r in loaded) == ["1", "2"]
    assert rules.latest("assessment", tmp_path).version == "2"
    assert rules.get("assessment", "1", tmp_path).source == "rules/assessment-1.toml"

    (tmp_path / "archive" / "copy.toml").write_text(
        SMALL_FILE.format(version="2"), encoding="utf-8"
    )
    _loaded, found = rules.check(tmp_path)
    assert len(found) == 1
    assert "version:" in found[0] and "重複しています" in found[0]


@pytest.mark.parametrize(
    ("older", "newer"), [("2026.11-9", "2026.11-10"), ("2026.11-1", "2026.12")]
)
def test_the_newest_version_is_the_latest(tmp_path, older, newer):
    for version in (older, newer):
        (tmp_path / f"{version}.toml").write_text(SMALL_FILE.format(version=version), "utf-8")
    assert rules.latest("assessment", tmp_path).version == newer


def test_check_names_the_broken_file(tmp_path):
    text = SMALL_FILE.format(version="3").replace("contract.publication", "contract.nope")
    (tmp_path / "assessment.toml").write_text(text, encoding="utf-8")
    loaded, found = rules.check(tmp_path)
    assert loaded == []
    assert found and found[0].startswith(
        "rules/assessment.toml: rule[incident.publication.refused].question"
    )


# ---------------------------------------------------------------------------------------------
# The shipped rule set
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> rules.RuleSet:
    return rules.latest("assessment")


def test_the_shipped_rules_load_without_problems(shipped):
    loaded, found = rules.check()
    assert found == []
    assert ("assessment", shipped.version) in {(r.questionnaire, r.version) for r in loaded}
    with (rules.RULES_DIR / "assessment.toml").open("rb") as handle:
        raw = tomllib.load(handle)
    assert shipped.version == raw["version"]
    assert shipped.source == "rules/assessment.toml"
    assert len(shipped.rules) == len(raw["rule"])
    # parsing is repeatable and does not mutate its input
    before = copy.deepcopy(raw)
    assert rules.parse(raw, "rules/assessment.toml") == shipped
    assert raw == before


def test_the_shipped_rules_are_for_the_latest_questionnaire(shipped):
    assert shipped.questionnaire == QUESTIONNAIRE.key
    missing = [r.id for r in shipped.rules if r.question and not QUESTIONNAIRE.question(r.question)]
    assert missing == []
    for r in shipped.rules:
        for condition in r.when:
            for key, _values in condition.answers:
                assert QUESTIONNAIRE.question(key) is not None, (r.id, key)


def test_every_shipped_rule_cites_a_policy_item(shipped):
    assert [r.id for r in shipped.rules if not any(POLICY_CITE.match(c) for c in r.cites)] == []


def test_every_shipped_rule_shares_a_citation_with_its_question(shipped):
    unrelated = [
        r.id
        for r in shipped.rules
        if r.question and not set(r.cites) & set(QUESTIONNAIRE.question(r.question).cites)
    ]
    assert unrelated == []


def test_every_shipped_outcome_explains_itself(shipped):
    assert [r.id for r in shipped.rules if not r.title] == []
    assert [r.id for r in shipped.rules if r.outcome != "points" and not r.message] == []
    assert {r.outcome for r in shipped.rules} == set(rules.OUTCOMES)


def test_the_shipped_settings(shipped):
    assert (shipped.rating_low, shipped.rating_medium, shipped.manual_max) == (80, 60, 5)
    assert shipped.ismap == rules.IsmapKeys(**ISMAP_KEYS, warn_days=120)
    assert len({r.id for r in shipped.rules}) == len(shipped.rules)
