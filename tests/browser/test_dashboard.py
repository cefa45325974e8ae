from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.conftest import PASSWORD, World

pytestmark = pytest.mark.browser


def log_in(page: Page, site: str, username: str) -> None:
    page.goto(f"{site}/")
    expect(page).to_have_url(f"{site}/accounts/login/?next=/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def test_student_logs_in_and_sees_the_dashboard(page: Page, site: str, world: World) -> None:
    log_in(page, site, "alice")
    expect(page).to_have_url(f"{site}/")
    expect(page.get_by_role("heading", name="Hello, Alice")).to_be_visible()
    table = page.get_by_test_id("assignments")
    expect(table.get_by_role("link", name="Hello, kernel module")).to_be_visible()
    expect(table).not_to_contain_text("Tracing system calls")
    expect(table).to_contain_text("Linux Kernel Internals")
    # The stylesheet really arrived through staticfiles.
    background = page.evaluate(
        "getComputedStyle(document.querySelector('.topbar')).backgroundColor"
    )
    assert background == "rgb(17, 24, 39)"
    screenshot(page, "dashboard-student")

    page.get_by_role("link", name="Hello, kernel module").click()
    expect(page.get_by_role("heading", name="Hello, kernel module")).to_be_visible()


def test_wrong_password_keeps_the_user_on_the_login_page(
    page: Page, site: str, world: World
) -> None:
    page.goto(f"{site}/accounts/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("correct username and password")


def test_small_screen_layout(browser: object, site: str, world: World) -> None:
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    log_in(page, site, "alice")
    expect(page.get_by_role("link", name="Hello, kernel module")).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "the dashboard must not scroll sideways on a phone"
    screenshot(page, "dashboard-phone")
    context.close()
