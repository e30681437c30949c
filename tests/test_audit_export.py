"""The CSV export: streamed, filtered like the page, spreadsheet-safe, verifiable offline."""

import csv
import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from keys import actions
from keys.audit import export as audit_csv
from keys.models import AuditEvent, AuditHead

EXPORT = "/audit/export.csv"


def _download(client, params=None) -> str:
    response = client.get(EXPORT, params or {})
    assert response.status_code == 200
    assert response.streaming
    return b"".join(response.streaming_content).decode()


def _rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def _verify_csv(tmp_path, text: str) -> str:
    path = tmp_path / "export.csv"
    path.write_text(text, encoding="utf-8")
    out = io.StringIO()
    call_command("verify_audit", csv=str(path), stdout=out)
    return out.getvalue().splitlines()[0]  # the second line names the signing keys


@pytest.fixture
def history(alice, bob, carol, make_key):
    alice_key, alice_password = make_key(alice, name="Pipeline")
    bob_key, bob_password = make_key(bob, name="Reports")
    actions.revoke_key(bob_key, actor=carol, reason="Contract ended")
    return {"passwords": [alice_password, bob_password], "alice_key": alice_key}


def test_auditor_downloads_the_history_as_a_streamed_csv_file(dave, login, history):
    response = login(dave).get(EXPORT)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-history-')
    assert "no-store" in response["Cache-Control"]
    rows = _rows(b"".join(response.streaming_content).decode())
    assert [row["seq"] for row in rows] == ["1", "2", "3"]  # oldest first, for re-walking
    assert [row["action"] for row in rows] == ["key_created", "key_created", "key_revoked"]
    assert rows[2]["actor_label"] == "carol" and rows[2]["owner"] == "bob"
    assert "Contract ended" in rows[2]["details"]


def test_export_carries_every_hash_so_it_verifies_offline(dave, login, history, tmp_path):
    text = _download(login(dave))
    rows = _rows(text)
    events = AuditEvent.objects.order_by("seq")
    assert [(r["prev_hash"], r["hash"]) for r in rows] == [(e.prev_hash, e.hash) for e in events]
    head = AuditHead.objects.get()
    assert _verify_csv(tmp_path, text) == f"OK: 3 events, head {head.hash}"


def test_a_changed_cell_in_an_export_fails_the_offline_check(dave, login, history, tmp_path):
    text = _download(login(dave)).replace("Contract ended", "Routine rotation")
    with pytest.raises(CommandError, match="BROKEN at seq 3: its content does not match"):
        _verify_csv(tmp_path, text)


def test_a_removed_row_in_a_full_export_is_reported_as_a_gap(dave, login, history, tmp_path):
    lines = _download(login(dave)).splitlines(keepends=True)
    del lines[2]  # seq 2
    assert "1 gap(s)" in _verify_csv(tmp_path, "".join(lines))


def test_a_filtered_export_verifies_row_by_row(dave, login, history, tmp_path):
    text = _download(login(dave), {"user": "bob"})
    assert [row["seq"] for row in _rows(text)] == ["2", "3"]
    assert _verify_csv(tmp_path, text).startswith("OK: 2 rows each match their hash")


def test_export_uses_the_same_filters_as_the_page(dave, login, history):
    client = login(dave)
    assert [r["seq"] for r in _rows(_download(client, {"action": "key_revoked"}))] == ["3"]
    key = history["alice_key"].identifier
    assert [r["seq"] for r in _rows(_download(client, {"key": key}))] == ["1"]


def test_export_ignores_the_page_cursor(dave, login, history):
    rows = _rows(_download(login(dave), {"before": "2"}))
    assert [row["seq"] for row in rows] == ["1", "2", "3"]


def test_export_with_a_bad_filter_shows_the_error_on_the_history_page(dave, login):
    response = login(dave).get(EXPORT, {"date_from": "soon"})
    assert response.status_code == 400
    assert "Enter a valid date." in response.text


@pytest.mark.parametrize(("field", "day"), [("date_from", "0001-01-01"), ("date_to", "9999-12-31")])
def test_export_with_a_date_at_the_end_of_the_calendar_shows_the_error(
    dave, login, history, field, day
):
    response = login(dave).get(EXPORT, {field: day})
    assert response.status_code == 400
    assert response.context["form"].errors[field] == [
        "Enter a date between 2000-01-01 and 9000-12-31."
    ]


def test_export_never_contains_a_key_password(dave, login, history):
    text = _download(login(dave))
    for password in history["passwords"]:
        assert password not in text
    assert "$argon2" not in text


def test_cells_that_a_spreadsheet_would_run_are_neutralised(
    dave, login, django_user_model, make_key, tmp_path
):
    mallory = django_user_model.objects.create_user(username="@mallory", password="pw-123-xyz")
    plus = django_user_model.objects.create_user(username="+plus", password="pw-123-xyz")
    key, _ = make_key(mallory, name="=HYPERLINK(1)")
    actions.revoke_key(key, actor=plus, reason="-2+3")
    text = _download(login(dave))
    raw = list(csv.reader(io.StringIO(text)))[1:]
    for row in raw:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@")), cell
    key_events = [row for row in raw if row[audit_csv.COLUMNS.index("action")].startswith("key_")]
    assert key_events[0][audit_csv.COLUMNS.index("actor_label")] == "'@mallory"
    assert key_events[1][audit_csv.COLUMNS.index("actor_label")] == "'+plus"
    assert text.count("'@mallory") >= 2  # actor and owner columns
    # Neutralising is reversible, so the hashes still verify (two users created, two key events).
    assert _verify_csv(tmp_path, text).startswith("OK: 4 events")


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+2", "'=1+2"),
        ("+31 20", "'+31 20"),
        ("-5", "'-5"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("'quoted", "''quoted"),
        ("plain", "plain"),
        ("", ""),
    ],
)
def test_neutralising_a_cell_can_be_undone_exactly(value, cell):
    assert audit_csv.neutralise(value) == cell
    assert audit_csv.restore(cell) == value


# --- the CSV says UTC ------------------------------------------------------------------------


def test_the_audit_csv_header_says_its_times_are_utc(dave, login, pipeline):
    text = b"".join(login(dave).get("/audit/export.csv").streaming_content).decode()
    header, row = text.splitlines()[:2]
    assert header.split(",")[:2] == ["seq", "at_utc"]
    assert row.split(",")[1].endswith("+00:00")


def test_verify_audit_still_accepts_an_older_export_whose_column_is_at(
    dave, login, pipeline, tmp_path
):
    text = b"".join(login(dave).get("/audit/export.csv").streaming_content).decode()
    assert _verify_csv(tmp_path, text).startswith("OK: 1 events")
    older = text.replace("seq,at_utc,", "seq,at,", 1)
    assert _verify_csv(tmp_path, older).startswith("OK: 1 events")
    with pytest.raises(CommandError, match="the columns are not"):
        _verify_csv(tmp_path, text.replace("seq,at_utc,", "seq,when,", 1))
