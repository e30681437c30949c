"""python manage.py bench_audit_pull: server time of the audit pull, and of its offline check.

Pulls pages of GET /api/v1/audit/events in process through Django's test Client (middleware,
the credential check, queries, JSON; no network) with a key an administrator granted the
Audit history API, then pulls the whole history as JSON lines into a file and times
`keys.audit.jsonl.verify_lines` on it. Run it on a database seeded with `seed_audit_demo N`.
"""

import statistics
import tempfile
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from keys import actions
from keys.audit import chain, jsonl, signing
from keys.models import Api, AuditHead, latest_expiry_for, local_date

EVENTS = "/api/v1/audit/events"


class Command(BaseCommand):
    help = "Measure the audit pull's pages (start, middle, end) and the JSONL offline check."

    def add_arguments(self, parser):
        parser.add_argument("--runs", type=int, default=20)
        parser.add_argument("--limit", type=int, default=1000)

    def handle(self, *args, runs, limit, **options):
        head = AuditHead.objects.get(pk=1).seq
        if head < 10 * limit:
            raise CommandError("Too few events: run `manage.py seed_audit_demo 100000` first.")
        identifier, password = self._key()
        client = Client(headers={"host": _host()}, REMOTE_ADDR="127.0.0.1")
        auth = {"HTTP_AUTHORIZATION": _basic(identifier, password)}
        self.stdout.write(f"{head} events; {runs} runs per page of {limit}; ms in process")
        self.stdout.write(f"{'page':<22} {'median':>7} {'max':>7} {'queries':>8} {'events':>7}")
        for label, after in [("first", 0), ("middle", head // 2), ("last", head - limit)]:
            url = f"{EVENTS}?after={after}&limit={limit}"
            for _ in range(2):  # warm up: the password verified once, caches, connection
                client.get(url, secure=True, **auth)
            times = []
            for _ in range(runs):
                with CaptureQueriesContext(connection) as queries:
                    started = time.perf_counter()
                    response = client.get(url, secure=True, **auth)
                    times.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise CommandError(f"{url} answered {response.status_code}")
            count = len(response.json()["events"])
            self.stdout.write(
                f"{label:<22} {statistics.median(times):7.1f} {max(times):7.1f} "
                f"{len(queries):8d} {count:7d}"
            )
        with tempfile.TemporaryFile("w+", encoding="utf-8") as file:
            started = time.perf_counter()
            after = 0
            while after < head:
                response = client.get(
                    f"{EVENTS}?after={after}&limit={limit}",
                    secure=True,
                    HTTP_ACCEPT="application/x-ndjson",
                    **auth,
                )
                file.write(response.content.decode())
                after = int(response["Audit-Next-After"])
            pulled = time.perf_counter() - started
            size = file.tell()
            file.seek(0)
            signer = signing.signer()
            started = time.perf_counter()
            report = jsonl.verify_lines(file, chain.Proofs({signer.key_id: signer.public_key}))
            checked = time.perf_counter() - started
        if not report.intact:
            raise CommandError(f"The pulled file does not verify: {report.errors[:3]}")
        self.stdout.write(
            f"whole history pulled as JSON lines: {pulled:.1f} s ({size / 1e6:.0f} MB); "
            f"verify_audit --jsonl on it: {checked:.1f} s ({report.events / checked:,.0f} events/s)"
        )

    def _key(self) -> tuple[str, str]:
        """A fresh key of an administrator, granted Audit history read only."""
        User = get_user_model()
        admin, created = User.objects.get_or_create(username="pull-bench")
        if created:
            admin.set_unusable_password()
            admin.save()
            admin.groups.add(Group.objects.get(name="admin"))
        key, password = actions.create_key(
            owner=admin,
            name=f"pull bench {time.time():.0f}",
            expires_on=latest_expiry_for(local_date()),
            networks=["127.0.0.1"],
            apis=[Api.objects.get(slug="audit")],
            read_only=["audit"],
        )
        return key.identifier, password


def _basic(identifier: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{identifier}:{password}".encode()).decode()


def _host() -> str:
    hosts = [h for h in settings.ALLOWED_HOSTS if h != "*" and not h.startswith(".")]
    return hosts[0] if hosts else "localhost"
