"""A SIEM checks what it received offline: `verify_audit --jsonl FILE --public-key PEM`.

The file holds event documents (keys.audit.export.event_document), one a line, as the pull
API serves them and the streams send them. The check needs the public key, not the database.
"""

import base64
import io
import json
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from keys.audit import chain, signing
from keys.audit.export import event_document
from keys.models import AuditEvent, AuditHead
from tests.servers import REPO, manage_env

OTHER_KEY = base64.b64encode(b"another-audit-signing-key-seed!!").decode()


@pytest.fixture
def lines(db) -> list[str]:
    """Twelve events as a receiver stores them: one JSON document a line."""
    chain.record_many(
        [{"action": AuditEvent.Action.CATALOGUE_CHANGED, "details": {"n": n}} for n in range(12)]
    )
    events = AuditEvent.objects.select_related("owner").order_by("seq")
    return [json.dumps(event_document(event)) + "\n" for event in events]


@pytest.fixture
def public_key(tmp_path) -> str:
    out = io.StringIO()
    call_command("audit_public_key", stdout=out)
    path = tmp_path / "audit-public-key.pem"
    path.write_text(out.getvalue())
    return str(path)


def verify(tmp_path, public_key: str, lines: list[str]) -> tuple[bool, str]:
    """(passed, everything it printed) for the file made of `lines`."""
    path = tmp_path / "received.jsonl"
    path.write_text("".join(lines))
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(
            "verify_audit", jsonl=str(path), public_key=[public_key], stdout=out, stderr=err
        )
    except CommandError as failure:
        return False, out.getvalue() + err.getvalue() + str(failure)
    return True, out.getvalue() + err.getvalue()


def changed(line: str, change) -> str:
    document = json.loads(line)
    change(document)
    return json.dumps(document) + "\n"


def test_the_events_as_received_verify(tmp_path, public_key, lines):
    passed, output = verify(tmp_path, public_key, lines)
    assert passed, output
    head = AuditHead.objects.get()
    assert output.startswith(f"OK: 12 events, seq 1 to 12, head {head.hash}\n")
    assert "signed by key" in output


def test_an_edited_detail_is_reported_with_its_seq(tmp_path, public_key, lines):
    lines[4] = changed(lines[4], lambda d: d["hashed"]["details"].update(n=99))
    passed, output = verify(tmp_path, public_key, lines)
    assert not passed
    assert "BROKEN: seq 5 (line 5): its content does not match its hash (edited)" in output


def test_an_edit_with_a_recomputed_hash_fails_its_signature_and_the_next_link(
    tmp_path, public_key, lines
):
    def edit(document):
        document["hashed"]["details"]["n"] = 99
        document["hash"] = chain.hash_fields(document["prev_hash"], document["hashed"])

    lines[4] = changed(lines[4], edit)
    passed, output = verify(tmp_path, public_key, lines)
    assert not passed
    assert "BROKEN: seq 5 (line 5): its signature by key" in output
    assert "BROKEN: seq 6: does not chain onto seq 5" in output


def test_removed_lines_are_reported_as_a_gap_with_their_seqs(tmp_path, public_key, lines):
    del lines[3:6]  # events 4, 5 and 6
    del lines[6]  # event 10
    passed, output = verify(tmp_path, public_key, lines)
    assert not passed
    assert "BROKEN: events 4-6 are missing" in output
    assert "BROKEN: event 10 is missing" in output


def test_an_identical_duplicate_is_a_notice_not_a_failure(tmp_path, public_key, lines):
    lines = [*lines[:7], lines[3], lines[6], *lines[7:]]  # 4 and 7 delivered again
    passed, output = verify(tmp_path, public_key, lines)
    assert passed, output
    assert (
        "Notice: 2 event(s) delivered more than once, identical (at least once delivery): "
        "seq 4, 7" in output
    )
    assert "OK: 12 events" in output
    assert "(12); " in output  # each event's signature counted once


def test_a_different_document_under_the_same_seq_fails(tmp_path, public_key, lines):
    lines.append(changed(lines[2], lambda d: d["hashed"]["details"].update(n=42)))
    passed, output = verify(tmp_path, public_key, lines)
    assert not passed
    assert "BROKEN: seq 3: different documents on lines 3, 13" in output
    assert "BROKEN: seq 3 (line 13): its content does not match its hash (edited)" in output


def test_lines_out_of_order_are_checked_in_seq_order_and_said_so(tmp_path, public_key, lines):
    lines[2], lines[5] = lines[5], lines[2]
    passed, output = verify(tmp_path, public_key, lines)
    assert passed, output
    assert "Notice: the lines are not in seq order (from line 4); checked in seq order" in output


def test_a_signature_by_another_key_is_reported(tmp_path, public_key, lines):
    forger = signing.Signer(signing.load_private_key(OTHER_KEY))
    lines[7] = changed(
        lines[7], lambda d: d.update(signature=forger.sign(signing.EVENT, d["hash"]))
    )
    passed, output = verify(tmp_path, public_key, lines)
    assert not passed
    assert (
        f"BROKEN: seq 8 (line 8): its signature names key {forger.key_id}, which is not among "
        "the public keys given" in output
    )


def test_a_truncated_or_garbage_line_is_reported_with_its_number(tmp_path, public_key, lines):
    lines[2] = lines[2][:40] + "\n"
    lines.insert(6, "garbage\n")
    lines.insert(9, "[1, 2]\n")
    passed, output = verify(tmp_path, public_key, lines)
    assert not passed
    assert "BROKEN: line 3 is not an event document: not JSON (truncated?)" in output
    assert "BROKEN: line 7 is not an event document: not JSON (truncated?)" in output
    assert "BROKEN: line 10 is not an event document: not a JSON object" in output
    assert "BROKEN: event 3 is missing" in output


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda d: d.pop("signature"), "no signature"),
        (lambda d: d.update(seq="4"), "seq is not a positive whole number"),
        (lambda d: d.update(seq=5), "its seq and hashed.seq differ"),
        (lambda d: d["hashed"].pop("details"), "hashed does not hold exactly the hashed fields"),
        (lambda d: d.update(hash=None), "prev_hash, hash and signature must be strings"),
    ],
)
def test_a_document_of_the_wrong_shape_is_reported(tmp_path, public_key, lines, change, reason):
    lines[3] = changed(lines[3], change)
    passed, output = verify(tmp_path, public_key, lines)
    assert not passed
    assert f"BROKEN: line 4 is not an event document: {reason}" in output


def test_the_wrong_public_key_fails_every_signature(tmp_path, lines, settings):
    settings.AUDIT_SIGNING_KEY = OTHER_KEY
    out = io.StringIO()
    call_command("audit_public_key", stdout=out)
    wrong = tmp_path / "wrong.pem"
    wrong.write_text(out.getvalue())
    passed, output = verify(tmp_path, str(wrong), lines)
    assert not passed
    assert output.count("which is not among the public keys given") == 12
    assert "12 problem(s) in 12 line(s)" in output


def test_a_file_from_a_later_start_verifies_and_says_where_it_starts(tmp_path, public_key, lines):
    passed, output = verify(tmp_path, public_key, lines[5:])
    assert passed, output
    assert "Notice: the file starts at seq 6, not at the first event" in output


def test_the_check_reads_standard_input_in_a_process_without_the_events(
    tmp_path, public_key, lines
):
    """`verify_audit --jsonl -` in another process, whose database has no tables at all."""
    env = manage_env(DATABASE_URL=f"sqlite:///{tmp_path / 'empty.sqlite3'}")

    def check(text: str) -> subprocess.CompletedProcess:
        command = [sys.executable, str(REPO / "manage.py"), "verify_audit", "--jsonl", "-"]
        return subprocess.run(
            [*command, "--public-key", public_key],
            input=text,
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    result = check("".join(lines))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: 12 events, seq 1 to 12")

    lines[4] = changed(lines[4], lambda d: d["hashed"].update(action="key_revoked"))
    result = check("".join(lines))
    assert result.returncode == 1
    assert "seq 5 (line 5): its content does not match its hash (edited)" in result.stderr


def test_a_file_saved_with_a_byte_order_mark_and_crlf_verifies(tmp_path, public_key, lines):
    lines = [line.replace("\n", "\r\n") for line in lines]
    lines[0] = "\ufeff" + lines[0]
    passed, output = verify(tmp_path, public_key, lines)
    assert passed, output
