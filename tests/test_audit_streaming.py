"""Audit streaming to real receivers: at least once, in order, verifiable offline.

The receivers are real (tests/stream_receivers.py): an HTTPS webhook receiver that checks the
HMAC, and rsyslogd over TCP and TLS writing to files. The sender runs in this process
(Sender.run_once / run_forever in a thread) or as `manage.py stream_audit` in its own
process where a process must die or outlive a receiver.
"""

import io
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection

from keys.actions.streaming import add_destination, replay_destination
from keys.audit import chain, delivery, signing
from keys.models import AuditEvent, StreamDestination, StreamDestinationQuerySet
from keys.models.streaming import new_secret
from tests.servers import REPO, manage_env, stop_process, wait_for
from tests.stream_receivers import check_jsonl, database_url_of_tests

pytestmark = pytest.mark.django_db(transaction=True)

Action = AuditEvent.Action


@pytest.fixture(autouse=True)
def _trust_the_test_ca(settings, certificates):
    settings.AUDIT_STREAM_CA_BUNDLE = str(certificates.ca)
    settings.AUDIT_STREAM_TIMEOUT_SECONDS = 5
    settings.AUDIT_STREAM_MAX_BACKOFF_SECONDS = 1


def public_key() -> str:
    return signing.public_key_pem(signing.signer().public_key)


def append(count: int, start: int = 0) -> None:
    for number in range(start, start + count):
        chain.record(Action.CATALOGUE_CHANGED, details={"change": "streamed", "n": number})


def webhook(carol, receiver, name="SIEM", **fields) -> StreamDestination:
    destination = StreamDestination(
        name=name, kind=StreamDestination.Kind.WEBHOOK, url=receiver.url, secret=receiver.secret
    )
    for field, value in fields.items():
        setattr(destination, field, value)
    return add_destination(destination, actor=carol)


def syslog(carol, receiver, kind) -> StreamDestination:
    destination = StreamDestination(name="rsyslog", kind=kind, host="127.0.0.1", port=receiver.port)
    return add_destination(destination, actor=carol)


def verify_offline(path, tmp_path) -> str:
    """`verify_audit --jsonl FILE --public-key PEM` on what a receiver stored: its output, or
    CommandError (with the problems on stderr) when the file does not pass."""
    pem = tmp_path / "audit-public-key.pem"
    pem.write_text(public_key())
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(
            "verify_audit", "--jsonl", str(path), "--public-key", str(pem), stdout=out, stderr=err
        )
    except CommandError:
        raise AssertionError(err.getvalue()) from None
    return out.getvalue()


def head() -> int:
    return AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0


def test_webhook_receives_every_event_signed_in_order_and_verifiable_offline(carol, make_receiver):
    receiver = make_receiver(new_secret())
    destination = webhook(carol, receiver, batch_size=7)
    append(30)

    delivery.Sender().run_once()

    report = check_jsonl(receiver.lines, public_key())
    assert report.problems == []
    assert report.seqs == list(range(1, head() + 1))  # its own "added" event first
    assert receiver.bad_signatures == 0
    destination.refresh_from_db()
    assert (destination.last_acked_seq, destination.sent, destination.failed) == (31, 31, 0)
    assert receiver.requests == 5  # batches of 7


def test_a_webhook_line_is_the_event_document_with_owner_and_signature(carol, make_receiver):
    receiver = make_receiver(new_secret())
    webhook(carol, receiver)

    delivery.Sender().run_once()

    (document,) = receiver.stored_documents()
    assert document["seq"] == 1
    assert document["hashed"]["action"] == "destination_added"
    assert set(document) == {"seq", "hashed", "owner", "prev_hash", "hash", "signature"}


def test_a_wrong_secret_is_refused_by_the_receiver_and_nothing_is_acknowledged(
    carol, make_receiver
):
    receiver = make_receiver(new_secret())
    destination = webhook(carol, receiver, secret=new_secret())

    delivery.Sender().run_once()

    destination.refresh_from_db()
    assert receiver.bad_signatures == 1 and receiver.lines == []
    assert (destination.last_acked_seq, destination.failed) == (0, 1)
    assert destination.last_error == "HTTP 401 Unauthorized"


def test_a_receiver_with_a_certificate_from_an_untrusted_ca_gets_nothing(
    carol, make_receiver, settings
):
    settings.AUDIT_STREAM_CA_BUNDLE = None  # the system CAs do not know the test CA
    receiver = make_receiver(new_secret())
    destination = webhook(carol, receiver)

    delivery.Sender().run_once()

    destination.refresh_from_db()
    assert receiver.requests == 0
    assert destination.last_acked_seq == 0
    assert destination.last_error.startswith("TLS certificate not trusted")


def test_a_receiver_answering_500_keeps_the_position_and_the_next_try_resends(carol, make_receiver):
    receiver = make_receiver(new_secret())
    destination = webhook(carol, receiver)
    receiver.mode = "fail"

    delivery.Sender().run_once()

    destination.refresh_from_db()
    assert (destination.last_acked_seq, destination.failed) == (0, 1)
    assert destination.last_error == "HTTP 500 Internal Server Error"
    receiver.mode = "ok"
    delivery.Sender().run_once()
    destination.refresh_from_db()
    assert destination.last_acked_seq == head()
    assert check_jsonl(receiver.lines, public_key()).seqs == list(range(1, head() + 1))


def test_syslog_over_tcp_reaches_rsyslog_one_message_per_event_with_structured_data(
    carol, rsyslog_tcp
):
    destination = syslog(carol, rsyslog_tcp, StreamDestination.Kind.SYSLOG_TCP)
    append(20)

    delivery.Sender().run_once()

    destination.refresh_from_db()
    assert destination.last_acked_seq == 21
    wait_for(lambda: len(rsyslog_tcp.lines()) >= 21, timeout=10, what="rsyslog file")
    report = check_jsonl(rsyslog_tcp.lines(), public_key())
    assert report.problems == [] and report.seqs == list(range(1, 22))
    first = AuditEvent.objects.get(seq=1)
    structured = rsyslog_tcp.structured.read_text().splitlines()
    assert structured[0] == (
        f'destination_added [keyportal@32473 seq="1" hash="{first.hash}" '
        f'prev_hash="{first.prev_hash}" signature="{first.signature}"]'
    )


def test_syslog_over_tls_reaches_rsyslog_and_verifies_offline(carol, rsyslog_tls, tmp_path):
    destination = syslog(carol, rsyslog_tls, StreamDestination.Kind.SYSLOG_TLS)
    append(20)

    delivery.Sender().run_once()

    destination.refresh_from_db()
    assert destination.last_error == ""
    assert destination.last_acked_seq == 21
    wait_for(lambda: len(rsyslog_tls.lines()) >= 21, timeout=10, what="rsyslog file")
    report = check_jsonl(rsyslog_tls.lines(), public_key())
    assert report.problems == [] and report.seqs == list(range(1, 22))
    assert "OK: 21 events, seq 1 to 21" in verify_offline(rsyslog_tls.messages, tmp_path)


def test_syslog_tls_to_an_untrusted_certificate_sends_nothing(carol, rsyslog_tls, settings):
    settings.AUDIT_STREAM_CA_BUNDLE = None
    destination = syslog(carol, rsyslog_tls, StreamDestination.Kind.SYSLOG_TLS)

    delivery.Sender().run_once()

    destination.refresh_from_db()
    assert destination.last_acked_seq == 0
    assert destination.last_error.startswith("TLS certificate not trusted")
    assert rsyslog_tls.lines() == []


def test_a_stopped_rsyslog_keeps_the_position(carol, rsyslog_tcp):
    destination = syslog(carol, rsyslog_tcp, StreamDestination.Kind.SYSLOG_TCP)
    rsyslog_tcp.stop()

    delivery.Sender().run_once()

    destination.refresh_from_db()
    assert (destination.last_acked_seq, destination.last_error) == (0, "connection refused")


def test_send_test_reaches_the_receiver_and_is_no_audit_event(carol, make_receiver, rsyslog_tcp):
    receiver = make_receiver(new_secret())
    hook = webhook(carol, receiver)
    events = head()

    assert delivery.send_test(hook) == "HTTP 204 No Content"
    answer = delivery.send_test(syslog(carol, rsyslog_tcp, StreamDestination.Kind.SYSLOG_TCP))

    assert answer == "TCP connection accepted; 1 message(s) read by the receiver"
    assert receiver.stored_documents()[0]["test"] is True
    wait_for(lambda: rsyslog_tcp.lines(), timeout=10, what="rsyslog file")
    assert '"test":true' in rsyslog_tcp.lines()[0]
    assert head() == events + 1  # only the syslog destination's "added" event


def test_replay_sends_again_from_the_chosen_seq(carol, make_receiver):
    receiver = make_receiver(new_secret())
    destination = webhook(carol, receiver)
    append(5)
    delivery.Sender().run_once()

    replay_destination(destination, from_seq=3, actor=carol)
    delivery.Sender().run_once()

    report = check_jsonl(receiver.lines, public_key())
    assert report.problems == [] and report.gaps == []
    assert report.duplicates == [3, 4, 5, 6]
    assert report.unique == list(range(1, head() + 1))  # the replay event itself too


# --- one slow destination, two senders ---------------------------------------------------------


def run_in_thread(sender: delivery.Sender) -> threading.Thread:
    thread = threading.Thread(target=sender.run_forever, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("mode", ["hang", "fail"])
def test_a_hanging_or_failing_receiver_does_not_delay_a_healthy_destination(
    carol, make_receiver, settings, mode
):
    settings.AUDIT_STREAM_TIMEOUT_SECONDS = 120  # a hang lasts until the test releases it
    settings.AUDIT_STREAM_MAX_BACKOFF_SECONDS = 120
    bad = make_receiver(new_secret(), "bad")
    bad.mode = mode
    webhook(carol, bad, name="Bad")
    healthy = make_receiver(new_secret(), "healthy")
    webhook(carol, healthy, name="Healthy")
    sender = delivery.Sender(poll=0.1)
    thread = run_in_thread(sender)
    try:
        wait_for(lambda: bad.requests, timeout=20, what="the bad receiver's first request")
        append(10)
        wait_for(
            lambda: len(healthy.lines) >= head(), timeout=20, what="every event at the healthy one"
        )
        assert bad.lines == []
        if mode == "hang":
            # ... while the bad one still hangs on its first batch: no turn-taking sender could
            # have served the healthy one meanwhile. (A 500 answers at once, so that case also
            # passes with turns; it checks the failure stays the bad destination's own.)
            assert bad.requests == 1
        else:
            bad_destination = StreamDestination.objects.get(name="Bad")
            assert bad_destination.failed >= 1 and bad_destination.last_acked_seq == 0
    finally:
        sender.stop.set()
        bad.release.set()
        thread.join(timeout=30)


def test_a_second_sender_does_not_send_a_batch_another_sender_is_sending(
    carol, make_receiver, settings
):
    settings.AUDIT_STREAM_TIMEOUT_SECONDS = 120
    receiver = make_receiver(new_secret())
    receiver.mode = "hang"
    destination = webhook(carol, receiver)
    first = delivery.Sender(poll=0.1)
    thread = run_in_thread(first)
    try:
        wait_for(receiver.hanging.is_set, timeout=20, what="the first sender's batch")

        second = delivery.Sender()
        outcome = delivery.deliver_batch(destination.pk, second.owner)

        assert outcome.busy
        assert receiver.requests == 1
    finally:
        first.stop.set()
        receiver.release.set()
        thread.join(timeout=30)


def test_the_sender_outlives_a_database_error_while_it_lists_the_destinations(
    carol, make_receiver, monkeypatch
):
    receiver = make_receiver(new_secret())
    webhook(carol, receiver)
    real_active = StreamDestinationQuerySet.active
    failures = iter([True])

    def active_but_first_down(self):
        if next(failures, False):
            raise OperationalError("the database is restarting")
        return real_active(self)

    monkeypatch.setattr(StreamDestinationQuerySet, "active", active_but_first_down)
    sender = delivery.Sender(poll=0.1)
    thread = run_in_thread(sender)
    try:
        wait_for(lambda: len(receiver.lines) >= head(), timeout=20, what="delivery")
    finally:
        sender.stop.set()
        thread.join(timeout=30)


# --- the sender as its own process ------------------------------------------------------------


def start_sender(certificates, log) -> subprocess.Popen:
    env = manage_env(
        DATABASE_URL=database_url_of_tests(),
        AUDIT_STREAM_CA_BUNDLE=str(certificates.ca),
        AUDIT_STREAM_TIMEOUT_SECONDS="2",  # the lease of a killed sender lapses in 13 s
        AUDIT_STREAM_MAX_BACKOFF_SECONDS="1",
    )
    return subprocess.Popen(
        [sys.executable, str(REPO / "manage.py"), "stream_audit"],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


class Load:
    """A thread appending audit events through chain.record at a steady rate."""

    def __init__(self, per_second: float):
        self.interval = 1 / per_second
        self.stop = threading.Event()
        self.appended = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            while not self.stop.wait(self.interval):
                append(1, self.appended)
                self.appended += 1
        finally:
            connection.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=30)


class Outage:
    """A receiver to take down and bring back: the HTTPS receiver or rsyslogd over TLS."""

    def __init__(self, kind, request, carol):
        if kind == "webhook":
            self.receiver = request.getfixturevalue("make_receiver")(new_secret())
            self.destination = webhook(carol, self.receiver, batch_size=20)
        else:
            self.receiver = request.getfixturevalue("rsyslog_tls")
            self.destination = syslog(carol, self.receiver, StreamDestination.Kind.SYSLOG_TLS)
            StreamDestination.objects.filter(pk=self.destination.pk).update(batch_size=20)
        self.kind = kind

    def lines(self) -> list[str]:
        return list(self.receiver.lines) if self.kind == "webhook" else self.receiver.lines()

    @property
    def path(self):
        """The file the receiver wrote."""
        return self.receiver.path if self.kind == "webhook" else self.receiver.messages

    def stop(self):
        self.receiver.stop()  # rsyslogd: SIGTERM, so it writes what it read (see docs)

    def start(self):
        self.receiver.start()


@pytest.mark.parametrize(("kind", "seconds"), [("webhook", 30), ("syslog_tls", 6)])
def test_a_receiver_outage_under_load_loses_nothing_and_keeps_the_order(
    kind, seconds, request, carol, certificates, tmp_path
):
    """A receiver down for `seconds` under load: the webhook for the full 30 s, rsyslog over
    TLS for 6 s (the same path: refused connections, back-off capped at
    AUDIT_STREAM_MAX_BACKOFF_SECONDS, resume from last_acked_seq, at any length)."""
    outage = Outage(kind, request, carol)
    destination = outage.destination
    with (tmp_path / "sender.log").open("w") as log:
        sender = start_sender(certificates, log)
    try:
        with Load(per_second=25):
            wait_for(lambda: len(outage.lines()) >= 20, timeout=20, what="first events")
            outage.stop()
            time.sleep(seconds)  # the outage
            outage.start()
            time.sleep(3)  # events keep coming after the receiver is back
        wait_for(
            lambda: (
                StreamDestination.objects.get(pk=destination.pk).last_acked_seq == head()
                and len(set(outage.lines())) >= head()
            ),
            timeout=30,
            what="every event acknowledged and stored",
        )
    finally:
        stop_process(sender)
    destination.refresh_from_db()
    report = check_jsonl(outage.lines(), public_key())
    assert report.problems == [] and report.gaps == [] and report.out_of_order == []
    assert report.unique == list(range(1, head() + 1))
    assert destination.failed >= 1  # the outage was seen
    # A resent batch repeats at most once per failed try.
    assert len(report.duplicates) <= destination.failed * destination.batch_size
    assert f"OK: {head()} events, seq 1 to {head()}" in verify_offline(outage.path, tmp_path)
    print(
        f"outage ({kind}): {head()} events, {destination.failed} failed tries, "
        f"duplicates {report.duplicates}"
    )


def test_a_killed_sender_resumes_at_the_last_acknowledged_event(
    carol, make_receiver, certificates, tmp_path
):
    receiver = make_receiver(new_secret())
    destination = webhook(carol, receiver, batch_size=10)
    append(25)
    delivery.Sender().run_once()  # 26 events acknowledged
    append(25)
    receiver.mode = "hang"  # the receiver stores the next batch, then the sender dies
    with (tmp_path / "sender.log").open("w") as log:
        sender = start_sender(certificates, log)
        wait_for(receiver.hanging.is_set, timeout=30, what="a batch in flight")
        os.killpg(sender.pid, signal.SIGKILL)
        sender.wait(timeout=10)
    destination.refresh_from_db()
    assert destination.last_acked_seq == 26  # the batch in flight was never acknowledged
    receiver.mode = "ok"
    receiver.release.set()

    with (tmp_path / "sender2.log").open("w") as log:
        restarted = start_sender(certificates, log)
    try:
        wait_for(
            lambda: StreamDestination.objects.get(pk=destination.pk).last_acked_seq == head(),
            timeout=60,  # the killed sender's lease lapses first
            what="the restarted sender caught up",
        )
    finally:
        stop_process(restarted)
    report = check_jsonl(receiver.lines, public_key())
    assert report.problems == [] and report.gaps == []
    assert report.unique == list(range(1, head() + 1))
    assert f"OK: {head()} events, seq 1 to {head()}" in verify_offline(receiver.path, tmp_path)
