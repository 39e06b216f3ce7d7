"""The 案件 list as a large 自治体 uses it: the filters (件名, 区分, 担当課) applied by the database,
pages of 50 newest first with the total ("全 N 件中 1–50 件"), page links that keep the filter,
the page number read as the register reads it, a constant number of statements whatever the
page, and the same visibility as the detail page (staff: their departments; organisation-wide
readers: the organisation)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import product
from urllib.parse import parse_qs, urlsplit

import pytest

from portal.engagements import service
from portal.engagements.models import track_for
from portal.permissions import Role
from tests.helpers import Browser, QueryCounter, soup

PAGE = service.PAGE_SIZE
TOTAL = 2 * PAGE + 7  # three pages, the last one short
BASE = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def department(make, org):
    return make.department(org, "税務課")


@pytest.fixture
def other_department(make, org):
    return make.department(org, "福祉課")


@pytest.fixture
def staff(make, org, department):
    return make.user(org, roles={Role.STAFF}, departments=[department], name="税務 一郎")


def signed_in(app, user) -> Browser:
    browser = Browser(app.test_client())
    browser.login(user)
    return browser


@pytest.fixture
def many(make, org, department, staff) -> list[int]:
    """TOTAL engagements of the department, newest first; three at a time share their
    creation time, so the order (and a page boundary) also rests on the id."""
    created = [
        make.engagement(
            org,
            department,
            staff,
            title=f"案件{n:03d}",
            created_at=BASE + timedelta(minutes=n // 3),
        )
        for n in range(TOTAL)
    ]
    return [e.id for e in sorted(created, key=lambda e: (e.created_at, e.id), reverse=True)]


def listed(response) -> list[int]:
    return [int(row["data-engagement-id"]) for row in soup(response).select("[data-engagement-id]")]


def caption(response) -> str:
    node = soup(response).select_one("[data-table=engagements] caption")
    return "".join(node.get_text().split())


def counts(response) -> dict[str, int]:
    nodes = soup(response).select("[data-table=engagements] caption [data-count]")
    return {node["data-count"]: int(node.get_text(strip=True).replace(",", "")) for node in nodes}


def pager(response) -> dict[str, dict[str, list[str]]]:
    """The page links: which (first, prev, next, last) → their query arguments."""
    nav = soup(response).select_one("nav[data-nav=pages]")
    if nav is None:
        return {}
    links = {}
    for link in nav.select("a[data-page]"):
        parts = urlsplit(link["href"])
        assert parts.path == "/engagements/"
        links[link["data-page"]] = parse_qs(parts.query)
    return links


# ---------------------------------------------------------------------------------------------
# Pages
# ---------------------------------------------------------------------------------------------


def test_the_list_comes_in_pages_of_50_newest_first_with_the_total(app, staff, many):
    browser = signed_in(app, staff)

    first = browser.get("/engagements/")
    assert first.status_code == 200
    assert listed(first) == many[:PAGE]
    assert counts(first) == {"total": TOTAL, "first": 1, "last": PAGE}
    assert caption(first) == f"案件の一覧（全{TOTAL}件中1–{PAGE}件）"
    assert pager(first) == {"next": {"page": ["2"]}, "last": {"page": ["3"]}}

    second = browser.get("/engagements/?page=2")
    assert listed(second) == many[PAGE : 2 * PAGE]
    assert counts(second) == {"total": TOTAL, "first": PAGE + 1, "last": 2 * PAGE}
    assert pager(second) == {
        "first": {},
        "prev": {"page": ["1"]},
        "next": {"page": ["3"]},
        "last": {"page": ["3"]},
    }

    third = browser.get("/engagements/?page=3")
    assert listed(third) == many[2 * PAGE :]
    assert counts(third) == {"total": TOTAL, "first": 2 * PAGE + 1, "last": TOTAL}
    assert pager(third) == {"first": {}, "prev": {"page": ["2"]}}

    # Together the pages show every engagement exactly once.
    assert sorted(listed(first) + listed(second) + listed(third)) == sorted(many)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("abc", 1),
        ("", 1),
        ("0", 1),
        ("-2", 1),
        ("1.5", 1),
        ("２", 1),  # a full-width digit is not a page number
        ("9" * 5000, 1),  # never int() of thousands of digits
        ("100001", 1),  # past the register's highest page number, as there
        ("2", 2),
        (" 2 ", 2),
        ("4", 3),  # past the end → the last page
        ("99999", 3),
    ],
)
def test_the_page_number_is_read_as_the_register_reads_it(app, staff, many, raw, expected):
    response = signed_in(app, staff).get("/engagements/", query_string={"page": raw})
    assert response.status_code == 200
    start = (expected - 1) * PAGE
    assert listed(response) == many[start : start + PAGE]
    assert counts(response)["first"] == start + 1


def test_page_links_keep_the_filter(app, make, org, staff, department, many):
    # Engagements of another track, which the filter leaves out.
    for n in range(5):
        make.engagement(
            org,
            department,
            staff,
            title=f"案件0補足{n}",
            kind="external_service",
            confidentiality=1,
        )
    browser = signed_in(app, staff)
    assert counts(browser.get("/engagements/?q=案件0"))["total"] == 105
    response = browser.get("/engagements/?q=案件0&track=9.1")
    assert counts(response) == {"total": 100, "first": 1, "last": PAGE}  # 案件000 … 案件099
    links = pager(response)
    assert links["next"] == {"q": ["案件0"], "track": ["9.1"], "page": ["2"]}
    assert links["last"] == {"q": ["案件0"], "track": ["9.1"], "page": ["2"]}

    second = browser.get("/engagements/?q=案件0&track=9.1&page=2")
    assert counts(second) == {"total": 100, "first": PAGE + 1, "last": 100}
    assert pager(second)["prev"] == {"q": ["案件0"], "track": ["9.1"], "page": ["1"]}
    assert pager(second)["first"] == {"q": ["案件0"], "track": ["9.1"]}
    assert soup(second).select_one("input[name=q]")["value"] == "案件0"
    assert soup(second).select_one("select[name=track] option[selected]")["value"] == "9.1"


def test_an_empty_list_says_so_without_page_links(app, staff, many):
    response = signed_in(app, staff).get("/engagements/?q=存在しない件名&page=3")
    assert response.status_code == 200
    assert listed(response) == []
    assert caption(response) == "案件の一覧（0件）"
    assert "該当する案件はありません。" in soup(response).select_one("tbody").get_text()
    assert pager(response) == {}


def test_every_page_costs_the_same_statements(app, staff, many):
    """The department's name comes with the rows; a short last page, an empty result and
    a full page send the same statements (no query per row)."""
    browser = signed_in(app, staff)
    browser.get("/engagements/")  # caches filled

    def statements(url: str) -> int:
        with QueryCounter(app) as counter:
            assert browser.get(url).status_code == 200
        return counter.count

    full, short, empty = (
        statements("/engagements/"),
        statements("/engagements/?page=3"),
        statements("/engagements/?q=存在しない件名"),
    )
    assert full == short
    assert empty == full - 1  # no rows to fetch when the count is 0


# ---------------------------------------------------------------------------------------------
# Filters in the database
# ---------------------------------------------------------------------------------------------


def test_the_track_condition_in_sql_is_the_track_rule(app, db, make, org, department, staff):
    combinations = list(product(("outsourcing", "external_service"), (1, 2, 3)))
    ids = {
        (kind, level): make.engagement(
            org, department, staff, kind=kind, confidentiality=level, title=f"{kind}{level}"
        ).id
        for kind, level in combinations
    }
    reader = make.user(org, roles={Role.CISO})
    for track in ("9.1", "9.2", "9.3"):
        expected = {ids[c] for c in combinations if track_for(*c) == track}
        page = service.visible_page(db, reader, service.EngagementFilter(track=track))
        assert {e.id for e in page.rows} == expected
        assert page.total == len(expected)
        assert {e.track for e in page.rows} == {track}


def test_organisation_wide_readers_narrow_the_list_to_a_department(
    app, make, org, other_org, department, other_department, staff
):
    ours = make.engagement(org, department, staff, title="税務の案件").id
    colleague = make.user(org, roles={Role.STAFF}, departments=[other_department])
    theirs = make.engagement(org, other_department, colleague, title="福祉の案件").id
    foreign_department = make.department(other_org, "よその課")
    make.engagement(
        other_org, foreign_department, make.user(other_org, roles={Role.STAFF}), title="よその案件"
    )
    browser = signed_in(app, make.user(org, roles={Role.AUDITOR}))

    page = browser.get("/engagements/")
    options = {
        o["value"]: o.get_text(strip=True)
        for o in soup(page).select("select[name=department_id] option")
    }
    assert options == {
        "": "すべて",
        str(department.id): "税務課",
        str(other_department.id): "福祉課",
    }
    assert sorted(listed(page)) == sorted([ours, theirs])

    narrowed = browser.get(f"/engagements/?department_id={other_department.id}")
    assert listed(narrowed) == [theirs]
    assert counts(narrowed) == {"total": 1, "first": 1, "last": 1}
    chosen = soup(narrowed).select_one("select[name=department_id] option[selected]")
    assert chosen["value"] == str(other_department.id)

    # Another organisation's department, or no number at all, narrows nothing.
    for raw in (str(foreign_department.id), "abc", "-1"):
        assert sorted(listed(browser.get(f"/engagements/?department_id={raw}"))) == sorted(
            [ours, theirs]
        )


def test_staff_choose_among_their_own_departments_only(
    app, make, org, department, other_department, staff
):
    third = make.department(org, "環境課")
    both = make.user(org, roles={Role.STAFF}, departments=[department, other_department])
    tax = make.engagement(org, department, both, title="税務の案件").id
    welfare = make.engagement(org, other_department, both, title="福祉の案件").id
    outsider = make.user(org, roles={Role.STAFF}, departments=[third])
    make.engagement(org, third, outsider, title="環境の案件")

    browser = signed_in(app, both)
    page = browser.get("/engagements/")
    options = [o["value"] for o in soup(page).select("select[name=department_id] option")]
    # By name, as the register's 利用課 filter orders them (福祉課 before 税務課).
    assert options == ["", str(other_department.id), str(department.id)]
    assert sorted(listed(page)) == sorted([tax, welfare])
    assert counts(page)["total"] == 2
    assert listed(browser.get(f"/engagements/?department_id={other_department.id}")) == [welfare]
    # A department they do not belong to is no filter, and shows nothing of it.
    assert sorted(listed(browser.get(f"/engagements/?department_id={third.id}"))) == sorted(
        [tax, welfare]
    )

    # With one department there is nothing to choose.
    single = signed_in(app, staff).get("/engagements/")
    assert soup(single).select("select[name=department_id]") == []
    assert listed(single) == [tax]


def test_the_total_counts_only_what_the_reader_may_see(
    app, make, org, department, other_department, staff
):
    colleague = make.user(org, roles={Role.STAFF}, departments=[other_department])
    for n in range(PAGE + 1):
        make.engagement(org, other_department, colleague, title=f"福祉{n}")
    mine = make.engagement(org, department, staff, title="税務の案件").id

    response = signed_in(app, staff).get("/engagements/?page=2")
    assert listed(response) == [mine]
    assert counts(response) == {"total": 1, "first": 1, "last": 1}
    assert pager(response) == {}

    reader = signed_in(app, make.user(org, roles={Role.APPROVER}))
    assert counts(reader.get("/engagements/")) == {"total": PAGE + 2, "first": 1, "last": PAGE}
    assert counts(reader.get("/engagements/?page=2")) == {
        "total": PAGE + 2,
        "first": PAGE + 1,
        "last": PAGE + 2,
    }
