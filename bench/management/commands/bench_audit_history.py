"""python manage.py bench_audit_history: server time of the Audit history pages.

Renders each page in process through Django's test Client (middleware, view, queries,
template; no network) as an auditor, and prints the median and worst time and the number of
queries. Run it on a database seeded with `seed_audit_demo 1000000`.
"""

import statistics
import time
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.models import Q
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from keys.models import AuditEvent, AuditHead


class Command(BaseCommand):
    help = "Measure the server time of the Audit history pages (first, deep, filtered)."

    def add_arguments(self, parser):
        parser.add_argument("--runs", type=int, default=20)
        parser.add_argument("--as", dest="username", help="An auditor (default: the first).")

    def handle(self, *args, runs, username, **options):
        head = AuditHead.objects.get(pk=1).seq
        if head < 100:
            raise CommandError("Too few events: run `manage.py seed_audit_demo 1000000` first.")
        client = Client(headers={"host": _host()})
        client.force_login(self._auditor(username))
        history = reverse("audit:history")
        # An event about a key half-way down the history gives the user, key and day.
        sample = (
            AuditEvent.objects.filter(seq__lte=head // 2, key__isnull=False)
            .select_related("owner")
            .order_by("-seq")
            .first()
        )
        when = sample.at.date().isoformat()
        pages = [
            ("first page", {}),
            ("page in the middle", {"before": head // 2}),
            ("deep page (oldest)", {"before": 60}),
            ("newer from the deep page", {"after": 10}),
            ("filter: action", {"action": "key_edited"}),
            ("filter: outcome denied, deep", {"outcome": "denied", "before": head // 10}),
            ("filter: user", {"user": sample.owner.username}),
            ("filter: user + action", {"user": sample.owner.username, "action": "key_edited"}),
            ("filter: key", {"key": sample.key_identifier}),
            ("filter: one day", {"date_from": when, "date_to": when}),
            (
                "filter: one day + action",
                {"date_from": when, "date_to": when, "action": "key_used"},
            ),
        ]
        self.stdout.write(f"{head} events; {runs} runs per page; times in ms (server, in process)")
        self.stdout.write(f"{'page':<34} {'median':>7} {'max':>7} {'queries':>8} {'rows':>5}")
        for label, params in pages:
            url = f"{history}?{urlencode(params)}" if params else history
            for _ in range(2):  # warm up caches and the connection
                client.get(url, secure=True)
            times = []
            for _ in range(runs):
                with CaptureQueriesContext(connection) as queries:
                    started = time.perf_counter()
                    response = client.get(url, secure=True)
                    times.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise CommandError(f"{url} answered {response.status_code}")
            rows = response.content.count(b"<tr>") - 1  # minus the header row
            self.stdout.write(
                f"{label:<34} {statistics.median(times):7.1f} {max(times):7.1f} "
                f"{len(queries):8d} {rows:5d}"
            )

    def _auditor(self, username: str | None):
        User = get_user_model()
        if username:
            return User.objects.get(username=username)
        auditors = User.objects.filter(is_active=True).filter(
            Q(groups__name="auditor") | Q(is_superuser=True)
        )
        user = auditors.order_by("pk").first()
        if user is None:
            user, _ = User.objects.get_or_create(username="audit-bench")
            user.set_unusable_password()
            user.save()
            user.groups.add(Group.objects.get(name="auditor"))
        return user


def _host() -> str:
    hosts = [h for h in settings.ALLOWED_HOSTS if h != "*" and not h.startswith(".")]
    return hosts[0] if hosts else "localhost"
