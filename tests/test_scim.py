"""SCIM 2.0 provisioning over HTTP, with the payloads Microsoft Entra ID and Okta send.

Payload shapes from the providers' own documentation: Entra ID's "use SCIM to provision
users" reference and its "known issues with SCIM 2.0 compliance" page (capitalised ops,
"False" as a string, emails[type eq "work"].value), and Okta's SCIM 2.0 reference (PATCH
with no path and {"active": false}, PUT of the whole user, a password it may push).
"""

import json

import hypothesis
import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from hypothesis import HealthCheck
from hypothesis import strategies as st

from keys.models import AuditEvent
from portal.env import optional_secret
from portal.models import ScimIdentity
from tests.api_calls import call

TOKEN = "test-only-scim-token-0123456789abcdefghij"
USERS = "/scim/v2/Users"
SCIM_JSON = "application/scim+json"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
WHOAMI = "/api/v1/whoami"

ENTRA_CREATE = {
    "schemas": [
        "urn:ietf:params:scim:schemas:core:2.0:User",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
    ],
    "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
    "userName": "erin@contoso.example",
    "active": True,
    "emails": [{"primary": True, "type": "work", "value": "erin@contoso.example"}],
    "meta": {"resourceType": "User"},
    "name": {"formatted": "Erin Example", "familyName": "Example", "givenName": "Erin"},
    "roles": [],
}
OKTA_CREATE = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
    "userName": "frank@okta.example",
    "name": {"givenName": "Frank", "familyName": "User"},
    "emails": [{"primary": True, "value": "frank@okta.example", "type": "work"}],
    "displayName": "Frank User",
    "locale": "en-US",
    "externalId": "00ujl29u0le5T6Aj10h7",
    "groups": [],
    "password": "1mz050nq-okta-pushed",
    "active": True,
}
# Deactivation as each provider sends it: Entra ID by default, Entra ID with its
# aadOptscim062020 compliance flag, and Okta.
DEACTIVATIONS = {
    "entra": {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "Replace", "path": "active", "value": "False"}],
    },
    "entra-compliant": {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "replace", "path": "active", "value": False}],
    },
    "okta": {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]},
}


@pytest.fixture
def scim(db, settings):
    """The identity provider's client: SCIM on, its token in every request."""
    settings.SCIM_TOKEN = TOKEN
    # As a provider calls: no cookie, no CSRF token (the checks are on, as in production).
    return Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")


def send(client, method: str, path: str, body=None, **extra):
    data = body if isinstance(body, bytes | str) else json.dumps(body) if body else ""
    return getattr(client, method)(path, data=data, content_type=SCIM_JSON, **extra)


def scim_error(response, status: int, scim_type: str | None = None) -> dict:
    """The RFC 7644 §3.12 error every refusal is."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == SCIM_JSON
    doc = json.loads(response.content)
    assert doc["schemas"] == [ERROR] and doc["status"] == str(status) and doc["detail"]
    assert doc.get("scimType") == scim_type
    return doc


def created(scim, payload) -> dict:
    response = send(scim, "post", USERS, payload)
    assert response.status_code == 201, response.content
    return json.loads(response.content)


def find(scim, user_name: str) -> dict:
    """What a provider does before its first change: look the user up by userName."""
    response = scim.get(USERS, {"filter": f'userName eq "{user_name}"'})
    assert response.status_code == 200
    (found,) = json.loads(response.content)["Resources"]
    return found


def find_by_id(scim, user) -> str:
    """The user's SCIM id, whatever their user name has become."""
    if not ScimIdentity.objects.filter(user=user).exists():
        find(scim, user.username)
    return str(ScimIdentity.objects.get(user=user).scim_id)


def scim_events(user, action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(owner=user, action=action).order_by("seq"))


# --- the door ---------------------------------------------------------------------------------


def test_scim_is_off_and_404_without_a_configured_token(db, settings):
    settings.SCIM_TOKEN = ""
    client = Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert client.get(USERS).status_code == 404
    assert send(client, "post", USERS, ENTRA_CREATE).status_code == 404
    assert not get_user_model().objects.filter(username="erin@contoso.example").exists()


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token", f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, "Bearer "],
)
def test_a_missing_or_wrong_token_is_401_and_changes_nothing(scim, authorization, caplog):
    extra = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
    response = send(Client(), "post", USERS, ENTRA_CREATE, **extra)
    scim_error(response, 401)
    assert response["WWW-Authenticate"] == 'Bearer realm="SCIM"'
    assert not get_user_model().objects.filter(username="erin@contoso.example").exists()
    assert TOKEN not in response.text and TOKEN not in caplog.text


def test_a_flood_of_wrong_tokens_gets_429_even_with_the_right_one(scim, settings):
    settings.KEYS_THROTTLE_MAX_FAILURES_PER_IP = 3
    guesser = Client(HTTP_AUTHORIZATION="Bearer guess", REMOTE_ADDR="203.0.113.9")
    for _ in range(3):
        scim_error(guesser.get(USERS), 401)
    refused = guesser.get(USERS)
    scim_error(refused, 429)
    assert 0 < int(refused["Retry-After"]) <= settings.KEYS_THROTTLE_WINDOW_SECONDS
    # Locked before the token is compared: the right one from there waits too ...
    scim_error(scim.get(USERS, REMOTE_ADDR="203.0.113.9"), 429)
    # ... while the provider's own network is served.
    assert scim.get(USERS, REMOTE_ADDR="198.51.100.7").status_code == 200


def test_a_scim_flood_does_not_lock_the_networks_api_keys(scim, settings, alice, make_key):
    settings.KEYS_THROTTLE_MAX_FAILURES_PER_IP = 2
    key, password = make_key(alice)
    guesser = Client(HTTP_AUTHORIZATION="Bearer guess")
    for _ in range(3):
        guesser.get(USERS)
    scim_error(guesser.get(USERS), 429)
    assert call(Client(), WHOAMI, key.identifier, password).status_code == 200


def test_the_token_is_read_from_a_file_or_the_environment_and_must_be_long(monkeypatch, tmp_path):
    monkeypatch.delenv("SCIM_TOKEN", raising=False)
    monkeypatch.delenv("SCIM_TOKEN_FILE", raising=False)
    assert optional_secret("SCIM_TOKEN", min_length=32) == ""
    path = tmp_path / "scim-token"
    path.write_text(TOKEN + "\n")
    monkeypatch.setenv("SCIM_TOKEN_FILE", str(path))
    assert optional_secret("SCIM_TOKEN", min_length=32) == TOKEN
    monkeypatch.setenv("SCIM_TOKEN", TOKEN)
    with pytest.raises(ImproperlyConfigured, match="not both"):
        optional_secret("SCIM_TOKEN", min_length=32)
    monkeypatch.delenv("SCIM_TOKEN_FILE")
    monkeypatch.setenv("SCIM_TOKEN", "short-token")
    with pytest.raises(ImproperlyConfigured, match="at least 32") as refused:
        optional_secret("SCIM_TOKEN", min_length=32)
    assert "short-token" not in str(refused.value)


# --- create, find, read ----------------------------------------------------------------------


def test_entra_creates_a_staff_user_who_can_then_be_found_by_user_name(scim):
    response = send(scim, "post", USERS, ENTRA_CREATE)
    assert response.status_code == 201 and response["Content-Type"] == SCIM_JSON
    doc = json.loads(response.content)
    assert (
        response["Location"] == f"http://testserver{USERS}/{doc['id']}" == doc["meta"]["location"]
    )
    assert doc["userName"] == "erin@contoso.example" and doc["active"] is True
    assert doc["externalId"] == "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"
    assert doc["name"]["givenName"] == "Erin" and doc["name"]["familyName"] == "Example"
    assert doc["emails"] == [{"value": "erin@contoso.example", "type": "work", "primary": True}]

    erin = get_user_model().objects.get(username="erin@contoso.example")
    assert (erin.first_name, erin.last_name, erin.email) == ("Erin", "Example", doc["userName"])
    assert erin.is_active and not erin.has_usable_password()
    assert [g.name for g in erin.groups.all()] == ["staff"]
    assert not (erin.is_staff or erin.is_superuser)

    assert find(scim, "erin@contoso.example") == doc
    assert find(scim, "ERIN@contoso.example")["id"] == doc["id"]  # userName ignores case
    assert json.loads(scim.get(f"{USERS}/{doc['id']}").content) == doc
    nobody = json.loads(scim.get(USERS, {"filter": 'userName eq "nobody"'}).content)
    assert nobody["totalResults"] == 0 and nobody["Resources"] == []


def test_creating_is_in_the_signed_history_as_scim(scim):
    doc = created(scim, ENTRA_CREATE)
    erin = get_user_model().objects.get(username=doc["userName"])
    (event,) = scim_events(erin, "user_created")
    assert event.actor is None and event.actor_label == "SCIM"
    assert event.details["via"] == "scim" and event.details["email"] == "erin@contoso.example"
    (roles,) = scim_events(erin, "roles_changed")
    assert roles.actor_label == "SCIM" and roles.details["added"] == ["staff"]


def test_okta_creates_a_user_and_the_password_it_pushes_is_not_kept(scim):
    doc = created(scim, OKTA_CREATE)
    assert "password" not in doc and OKTA_CREATE["password"] not in json.dumps(doc)
    frank = get_user_model().objects.get(username="frank@okta.example")
    assert not frank.has_usable_password() and frank.first_name == "Frank"
    assert not frank.check_password(OKTA_CREATE["password"])
    history = json.dumps([e.details for e in AuditEvent.objects.filter(owner=frank)])
    assert OKTA_CREATE["password"] not in history
    # Okta's import: paged lists with startIndex and count.
    listed = scim.get(
        USERS, {"filter": 'userName eq "frank@okta.example"', "startIndex": 1, "count": 100}
    )
    assert json.loads(listed.content)["Resources"][0]["externalId"] == "00ujl29u0le5T6Aj10h7"


def test_scim_cannot_grant_admin_or_any_role(scim):
    payload = dict(
        ENTRA_CREATE, roles=[{"value": "admin", "primary": True}], groups=[{"value": "admin"}]
    )
    doc = created(scim, payload)
    erin = get_user_model().objects.get(username=doc["userName"])
    patch = {
        "schemas": [PATCH_OP],
        "Operations": [
            {"op": "add", "path": "roles", "value": [{"value": "admin"}]},
            {"op": "replace", "value": {"roles": [{"value": "auditor"}]}},
        ],
    }
    assert send(scim, "patch", f"{USERS}/{doc['id']}", patch).status_code == 200
    groups_patch = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "add", "path": "groups", "value": [{"value": "admin"}]}],
    }
    scim_error(send(scim, "patch", f"{USERS}/{doc['id']}", groups_patch), 400, "mutability")
    assert [g.name for g in erin.groups.all()] == ["staff"]
    erin.refresh_from_db()
    assert not (erin.is_staff or erin.is_superuser)


def test_listing_pages_with_start_index_and_count(scim, alice, bob, carol, dave):
    first = json.loads(scim.get(USERS, {"startIndex": 1, "count": 2}).content)
    second = json.loads(scim.get(USERS, {"startIndex": 3, "count": 2}).content)
    assert first["totalResults"] == second["totalResults"] == 4
    assert (first["startIndex"], first["itemsPerPage"]) == (1, 2)
    names = [r["userName"] for r in first["Resources"] + second["Resources"]]
    assert names == ["alice", "bob", "carol", "dave"]
    # Ids are stable: the second look names everyone the same.
    again = json.loads(scim.get(USERS).content)["Resources"]
    assert [r["id"] for r in again] == [r["id"] for r in first["Resources"] + second["Resources"]]
    for start in (9, 2**63 + 1):  # the second beyond any database integer
        beyond = json.loads(scim.get(USERS, {"startIndex": start}).content)
        assert beyond["Resources"] == [] and beyond["totalResults"] == 4


def test_lists_filter_by_external_id_and_email(scim):
    doc = created(scim, ENTRA_CREATE)
    for text in (
        'externalId eq "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"',
        'emails[type eq "work"].value eq "erin@contoso.example"',
        'emails.value eq "ERIN@contoso.example"',
    ):
        found = json.loads(scim.get(USERS, {"filter": text}).content)
        assert [r["id"] for r in found["Resources"]] == [doc["id"]], text


# --- deactivation ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", DEACTIVATIONS)
def test_patch_active_false_revokes_keys_ends_sessions_and_is_in_the_history(
    scim, shape, alice, make_key
):
    key, password = make_key(alice)
    assert call(Client(), WHOAMI, key.identifier, password).status_code == 200
    alice_browser = Client()
    alice_browser.force_login(alice)
    assert alice_browser.get("/keys/").status_code == 200

    found = find(scim, "alice")
    response = send(scim, "patch", f"{USERS}/{found['id']}", DEACTIVATIONS[shape])
    assert response.status_code == 200 and json.loads(response.content)["active"] is False

    assert call(Client(), WHOAMI, key.identifier, password).status_code == 401
    assert alice_browser.get("/keys/").status_code == 302  # signed out
    assert not any(
        str(s.get_decoded().get("_auth_user_id")) == str(alice.pk) for s in Session.objects.all()
    )
    key.refresh_from_db()
    assert key.is_revoked and "SCIM" in key.revoke_reason
    revoked, deactivated = scim_events(alice, "owner_deactivated")
    assert revoked.key == key and revoked.actor_label == "SCIM"
    assert deactivated.actor_label == "SCIM" and deactivated.details["via"] == "scim"
    assert deactivated.details["keys_revoked"] == 1
    (changed,) = scim_events(alice, "user_changed")
    assert changed.details["is_active"] == {"before": True, "after": False}
    assert changed.details["via"] == "scim" and changed.actor_label == "SCIM"


def test_reactivating_sets_active_again_and_the_keys_stay_revoked(scim, alice, make_key):
    key, password = make_key(alice)
    found = find(scim, "alice")
    send(scim, "patch", f"{USERS}/{found['id']}", DEACTIVATIONS["entra"])
    again = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "Replace", "path": "active", "value": "True"}],
    }
    response = send(scim, "patch", f"{USERS}/{found['id']}", again)
    assert json.loads(response.content)["active"] is True
    alice.refresh_from_db()
    assert alice.is_active
    assert call(Client(), WHOAMI, key.identifier, password).status_code == 401
    last = scim_events(alice, "user_changed")[-1]
    assert last.details["is_active"] == {"before": False, "after": True}


def test_deactivating_twice_records_it_once(scim, alice):
    found = find(scim, "alice")
    for _ in range(2):
        assert (
            send(scim, "patch", f"{USERS}/{found['id']}", DEACTIVATIONS["okta"]).status_code == 200
        )
    assert len(scim_events(alice, "owner_deactivated")) == 1


def test_delete_deactivates_and_the_user_is_then_gone_from_scim(scim, alice, make_key):
    key, password = make_key(alice)
    found = find(scim, "alice")
    response = scim.delete(f"{USERS}/{found['id']}")
    assert response.status_code == 204 and response.content == b""
    alice.refresh_from_db()
    assert not alice.is_active  # deactivated, never deleted: the history refers to her
    assert call(Client(), WHOAMI, key.identifier, password).status_code == 401
    scim_error(scim.get(f"{USERS}/{found['id']}"), 404)
    scim_error(scim.delete(f"{USERS}/{found['id']}"), 404)
    listed = json.loads(scim.get(USERS, {"filter": 'userName eq "alice"'}).content)
    assert listed["totalResults"] == 0
    events = scim_events(alice, "owner_deactivated")
    assert events[-1].details["scim"] == "DELETE" and events[-1].actor_label == "SCIM"


def test_creating_a_deleted_user_again_brings_them_back_with_a_new_id(scim, alice, make_key):
    key, password = make_key(alice)
    found = find(scim, "alice")
    scim.delete(f"{USERS}/{found['id']}")
    doc = created(scim, dict(ENTRA_CREATE, userName="alice"))
    assert doc["id"] != found["id"] and doc["active"] is True
    alice.refresh_from_db()
    assert alice.is_active and alice.first_name == "Erin"
    assert call(Client(), WHOAMI, key.identifier, password).status_code == 401


# --- updates ---------------------------------------------------------------------------------


def test_entra_patch_of_several_attributes_is_recorded_field_by_field(scim):
    doc = created(scim, ENTRA_CREATE)
    patch = {
        "schemas": [PATCH_OP],
        "Operations": [
            {"op": "Replace", "path": "displayName", "value": "Pvlo"},
            {
                "op": "Replace",
                "path": 'emails[type eq "work"].value',
                "value": "e2@contoso.example",
            },
            {"op": "Replace", "path": "name.givenName", "value": "Gtfd"},
            {"op": "Replace", "path": "name.familyName", "value": "Pkqf"},
            {"op": "Replace", "path": "externalId", "value": "Eqpj"},
            {
                "op": "Replace",
                "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
                "value": "Eqpj",
            },
        ],
    }
    response = send(scim, "patch", f"{USERS}/{doc['id']}", patch)
    assert response.status_code == 200, response.content
    after = json.loads(response.content)
    assert after["name"]["givenName"] == "Gtfd" and after["externalId"] == "Eqpj"
    assert after["emails"][0]["value"] == "e2@contoso.example"

    erin = get_user_model().objects.get(username="erin@contoso.example")
    fields, external = scim_events(erin, "user_changed")
    assert fields.actor_label == "SCIM" and fields.details["via"] == "scim"
    assert fields.details["first_name"] == {"before": "Erin", "after": "Gtfd"}
    assert fields.details["last_name"] == {"before": "Example", "after": "Pkqf"}
    assert fields.details["email"] == {
        "before": "erin@contoso.example",
        "after": "e2@contoso.example",
    }
    assert external.details["scim_external_id"]["after"] == "Eqpj"


def test_entra_compliant_patch_with_a_value_object_and_user_name_change(scim):
    doc = created(scim, ENTRA_CREATE)
    patch = {
        "schemas": [PATCH_OP],
        "Operations": [
            {
                "op": "replace",
                "value": {
                    "displayName": "Bjfe",
                    "name.givenName": "Kkom",
                    "name.familyName": "Unua",
                },
            },
            {"op": "Replace", "path": "userName", "value": "erin.new@contoso.example"},
            {"op": "remove", "path": "externalId"},
        ],
    }
    after = json.loads(send(scim, "patch", f"{USERS}/{doc['id']}", patch).content)
    assert after["userName"] == "erin.new@contoso.example" and "externalId" not in after
    assert after["name"]["givenName"] == "Kkom" and after["id"] == doc["id"]
    assert get_user_model().objects.filter(username="erin.new@contoso.example").exists()


def test_okta_put_replaces_the_user(scim):
    doc = created(scim, OKTA_CREATE)
    # Okta sends the whole user back, id and password included; what it leaves out is cleared.
    replacement = dict(
        OKTA_CREATE,
        id=doc["id"],
        name={"givenName": "Francis"},
        emails=[{"primary": True, "value": "francis@okta.example", "type": "work"}],
    )
    response = send(scim, "put", f"{USERS}/{doc['id']}", replacement)
    assert response.status_code == 200
    after = json.loads(response.content)
    assert after["name"]["givenName"] == "Francis" and after["name"]["familyName"] == ""
    assert after["emails"][0]["value"] == "francis@okta.example"
    frank = get_user_model().objects.get(username="frank@okta.example")
    assert (frank.first_name, frank.last_name) == ("Francis", "")
    changed = scim_events(frank, "user_changed")[-1]
    assert changed.details["last_name"] == {"before": "User", "after": ""}


def test_a_put_that_leaves_out_active_reactivates_no_one(scim, alice):
    found = find(scim, "alice")
    send(scim, "patch", f"{USERS}/{found['id']}", DEACTIVATIONS["okta"])
    without_active = {k: v for k, v in found.items() if k != "active"}
    response = send(scim, "put", f"{USERS}/{found['id']}", without_active)
    assert json.loads(response.content)["active"] is False
    alice.refresh_from_db()
    assert not alice.is_active


def test_okta_put_with_active_false_deactivates(scim, alice, make_key):
    key, password = make_key(alice)
    found = find(scim, "alice")
    response = send(scim, "put", f"{USERS}/{found['id']}", dict(found, active=False))
    assert json.loads(response.content)["active"] is False
    assert call(Client(), WHOAMI, key.identifier, password).status_code == 401
    assert len(scim_events(alice, "owner_deactivated")) == 2  # the key, the owner


# --- refusals: always a SCIM error, never a 500 ----------------------------------------------


def test_a_taken_user_name_is_409_uniqueness(scim, alice):
    scim_error(send(scim, "post", USERS, dict(ENTRA_CREATE, userName="alice")), 409, "uniqueness")
    scim_error(send(scim, "post", USERS, dict(ENTRA_CREATE, userName="ALICE")), 409, "uniqueness")
    doc = created(scim, ENTRA_CREATE)
    rename = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "Replace", "path": "userName", "value": "Alice"}],
    }
    scim_error(send(scim, "patch", f"{USERS}/{doc['id']}", rename), 409, "uniqueness")
    assert get_user_model().objects.filter(username__iexact="alice").count() == 1


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"userName": "x",', b"\xff\xfe", b"[1, 2]", b'"text"', b"", b"[" * 5000],
)
def test_a_body_that_is_not_a_json_object_is_400_invalid_syntax(scim, body):
    scim_error(send(scim, "post", USERS, body), 400, "invalidSyntax")


def test_a_body_over_the_upload_limit_is_a_scim_413(scim, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    big = dict(ENTRA_CREATE, displayName="x" * 2000)
    scim_error(send(scim, "post", USERS, big), 413)
    assert not get_user_model().objects.exists()


def test_a_malformed_patch_is_400_and_changes_nothing(scim, alice):
    found = find(scim, "alice")
    scim_error(send(scim, "patch", f"{USERS}/{found['id']}", b"{oops"), 400, "invalidSyntax")
    alice.refresh_from_db()
    assert alice.is_active


TOO_LONG = "a" * 151
BAD_CREATES = {
    "no userName": ({k: v for k, v in ENTRA_CREATE.items() if k != "userName"}, "invalidValue"),
    "userName too long": (dict(ENTRA_CREATE, userName=TOO_LONG), "invalidValue"),
    "userName with a space": (dict(ENTRA_CREATE, userName="erin example"), "invalidValue"),
    # Refused before any lookup: PostgreSQL cannot even compare a string holding a NUL.
    "userName with a NUL": (dict(ENTRA_CREATE, userName="er\x00in"), "invalidValue"),
    "userName not a string": (dict(ENTRA_CREATE, userName=42), "invalidValue"),
    "givenName too long": (dict(ENTRA_CREATE, name={"givenName": TOO_LONG}), "invalidValue"),
    "givenName with a NUL": (dict(ENTRA_CREATE, name={"givenName": "E\x00rin"}), "invalidValue"),
    "name not an object": (dict(ENTRA_CREATE, name="Erin"), "invalidValue"),
    "externalId too long": (dict(ENTRA_CREATE, externalId="x" * 256), "invalidValue"),
    "e-mail not an address": (dict(ENTRA_CREATE, emails=[{"value": "nope"}]), "invalidValue"),
    "emails not a list": (dict(ENTRA_CREATE, emails="erin@contoso.example"), "invalidValue"),
    "active neither": (dict(ENTRA_CREATE, active="maybe"), "invalidValue"),
}


@pytest.mark.parametrize("case", BAD_CREATES)
def test_a_bad_create_is_400_naming_the_attribute(scim, case):
    body, scim_type = BAD_CREATES[case]
    scim_error(send(scim, "post", USERS, body), 400, scim_type)
    assert get_user_model().objects.count() == 0


BAD_PATCHES = {
    "unknown attribute": ([{"op": "replace", "path": "shoeSize", "value": "44"}], "invalidPath"),
    "unknown name part": ([{"op": "replace", "path": "name.nick", "value": "x"}], "invalidPath"),
    "path syntax": ([{"op": "replace", "path": "name..x[", "value": "x"}], "invalidPath"),
    "unknown op": ([{"op": "Merge", "path": "active", "value": False}], "invalidSyntax"),
    "remove without path": ([{"op": "remove"}], "noTarget"),
    "remove userName": ([{"op": "remove", "path": "userName"}], "mutability"),
    "change id": ([{"op": "replace", "path": "id", "value": "x"}], "mutability"),
    "no value object": ([{"op": "replace", "value": "x"}], "invalidValue"),
    "operations not a list": ({"op": "replace"}, "invalidSyntax"),
    "empty operations": ([], "invalidSyntax"),
    "operation not an object": (["replace"], "invalidSyntax"),
    "active neither": ([{"op": "replace", "path": "active", "value": "Nope"}], "invalidValue"),
    "userName with a NUL": (
        [{"op": "replace", "path": "userName", "value": "al\x00ice"}],
        "invalidValue",
    ),
    "givenName too long": (
        [{"op": "replace", "path": "name.givenName", "value": TOO_LONG}],
        "invalidValue",
    ),
    "email too long": (
        [
            {
                "op": "replace",
                "path": 'emails[type eq "work"].value',
                "value": "a" * 250 + "@x.example",
            }
        ],
        "invalidValue",
    ),
}


@pytest.mark.parametrize("case", BAD_PATCHES)
def test_a_bad_patch_is_400_and_changes_nothing(scim, alice, case):
    operations, scim_type = BAD_PATCHES[case]
    found = find(scim, "alice")
    body = {"schemas": [PATCH_OP], "Operations": operations}
    # A good operation first: all or nothing.
    if isinstance(operations, list) and operations:
        body["Operations"] = [
            {"op": "replace", "path": "name.givenName", "value": "Al"},
            *operations,
        ]
    scim_error(send(scim, "patch", f"{USERS}/{found['id']}", body), 400, scim_type)
    alice.refresh_from_db()
    assert alice.is_active and alice.first_name == ""
    assert not AuditEvent.objects.filter(owner=alice).exists()


@pytest.mark.parametrize(
    "query",
    [
        {"filter": 'displayName co "a"'},
        {"filter": 'userName sw "a"'},
        {"filter": "userName eq alice"},
        {"filter": 'userName eq "a\\u0000"'},
        {"startIndex": "one"},
        {"count": "1.5"},
    ],
)
def test_an_unsupported_list_query_is_400(scim, alice, query):
    response = scim.get(USERS, query)
    assert response.status_code == 400 and response["Content-Type"] == SCIM_JSON


def test_unknown_users_and_paths_are_scim_404s(scim, alice):
    scim_error(scim.get(f"{USERS}/00000000-0000-4000-8000-000000000000"), 404)
    scim_error(scim.get(f"{USERS}/1"), 404)  # never a sequential id
    scim_error(send(scim, "patch", f"{USERS}/nope", DEACTIVATIONS["okta"]), 404)
    scim_error(scim.get("/scim/v2/Groups"), 404)


def test_a_wrong_method_is_a_scim_405(scim, alice):
    response = scim.delete(USERS)
    scim_error(response, 405)
    assert response["Allow"] == "GET, POST"


# --- discovery -------------------------------------------------------------------------------


def test_discovery_documents_describe_users_and_bearer_tokens(scim):
    config = json.loads(scim.get("/scim/v2/ServiceProviderConfig").content)
    assert config["patch"]["supported"] and not config["bulk"]["supported"]
    assert config["filter"] == {"supported": True, "maxResults": 100}
    assert config["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    types = json.loads(scim.get("/scim/v2/ResourceTypes").content)
    assert [t["endpoint"] for t in types["Resources"]] == ["/Users"]
    assert json.loads(scim.get("/scim/v2/ResourceTypes/User").content)["name"] == "User"
    schemas = json.loads(scim.get("/scim/v2/Schemas").content)
    (user,) = schemas["Resources"]
    assert {a["name"] for a in user["attributes"]} == {
        "userName",
        "name",
        "emails",
        "active",
        "externalId",
    }
    one = scim.get("/scim/v2/Schemas/urn:ietf:params:scim:schemas:core:2.0:User")
    assert json.loads(one.content)["id"] == "urn:ietf:params:scim:schemas:core:2.0:User"
    scim_error(scim.get("/scim/v2/Schemas/urn:nope"), 404)
    scim_error(Client().get("/scim/v2/ServiceProviderConfig"), 401)


def test_the_audit_history_names_the_identity_provider_as_the_actor(scim, alice, dave, login):
    found = find(scim, "alice")
    send(scim, "patch", f"{USERS}/{found['id']}", DEACTIVATIONS["entra"])
    page = login(dave).get("/audit/").text
    assert "the identity provider (SCIM)" in page
    assert "is active: yes → no" in page and "via: scim" in page


# --- nothing a provider can send makes a 500 (property-based, hypothesis) ---------------------

fuzz = hypothesis.settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Any Unicode but lone surrogates (no JSON encoder sends them), NUL and long strings included.
any_text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40) | st.just(
    "x" * 300
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=8,
)
known_paths = st.sampled_from(
    [
        "userName",
        "active",
        "externalId",
        "name",
        "name.givenName",
        "name.familyName",
        "name.formatted",
        "emails",
        'emails[type eq "work"].value',
        'emails[type eq "work"]',
        "urn:ietf:params:scim:schemas:core:2.0:User:userName",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
        "roles",
        "groups",
        "id",
        "meta.created",
    ]
)
operations = st.fixed_dictionaries(
    {"op": st.sampled_from(["add", "Add", "replace", "Replace", "remove", "Remove"]) | any_text},
    optional={
        "path": known_paths | json_values,
        "value": json_values | st.sampled_from(["False", "True", "x" * 300]),
    },
)


def assert_a_scim_answer(response, allowed: set[int]) -> None:
    assert response.status_code in allowed, (response.status_code, response.content)
    assert response["Content-Type"] == SCIM_JSON
    if response.status_code >= 400:
        assert json.loads(response.content)["status"] == str(response.status_code)


@fuzz
@hypothesis.given(body=st.fixed_dictionaries({"Operations": st.lists(operations, max_size=3)}))
def test_no_patch_makes_a_500(scim, alice, body):
    found = find_by_id(scim, alice)
    response = send(scim, "patch", f"{USERS}/{found}", dict(body, schemas=[PATCH_OP]))
    assert_a_scim_answer(response, {200, 400, 409})


@fuzz
@hypothesis.given(
    body=st.fixed_dictionaries(
        {},
        optional={
            "userName": any_text | json_values,
            "name": json_values,
            "emails": json_values,
            "active": json_values,
            "externalId": json_values,
        },
    )
)
def test_no_create_makes_a_500(scim, body):
    assert_a_scim_answer(send(scim, "post", USERS, body), {201, 400, 409})


@fuzz
@hypothesis.given(text=any_text, start=any_text, count=any_text)
def test_no_list_query_makes_a_500(scim, alice, text, start, count):
    query = {"filter": f'userName eq "{text}"', "startIndex": start, "count": count}
    assert_a_scim_answer(scim.get(USERS, query), {200, 400})
    assert_a_scim_answer(scim.get(USERS, {"filter": text}), {200, 400})
