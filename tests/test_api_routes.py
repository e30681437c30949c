"""Every /api/ route declares the catalogue API it belongs to, and behaves by it."""

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from keys.api import views as api
from keys.api.demo_data import DEMO_DATA
from keys.models import Api
from tests.api_calls import assert_the_401, call

METHODS = ["get", "head", "options", "post", "put", "patch", "delete"]
SAMPLE_ITEM = "X-001"


def walk(patterns, prefix=""):
    """(route regex, callback) of every URL pattern, includes followed."""
    for pattern in patterns:
        regex = prefix + pattern.pattern.regex.pattern.lstrip("^")
        if isinstance(pattern, URLResolver):
            yield from walk(pattern.url_patterns, regex)
        elif isinstance(pattern, URLPattern):
            yield regex, pattern.callback


def api_routes():
    return [(regex, view) for regex, view in walk(get_resolver().url_patterns)
            if regex.startswith(("api/", r"api\/"))]  # fmt: skip


def sample_paths(regex: str) -> list[str]:
    """Concrete paths for a route regex: with and without the trailing slash."""
    path = re.sub(r"\(\?P<\w+>[^)]*\)", SAMPLE_ITEM, regex)
    path = path.replace("\\", "").rstrip("$").removesuffix("/?")
    assert re.fullmatch(r"[\w/-]+", path), f"cannot make a sample path from {regex}"
    return ["/" + path, "/" + path + "/"]


# Routes a key calls; the others (api = None) are authorised otherwise, e.g. a signature.
ROUTES = [(regex, view) for regex, view in api_routes() if view.api is not None]
CASES = [(path, view.api) for regex, view in ROUTES for path in sample_paths(regex)]
# Routes that read (GET and HEAD); the one that writes (self/rotate) has tests of its own.
READ_CASES = [
    (path, view.api)
    for regex, view in ROUTES
    if view.methods == api.ALLOWED_METHODS
    for path in sample_paths(regex)
]


def test_there_are_api_routes_for_every_demo_api_whoami_and_the_audit_pull():
    declared = {getattr(view, "api", None) for _regex, view in ROUTES}
    assert declared == {*DEMO_DATA, api.ANY_API, "audit"}


def test_the_only_api_route_no_key_calls_is_the_signed_leak_report():
    keyless = [regex for regex, view in api_routes() if view.api is None]
    assert keyless == [r"api/v1/leaks/?$"]


@pytest.mark.django_db
def test_every_api_route_declares_a_catalogue_api_or_any_key():
    catalogue = set(Api.objects.values_list("slug", flat=True))
    undeclared = [
        regex
        for regex, view in ROUTES
        if getattr(view, "api", None) not in catalogue | {api.ANY_API}
    ]
    assert undeclared == []


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("path", "declared"), CASES)
def test_every_api_route_refuses_a_call_without_credentials(client, db, path, declared, method):
    response = call(client, path, method=method)
    assert_the_401(response)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("path", "declared"), [c for c in CASES if c[1] != api.ANY_API])
def test_every_api_route_refuses_a_key_without_its_api(
    client, alice, make_key, path, declared, method
):
    other = next(slug for slug in DEMO_DATA if slug != declared)
    key, password = make_key(alice, apis=(other,))
    response = call(client, path, key.identifier, password, method=method)
    assert response.status_code == 403
    assert response["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize(("path", "declared"), READ_CASES)
def test_every_read_route_serves_a_key_with_its_api_and_only_get_and_head(
    client, alice, carol, make_key, path, declared
):
    slug = next(iter(DEMO_DATA)) if declared == api.ANY_API else declared
    if Api.objects.get(slug=slug).admins_only:  # granted by an administrator, read only
        key, password = make_key(carol, apis=(slug,), read_only=(slug,))
    else:
        key, password = make_key(alice, apis=(slug,))
    found = 404 if SAMPLE_ITEM in path else 200
    assert call(client, path, key.identifier, password).status_code == found
    assert call(client, path, key.identifier, password, method="head").status_code == found
    for method in ("options", "post", "put", "patch", "delete"):
        refused = call(client, path, key.identifier, password, method=method)
        if method != "options" and Api.objects.get(slug=slug).read_only:
            assert refused.status_code == 403  # a read-only grant writes nothing
        else:
            assert refused.status_code == 405
            assert refused["Allow"] == "GET, HEAD"
        assert refused["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize(
    "path",
    ["/api/", "/api/v1/", "/api/v1/nowhere", "/api/v2/risks/", "/api/v1/risks/a/b/", "/api/x%00"],
)
@pytest.mark.parametrize("method", ["get", "post", "options"])
def test_unknown_api_paths_are_a_404_problem_never_html_nor_a_redirect(client, db, path, method):
    response = call(client, path, method=method)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize("slug", DEMO_DATA)
def test_a_catalogue_api_with_data_has_a_list_and_an_item_route(slug):
    assert reverse(f"api:{slug}-list") == f"/api/v1/{slug}"
    assert reverse(f"api:{slug}-item", args=["X-1"]) == f"/api/v1/{slug}/X-1"


def test_the_catalogue_starts_with_the_cerrix_modules_of_the_design_then_audit_history(db):
    from keys.models import Api

    assert list(Api.objects.order_by("position").values_list("slug", "name")) == [
        ("risks", "Risks"),
        ("controls", "Controls"),
        ("events", "Events"),
        ("incidents", "Incidents"),
        ("mois", "Measures of improvement"),
        ("findings", "Findings"),
        ("kris", "Key risk indicators"),
        ("third-parties", "Third party management"),
        ("audit", "Audit history"),  # the pull of the history (docs/design.md §11)
    ]
