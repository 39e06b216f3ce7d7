"""The clause catalogue (contracts/) and the pure assembly of the 特記事項: validation on load,
coverage of 9.1(2)①–⑬, numbering and cross-references, missing values, literal vendor text."""

from __future__ import annotations

import copy
import re
import tomllib
from itertools import product

import pytest

from portal.assessments.answers import validate
from portal.assessments.demo import sample_answer
from portal.clauses import catalogue as catalogues
from portal.clauses.assemble import assemble, format_answer, kanji_number
from portal.questionnaires import loader
from portal.questionnaires.conditions import EngagementFacts, visible_questions

CONTRACT_ITEMS = [f"9.1(2){c}" for c in "①②③④⑤⑥⑦⑧⑨⑩⑪⑫⑬"]
FIELDS = {
    "org.name": "さくら台市",
    "org.self": "本市",
    "org.ciso_title": "副市長",
    "org.network_admin_title": "情報政策課長",
    "vendor.name": "株式会社テスト",
    "vendor.address": "東京都千代田区霞が関1-1",
    "vendor.representative": "代表取締役 試験 太郎",
    "engagement.title": "住民情報入力業務委託",
    "engagement.information": "住民の氏名・住所等",
    "engagement.period": "2026年4月1日から2027年3月31日まで",
}


def facts(track="9.1", **changes) -> EngagementFacts:
    base = {
        "track": track,
        "kind": "outsourcing" if track == "9.1" else "external_service",
        "confidentiality": 2,
        "integrity": 1,
        "availability": 1,
    }
    return EngagementFacts(**(base | changes))


def answered(questionnaire, engagement_facts, changes=None) -> dict:
    """Every visible question answered plausibly, in order (follow-ups appear as they apply)."""
    answers: dict = {}
    done = False
    while not done:
        done = True
        for question in visible_questions(questionnaire, engagement_facts, answers):
            if question.key in answers:
                continue
            value = sample_answer(question)
            if value is not None:
                answers[question.key] = validate(question, value)
                done = False
    return answers | (changes or {})


@pytest.fixture(scope="module")
def catalogue():
    return catalogues.latest()


@pytest.fixture(scope="module")
def questionnaire():
    return loader.latest("assessment")


def build(catalogue, questionnaire, engagement_facts=None, changes=None, **options):
    engagement_facts = engagement_facts or facts()
    answers = answered(questionnaire, engagement_facts, changes)
    return assemble(catalogue, questionnaire, engagement_facts, answers, FIELDS, **options)


# --- the catalogue file ---------------------------------------------------------------------


def test_the_catalogue_loads_with_the_listed_articles_and_forms(catalogue):
    titles = [a.title for a in catalogue.articles]
    for expected in (
        "総則",
        "定義",
        "秘密の保持",
        "再委託",
        "返還",
        "定期報告",
        "事故",
        "公表",
        "契約の解除",
        "損害賠償",
        "関係法令",
        "準拠法",
        "管轄裁判所",
    ):
        assert any(expected in t for t in titles), expected
    assert [f.title for f in catalogue.forms] == [
        "体制届・誓約書",
        "再委託承認申請書",
        "消去証明書",
        "定期報告書",
    ]
    assert catalogue.marking.startswith("機密性")


def test_every_article_and_form_cites_a_policy_item(catalogue):
    cite = re.compile(r"^\d+\.\d+(\(\d+\))?[①-⑳]?(\([ア-ン]\))?$")
    for item in [*catalogue.articles, *catalogue.forms]:
        assert item.cites and all(cite.match(c) for c in item.cites), item.id


@pytest.mark.parametrize(
    "personal,specific,confidentiality,subcontract",
    list(product([False, True], [False, True], [1, 2, 3], ["yes", "no"])),
)
def test_every_contract_item_is_served_in_every_outsourcing_document(
    catalogue, questionnaire, personal, specific, confidentiality, subcontract
):
    """9.1(2)①–⑬ each appear in the generated document of every 業務委託 engagement, by a
    mandatory article (so switching optional ones off never loses an item)."""
    engagement_facts = facts(
        personal_data=personal or specific,
        specific_personal_data=specific,
        confidentiality=confidentiality,
    )
    every_optional_off = {a.id for a in catalogue.articles if not a.mandatory}
    document = build(
        catalogue,
        questionnaire,
        engagement_facts,
        {"contract.subcontract": subcontract},
        switched_off=every_optional_off,
    )
    served = {c for a in document.articles if a.mandatory for c in a.cites}
    assert not [item for item in CONTRACT_ITEMS if item not in served]
    assert document.complete, document.missing


def test_the_external_service_annex_applies_to_track_9_2_only(catalogue, questionnaire):
    outsourcing = build(catalogue, questionnaire)
    cloud = build(catalogue, questionnaire, facts("9.2"))
    assert len(outsourcing.parts) == 1
    annex_title, annex = cloud.parts[1]
    assert "外部サービス" in annex_title
    cited = {c for a in annex for c in a.cites}
    assert {"9.2(2)⑤", "9.2(2)④", "9.2(2)③", "9.2(2)⑥"} <= cited
    assert "9.3" not in catalogue.tracks


def problems_of(mutate) -> list[str]:
    """Load the real catalogue with one change applied; the problems reported."""
    data = tomllib.loads(catalogues.CATALOGUE_DIR.joinpath("clauses.toml").read_text("utf-8"))
    changed = copy.deepcopy(data)
    mutate(changed)
    with pytest.raises(catalogues.CatalogueError) as error:
        catalogues.parse(changed, "broken.toml")
    return error.value.problems


def first_article(data) -> dict:
    return data["part"][0]["article"][0]


@pytest.mark.parametrize(
    "mutate,expected",
    [
        (lambda d: first_article(d).update(paragraphs=["{vendor.secret}"]), "未知の差込み項目"),
        (lambda d: first_article(d).update(paragraphs=["{answer:no.such}"]), "評価票にない設問"),
        (lambda d: first_article(d).update(paragraphs=["{ref:nowhere}"]), "存在しない条項"),
        (lambda d: first_article(d).update(paragraphs=["{form:nowhere}"]), "存在しない様式"),
        (
            lambda d: first_article(d).update(paragraphs=["{answer:contract.subcontractors}"]),
            "table =",
        ),
        (lambda d: first_article(d).update(paragraphs=["閉じない {org.name"]), "波括弧"),
        (lambda d: first_article(d).update(table="contract.subcontract"), "表形式の設問"),
        (lambda d: first_article(d).update(cites=["第9条"]), "規定の書き方"),
        (lambda d: first_article(d).pop("cites"), "根拠となる規定"),
        (lambda d: first_article(d).update(mandatory=True, default=False), "必須の条項には"),
        (lambda d: first_article(d).update(id="Bad-Id"), "識別子"),
        (lambda d: d["part"][0]["article"].append(dict(first_article(d))), "重複"),
        (lambda d: first_article(d).update(when={"tracks": ["9.9"]}), "tracks"),
        (
            lambda d: first_article(d).update(when={"answer": {"contract.work_sites": ["x"]}}),
            "選択式でない",
        ),
        (lambda d: first_article(d).update(colour="red"), "未知の項目"),
        (lambda d: d["form"][0].update(template="forms/none.html"), "がありません"),
        (lambda d: d["form"][0].update(template="../../../etc/passwd"), "がありません"),
        (lambda d: d.update(tracks=["9.4"]), "tracks"),
    ],
)
def test_broken_catalogues_are_refused_naming_file_and_article(mutate, expected):
    problems = problems_of(mutate)
    assert any(expected in p and p.startswith("broken.toml") for p in problems), problems


def test_the_check_command_validates_the_catalogue(app):
    result = app.test_cli_runner().invoke(args=["questionnaires", "check"])
    assert result.exit_code == 0, result.output
    assert "情報セキュリティに関する特記事項" in result.output


# --- assembly ---------------------------------------------------------------------------------


def test_articles_number_themselves_and_references_follow(catalogue, questionnaire):
    full = build(catalogue, questionnaire)
    assert [a.number for a in full.articles] == list(range(1, len(full.articles) + 1))
    optional = next(o.article for o in full.options if o.included)
    fewer = build(catalogue, questionnaire, switched_off={optional.id})
    assert optional.id not in {a.id for a in fewer.articles}
    assert [a.number for a in fewer.articles] == list(range(1, len(fewer.articles) + 1))
    # Every {ref:…} resolves to the number its target has in *this* document.
    numbers = {a.id: a.label for a in fewer.articles}
    for article in catalogue.articles:
        for paragraph in article.paragraphs:
            for text in paragraph.texts:
                for target in re.findall(r"\{ref:([a-z_]+)\}", text):
                    if article.id in numbers and target in numbers:
                        rendered = next(a for a in fewer.articles if a.id == article.id)
                        assert numbers[target] in rendered.plain_text()
    assert not fewer.missing


def test_mandatory_articles_cannot_be_switched_off(catalogue, questionnaire):
    mandatory = {a.id for a in catalogue.articles if a.mandatory}
    document = build(catalogue, questionnaire, switched_off=mandatory)
    assert mandatory & {a.id for a in document.articles} == {
        a.id for a in build(catalogue, questionnaire).articles if a.mandatory
    }


def test_vendor_commitments_fill_the_clauses(catalogue, questionnaire):
    document = build(
        catalogue,
        questionnaire,
        facts("9.2"),
        {
            "contract.emergency_notice_hours": 3,
            "contract.deletion_deadline_days": 14,
            "contract.report_interval": "quarterly",
            "external.sla_availability": 99.95,
            "contract.subcontract": "yes",
            "contract.subcontractors": [
                {
                    "name": "株式会社下請",
                    "identifier": "",
                    "country": "VN",
                    "role": "入力作業",
                    "wholly_owned": "no",
                }
            ],
            "external.data_locations": [
                {"purpose": "primary", "country": "JP", "region": "東京都"},
                {"purpose": "backup", "country": "SG", "region": "シンガポール"},
            ],
        },
    )
    text = "\n".join(a.plain_text() for a in document.articles)
    for expected in (
        "3時間",
        "14日",
        "四半期ごと",
        "99.95%",
        "株式会社下請",
        "ベトナム",
        "入力作業",
        "シンガポール",
        "バックアップ",
        "株式会社テスト",
        "さくら台市",
    ):
        assert expected in text, expected


def test_missing_values_are_listed_with_where_to_fill_them(catalogue, questionnaire):
    fields = FIELDS | {"vendor.representative": None, "engagement.period": ""}
    engagement_facts = facts()
    answers = answered(questionnaire, engagement_facts)
    del answers["contract.emergency_notice_hours"]
    document = assemble(catalogue, questionnaire, engagement_facts, answers, fields)
    assert not document.complete
    missing = {(m.source, m.question_key or m.label) for m in document.missing}
    assert ("answer", "contract.emergency_notice_hours") in missing
    notice = next(
        m for m in document.missing if m.question_key == "contract.emergency_notice_hours"
    )
    assert notice.section_key == "contract" and notice.article.startswith("第")
    uses_period = any(
        "{engagement.period}" in t
        for a in catalogue.articles
        for p in a.paragraphs
        for t in p.texts
    )
    if uses_period:
        assert ("engagement", "契約期間") in missing


def test_special_terms_become_the_last_article(catalogue, questionnaire):
    document = build(catalogue, questionnaire, special_terms="第一の取決め。\n\n第二の取決め。")
    last = document.articles[-1]
    assert last.id == "special_terms" and last.title == "特約事項"
    assert last.number == len(document.articles)
    assert [c.number for c in last.clauses] == ["", "２"]
    assert all(s.value for c in last.clauses for s in c.segments)


HOSTILE = [
    '<img src="file:///etc/passwd"><script>alert(1)</script>',
    "@import url(http://127.0.0.1:9/x.css); body { display: none }",
    "<link rel=attachment href=file:///etc/passwd>",
    "é́ 👩‍💻 髙﨑 \u202eabc\u202c",
    "長" * 10_000,
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_vendor_text_is_kept_apart_as_a_literal_value(catalogue, questionnaire, hostile):
    document = build(catalogue, questionnaire, changes={"contract.work_sites": hostile})
    segments = [
        s
        for a in document.articles
        for c in a.clauses
        for s in (*c.segments, *(x for _n, item in c.items for x in item))
        if hostile in s.text
    ]
    assert segments and all(s.value and s.text == hostile for s in segments)


def test_answers_read_naturally(questionnaire):
    notice = questionnaire.question("contract.emergency_notice_hours")
    interval = questionnaire.question("contract.report_interval")
    audit = questionnaire.question("contract.audit_acceptance")
    assert format_answer(notice, 24) == "24時間"
    assert format_answer(notice, None) is None
    assert format_answer(interval, "monthly") == "毎月"
    assert format_answer(audit, ["onsite"]) == "実地での監査・検査"
    assert format_answer(audit, ["onsite", "remote"]) == (
        "「実地での監査・検査」、「リモート（オンライン会議、映像・写真）による監査」"
    )
    assert [kanji_number(n) for n in (1, 9, 10, 11, 20, 23)] == [
        "一",
        "九",
        "十",
        "十一",
        "二十",
        "二十三",
    ]
