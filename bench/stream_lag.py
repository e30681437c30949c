"""Benchmark audit streaming lag: events appended at a steady rate, the sender running.

    make bench-stream      # or: .venv/bin/python bench/stream_lag.py [--rate 100 --seconds 60]

Production settings (bench/api_auth.py's environment: a fresh SQLite file, or DATABASE_URL);
`manage.py stream_audit` in its own process; destinations: the local HTTPS receiver of the
tests (TLS with a throw-away CA, the HMAC checked on every batch) and, when rsyslogd is
installed, rsyslog over TCP. This process appends --rate events per second through
chain.record for --seconds, then waits for the sender to catch up.

Lag of an event = the time it arrived at the receiver (the webhook receiver's clock when the
batch was read; rsyslog's timegenerated) minus the event's own time. Target: p95 < 5 s.
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.api_auth import backends, server_env  # noqa: E402

TARGET_P95 = 5.0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def event_time(document: dict) -> float:
    return datetime.datetime.fromisoformat(document["hashed"]["at"]).timestamp()


def report(name: str, lags: list[float], expected: int) -> bool:
    if not lags:
        print(f"{name:<18} nothing arrived: FAIL")
        return False
    p50, p95 = statistics.median(lags), percentile(lags, 0.95)
    verdict = "PASS" if p95 < TARGET_P95 and len(lags) >= expected else "FAIL"
    print(
        f"{name:<18} events {len(lags):>6}/{expected}  p50 {p50:6.2f} s  p95 {p95:6.2f} s  "
        f"max {max(lags):6.2f} s  (target p95 < {TARGET_P95:.0f} s: {verdict})"
    )
    return verdict == "PASS"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=100, help="events per second")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--no-syslog", action="store_true", help="the webhook only")
    parser.add_argument(
        "--per-transaction",
        type=int,
        default=1,
        help="events appended in one transaction (chain.record_many), for a database whose "
        "commit is too slow for --rate single appends",
    )
    args = parser.parse_args()

    directory = Path(tempfile.mkdtemp(prefix="kp-stream-bench-"))
    env = server_env(directory / "bench.sqlite3")
    env.update(AUDIT_STREAM_CA_BUNDLE=str(directory / "ca.pem"), LOG_LEVEL="WARNING")
    os.environ.update(env)
    import django

    # The tests' receivers read the settings on import: after the environment is set.
    from tests.stream_receivers import (
        HttpsReceiver,
        Rsyslog,
        make_certificates,
        rsyslogd_available,
    )

    certificates = make_certificates(directory)

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from keys.actions.streaming import add_destination
    from keys.audit import chain
    from keys.models import AuditEvent, StreamDestination
    from keys.models.streaming import new_secret

    call_command("migrate", verbosity=0)
    admin = get_user_model().objects.create_user("bench-admin")
    receiver = HttpsReceiver(certificates, new_secret(), directory / "webhook.jsonl").start()
    add_destination(
        StreamDestination(name="webhook", url=receiver.url, secret=receiver.secret),
        actor=admin,
    )
    rsyslog = None
    if not args.no_syslog and rsyslogd_available():
        (directory / "rsyslog").mkdir()
        rsyslog = Rsyslog(directory / "rsyslog", None).start()
        add_destination(
            StreamDestination(
                name="rsyslog-tcp",
                kind=StreamDestination.Kind.SYSLOG_TCP,
                host="127.0.0.1",
                port=rsyslog.port,
            ),
            actor=admin,
        )
    sender = subprocess.Popen(
        [sys.executable, str(REPO / "manage.py"), "stream_audit"],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
    print(
        f"Audit streaming lag ({backends(env)}): {args.rate:g} events/s for {args.seconds:g} s, "
        f"{args.per_transaction} per transaction, sender `manage.py stream_audit` in its own "
        "process"
    )
    try:
        # The sender is up and has sent the set-up events before the load starts.
        setup_head = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first()
        while StreamDestination.objects.filter(last_acked_seq__lt=setup_head).exists():
            time.sleep(0.2)
        total = int(args.rate * args.seconds)
        start = time.monotonic()
        step = args.per_transaction
        for first in range(0, total, step):
            pause = start + first / args.rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            chain.record_many(
                [
                    {"action": AuditEvent.Action.CATALOGUE_CHANGED, "details": {"bench": number}}
                    for number in range(first, min(first + step, total))
                ]
            )
        late = time.monotonic() - start - args.seconds
        head = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
            StreamDestination.objects.filter(last_acked_seq__lt=head).exists()
        ):
            time.sleep(0.2)
    finally:
        sender.terminate()
        sender.wait(timeout=30)
    print(f"appended {total} events ({late:+.1f} s behind the schedule); head seq {head}")

    ok = True
    documents = [json.loads(line) for line in receiver.lines]
    lags = [
        arrived - event_time(document)
        for arrived, document in zip(receiver.arrivals, documents, strict=True)
        if "bench" in document["hashed"]["details"]
    ]
    ok &= report("HTTPS webhook", lags, total)
    receiver.stop()
    if rsyslog is not None:
        time.sleep(1)  # rsyslog's file writes
        rsyslog_lags = []
        for line in rsyslog.timed.read_text().splitlines():
            received, _, message = line.partition(" ")
            document = json.loads(message)
            if "bench" in document["hashed"]["details"]:
                arrived = datetime.datetime.fromisoformat(received).timestamp()
                rsyslog_lags.append(arrived - event_time(document))
        ok &= report("rsyslog over TCP", rsyslog_lags, total)
        rsyslog.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
