"""Chromium for the browser tests (marker `browser`): the browser, log-in, axe-core checks.

A pytest plugin (tests/conftest.py lists it), so every browser test file shares these
fixtures and helpers without importing another test file. Without Chromium the tests that
ask for `browser` are skipped loudly; with CI=true they fail instead. Screenshots go to
test-artifacts/ for people to look at.
"""

import datetime
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import time_machine
from django.contrib.auth.models import Group

from keys import actions
from keys.models import Api, latest_expiry_for, local_date
from tests.servers import in_ci

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """One headless Chromium for the test module."""
    if not Path(CHROMIUM).exists():
        if in_ci():
            pytest.fail("Chromium is missing on CI: .ci/run must install Debian's chromium.")
        pytest.skip("SKIPPED LOUDLY: no Chromium here (apt-get install chromium); not run.")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in the test's thread; the ORM calls the tests
    # make there are safe (the live server runs in its own thread).
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                ],
            )
            yield launched
            launched.close()


@pytest.fixture
def world(django_user_model):
    """Alice (staff) with an active, a revoked and an expired key; Bob; Carol (admin); Dave."""
    people = {}
    for name, role in (
        ("alice", "staff"),
        ("bob", "staff"),
        ("carol", "admin"),
        ("dave", "auditor"),
    ):
        user = django_user_model.objects.create_user(
            username=name, password=f"{name}-portal-pw", first_name=name.title()
        )
        user.groups.add(Group.objects.get(name=role))
        people[name] = user
    apis = list(Api.objects.filter(slug__in=["risks", "kris"]))
    today = local_date()

    def key(name, **extra):
        return actions.create_key(
            owner=people["alice"],
            name=name,
            expires_on=extra.pop("expires_on", latest_expiry_for(today)),
            networks=["127.0.0.1", "2001:db8::/48"],
            apis=apis,
            **extra,
        )[0]

    active = key("Nightly export")
    revoked = key("Old pipeline")
    actions.revoke_key(revoked, actor=people["carol"], reason="Leaked in a ticket")
    three_days_ago = datetime.datetime.now(tz=datetime.UTC) - datetime.timedelta(days=3)
    with time_machine.travel(three_days_ago, tick=False):
        expired = key("Last year", expires_on=local_date() + datetime.timedelta(days=1))
    return {"people": people, "active": active, "revoked": revoked, "expired": expired}


def log_in(page, base: str, name: str) -> None:
    """Log in as one of `world`'s people through the log-in form."""
    page.goto(base + "/login/")
    page.get_by_label("Username").fill(name)
    page.get_by_label("Password").fill(f"{name}-portal-pw")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state("load")


def console_errors(page) -> list[str]:
    """The page's console errors (CSP violations included), as they come."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    return errors


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def axe_violations(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(
        page,
        options={"runOnly": {"type": "tag", "values": AXE_TAGS}, "resultTypes": ["violations"]},
    )
    return [
        f"{violation['id']}: {violation['help']} at "
        + ", ".join(str(node["target"]) for node in violation["nodes"][:3])
        for violation in results.response["violations"]
    ]


def sideways_scroll(page) -> int:
    """How far the page itself scrolls sideways (a table may scroll inside its own region)."""
    return page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )


def check(page, state: str, found: dict, *, axe_at_320: bool = False) -> None:
    """axe-core's violations of the page as it is, at 1280 px (and 320 px if asked), plus
    any sideways scrolling at 320 px, into found[state]; a screenshot at both widths."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.screenshot(path=str(ARTIFACTS / f"a11y-{state}-1280.png"), full_page=True)
    violations = axe_violations(page)
    page.set_viewport_size({"width": 320, "height": 700})
    page.screenshot(path=str(ARTIFACTS / f"a11y-{state}-320.png"), full_page=True)
    if axe_at_320:  # a layout that changes at 320 px (the admin's) can break contrast there
        violations += [f"at 320 px {violation}" for violation in axe_violations(page)]
    if overflow := sideways_scroll(page):
        violations.append(f"at 320 px the page scrolls sideways by {overflow}")
    page.set_viewport_size({"width": 1280, "height": 900})
    found[state] = violations
