"""The inventory CSV of All keys, for access reviews: one row per key the filters match, times in
UTC, no hash of any kind, spreadsheet-safe, in a fixed number of queries."""

import csv
import datetime
import io

from django.db import connection
from django.test.utils import CaptureQueriesContext

from keys import actions

INVENTORY = "/all-keys/inventory.csv"


def _rows(response) -> list[dict]:
    assert response.status_code == 200 and response.streaming
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


INVENTORY_COLUMNS = [
    "owner",
    "name",
    "identifier",
    "apis",
    "api_names",
    "read_only_apis",
    "allowed_ips",
    "created_utc",
    "expires_on",
    "status",
    "last_used_utc",
    "state",
]


def test_all_keys_offers_the_inventory_with_its_filters(carol, login, pipeline):
    text = login(carol).get("/all-keys/", {"status": "active", "before": pipeline.identifier}).text
    assert 'href="/all-keys/inventory.csv?status=active"' in text
    assert "Export inventory (CSV)" in text


def test_the_inventory_has_one_row_per_key_times_in_utc(carol, login, pipeline, reports):
    actions.revoke_key(reports, actor=carol, reason="Contract ended")
    response = login(carol).get(INVENTORY)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="key-inventory-')
    assert "no-store" in response["Cache-Control"]
    rows = _rows(response)
    assert list(rows[0]) == INVENTORY_COLUMNS
    by_name = {row["name"]: row for row in rows}
    assert by_name["Pipeline"] == {
        "owner": "alice",
        "name": "Pipeline",
        "identifier": pipeline.identifier,
        "apis": "risks kris",
        "api_names": "Risks; Key risk indicators",
        "read_only_apis": "",
        "allowed_ips": "127.0.0.1",
        "created_utc": pipeline.created_at.astimezone(datetime.UTC).isoformat("T", "seconds"),
        "expires_on": pipeline.expires_on.isoformat(),
        "status": "active",
        "last_used_utc": "",
        "state": "",
    }
    assert by_name["Pipeline"]["created_utc"].endswith("+00:00")
    assert (by_name["Reports"]["owner"], by_name["Reports"]["status"]) == ("bob", "revoked")


def test_the_inventory_follows_the_all_keys_filters(dave, login, pipeline, reports):
    assert [row["name"] for row in _rows(login(dave).get(INVENTORY, {"owner": "bob"}))] == [
        "Reports"
    ]


def test_a_bad_inventory_filter_is_an_error_next_to_its_field(dave, login):
    response = login(dave).get(INVENTORY, {"status": "nonsense"})
    assert response.status_code == 400
    assert not response.streaming
    assert "Select a valid choice" in response.context["form"].errors["status"][0]


def test_the_inventory_holds_no_hash_and_is_spreadsheet_safe(carol, login, alice, make_key):
    key, password = make_key(alice, name="=HYPERLINK(1)")
    text = b"".join(login(carol).get(INVENTORY).streaming_content).decode()
    assert "'=HYPERLINK(1)" in text
    assert key.password_hash not in text and "argon2" not in text and password not in text


def test_the_inventory_costs_the_same_queries_for_2_keys_as_for_30(
    carol, alice, bob, login, make_key
):
    client = login(carol)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            rows = _rows(client.get(INVENTORY))
        return len(captured), len(rows)

    make_key(alice, name="First")
    make_key(bob, name="Second")
    few, _ = queries()
    for n in range(28):
        make_key(alice if n % 2 else bob, name=f"Key {n}", networks=("10.0.0.0/24", "::1"))
    assert queries() == (few, 30)
