"""Every form handles bad input as Add does: the page title starts with "Error:", a summary at
the top lists each error linked to its field (static/portal.js gives it the focus), and the
error also stands next to its field. A field that must be filled says so in its label."""

import re

import pytest


def summary_links(text: str) -> list[str]:
    summary = re.search(r'<div class="error-summary".*?</div>', text, re.S)
    assert summary, "no error summary"
    assert "data-error-summary" in summary.group(0)
    return re.findall(r'<a href="#([^"]+)">', summary.group(0))


@pytest.fixture
def pages(alice, carol, dave, login, make_key):
    """(who, method, path, data, the field whose error the summary links to) per form."""
    key = make_key(alice, name="Nightly export")[0]
    return {
        "revoke, an admin without a reason": (
            carol, "post", f"/keys/{key.identifier}/revoke/", {"reason": " "}, "id_reason"
        ),
        "regenerate, no overlap chosen": (
            alice, "post", f"/keys/{key.identifier}/regenerate/", {}, "id_overlap_0"
        ),
        "renew, a date past a year": (
            alice, "post", f"/keys/{key.identifier}/renew/",
            {"expires_on": "2999-01-01", "overlap_days": "7"}, "id_expires_on",
        ),
        "all keys, a bad filter": (carol, "get", "/all-keys/", {"ips": "ten"}, "id_ips"),
        "audit history, a bad filter": (
            dave, "get", "/audit/", {"date_from": "someday"}, "id_date_from"
        ),
    }  # fmt: skip


@pytest.mark.parametrize(
    "form",
    [
        "revoke, an admin without a reason",
        "regenerate, no overlap chosen",
        "renew, a date past a year",
        "all keys, a bad filter",
        "audit history, a bad filter",
    ],
)
def test_a_form_with_an_error_titles_the_page_error_and_sums_it_up_linked_to_its_field(
    login, pages, form
):
    person, method, path, data, field = pages[form]
    response = getattr(login(person), method)(path, data)
    assert response.status_code in (200, 400)
    title = re.search(r"<title>(.*?)</title>", response.text).group(1)
    assert title.startswith("Error: ")
    assert summary_links(response.text) == [field]
    assert re.search(r'<div class="error-summary"[^>]* role="alert"', response.text)
    assert f'id="{field.removesuffix("_0")}_error"' in response.text  # beside the field too


def test_a_form_without_errors_has_no_summary_and_a_plain_title(alice, login, make_key):
    key = make_key(alice, name="Nightly export")[0]
    for path in (f"/keys/{key.identifier}/revoke/", f"/keys/{key.identifier}/renew/"):
        page = login(alice).get(path).text
        assert "<title>Error" not in page and "error-summary" not in page


def test_a_reason_an_admin_must_give_is_marked_required_and_the_owners_is_not(
    alice, carol, login, make_key
):
    key = make_key(alice, name="Nightly export")[0]
    admins = login(carol).get(f"/keys/{key.identifier}/revoke/").text
    assert (
        '<label for="id_reason">Reason <span class="required">(required)</span></label>' in admins
    )
    assert re.search(r"<textarea[^>]*\brequired\b[^>]*>", admins)
    owners = login(alice).get(f"/keys/{key.identifier}/revoke/").text
    assert '<label for="id_reason">Reason</label>' in owners
    assert "(required)" not in owners
