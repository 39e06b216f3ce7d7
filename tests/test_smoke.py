from portal.permissions import Role
from tests.helpers import soup, text_of


def test_staff_logs_in_with_password_and_totp_and_sees_the_dashboard(browser, make, org):
    user = make.user(org, roles={Role.STAFF})

    response = browser.login(user)

    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    page = browser.get("/")
    assert page.status_code == 200
    assert soup(page).select_one("h1").get_text(strip=True) == "ホーム"
    assert text_of(page, "[data-field=previous-login]") == "今回が初めてのログインです"
    assert text_of(page, "[data-field=failed-attempts]") == "0 回"


def test_healthz_reports_the_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}
