"""Answer validation per question type, form parsing and progress (pure functions)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from portal.assessments import answers
from portal.assessments.answers import AnswerInvalid, validate
from portal.questionnaires import loader
from portal.vendors.corporate_number import with_check_digit

SAMPLE = loader.load_file(Path(__file__).parent / "data" / "questionnaires" / "sample.toml")
Q = SAMPLE.question


def invalid(question_key: str, value) -> str:
    with pytest.raises(AnswerInvalid) as caught:
        validate(Q(question_key), value)
    return str(caught.value)


def test_empty_values_are_no_answer():
    for key in ("basic.name", "basic.channels", "basic.notice_hours", "basic.subcontractors"):
        assert validate(Q(key), "") is None
        assert validate(Q(key), []) is None


def test_yes_no_and_single_accept_only_their_choices():
    assert validate(Q("basic.subcontract"), "partly") == "partly"
    assert "選択肢" in invalid("basic.subcontract", "na")  # not allowed by `allow`
    assert validate(Q("basic.plan"), "reseller") == "reseller"
    assert "選択肢" in invalid("basic.plan", "<script>")


def test_multiple_keeps_choice_order_and_limits():
    assert validate(Q("basic.channels"), ["portal", "phone"]) == ["phone", "portal"]
    assert "2つまで" in invalid("basic.channels", ["phone", "mail", "portal"])
    assert "選択肢" in invalid("basic.channels", ["fax"])


def test_text_lengths_and_control_characters():
    assert validate(Q("basic.name"), "  株式会社テスト  ") == "株式会社テスト"
    assert "200文字以内" in invalid("basic.name", "あ" * 201)
    assert "制御文字" in invalid("basic.name", "a\x07b")
    assert validate(Q("basic.notes"), "一行目\r\n二行目") == "一行目\n二行目"
    assert "50文字以内" in invalid("basic.notes", "x" * 51)


def test_numbers_in_range_full_width_and_integer():
    assert validate(Q("basic.notice_hours"), "２４") == 24
    assert validate(Q("basic.notice_hours"), "1,2") == 12
    assert "以下" in invalid("basic.notice_hours", "721")
    assert "以上" in invalid("basic.notice_hours", "-1")
    assert "整数" in invalid("basic.notice_hours", "1.5")
    assert "半角数字" in invalid("basic.notice_hours", "二十四")
    assert "数値" in invalid("basic.notice_hours", "nan")


def test_dates_in_range():
    assert validate(Q("basic.expires"), "2027/03/31") == "2027-03-31"
    assert "2000-01-01から" in invalid("basic.expires", "1999-12-31")
    assert "形" in invalid("basic.expires", "令和8年")


def test_country_and_url():
    assert validate(Q("basic.country"), "jp") == "JP"
    assert "一覧" in invalid("basic.country", "XX")
    assert validate(Q("basic.terms"), "https://example.jp/terms") == "https://example.jp/terms"
    for bad in ("javascript:alert(1)", "ftp://example.jp", "example.jp", "https://"):
        assert "http" in invalid("basic.terms", bad)


def test_tables_check_every_cell_and_drop_empty_rows():
    rows = [
        {
            "name": "下請株式会社",
            "identifier": with_check_digit("123456789012"),
            "country": "JP",
            "role": "保守",
            "wholly_owned": "no",
        },
        {"name": "", "identifier": "", "country": "", "role": "", "wholly_owned": ""},
    ]
    assert validate(Q("basic.subcontractors"), rows) == [rows[0]]
    bad_number = [{**rows[0], "identifier": "1234567890123"}]
    assert "1行目" in invalid("basic.subcontractors", bad_number)
    foreign = [{**rows[0], "identifier": "HRB 12345", "country": "DE"}]
    assert validate(Q("basic.subcontractors"), foreign)[0]["identifier"] == "HRB 12345"
    assert "名称" in invalid("basic.subcontractors", [{**rows[0], "name": ""}])
    assert "50行以内" in invalid("basic.subcontractors", [rows[0]] * 51)
    assert "形式" in invalid("basic.subcontractors", "not a table")


def test_evidence_questions_take_no_typed_value():
    assert "ファイル" in invalid("basic.certificate", "x")


def test_form_parsing_per_type():
    form = MultiDict(
        [
            ("a:basic.channels", "phone"),
            ("a:basic.channels", "mail"),
            ("a:basic.subcontractors:rows", "2"),
            ("a:basic.subcontractors:0:name", "甲社"),
            ("a:basic.subcontractors:0:country", "JP"),
            ("a:basic.subcontractors:1:name", "乙社"),
            ("a:basic.subcontractors:1:_delete", "1"),
            ("a:basic.name", "名称"),
        ]
    )
    assert answers.from_form(Q("basic.channels"), form) == ["phone", "mail"]
    table = answers.from_form(Q("basic.subcontractors"), form)
    assert [row["name"] for row in table] == ["甲社"]
    assert answers.from_form(Q("basic.name"), form) == "名称"


def test_progress_counts_visible_required_questions():
    questions = [Q("basic.name"), Q("basic.expires"), Q("basic.certificate")]
    state = answers.progress(questions, {"basic.expires": "2027-01-01"}, {})
    assert (state.answered, state.total) == (1, 3)
    assert [q.key for q in state.missing] == ["basic.name"]
    done = answers.progress(questions, {"basic.name": "x"}, {"basic.certificate": 1})
    assert done.complete and done.answered == 2


@given(st.text(max_size=300))
def test_any_text_either_validates_or_gives_a_japanese_message(text):
    for key in (
        "basic.name",
        "basic.notice_hours",
        "basic.expires",
        "basic.country",
        "basic.terms",
        "basic.subcontract",
        "basic.notes",
    ):
        try:
            validate(Q(key), text)
        except AnswerInvalid as exc:
            assert any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in str(exc))
