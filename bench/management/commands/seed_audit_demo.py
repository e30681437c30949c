"""python manage.py seed_audit_demo N: a demo history of N events, for measuring the pages.

Not for production data: it creates demo users and keys (with one shared hash of a discarded
password, so no demo key can ever be used) and appends N events in bulk through
keys.audit.chain.append_batch, which chains and signs them as keys.audit.chain.record() would, so
verify_audit passes afterwards.
"""

import datetime
import random
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from keys import tokens
from keys.audit import chain
from keys.models import AllowedIp, Api, ApiKey, AuditEvent

Action = AuditEvent.Action

# Mostly calls with keys, as in a real installation; a few changes by people.
ACTION_WEIGHTS = [
    (Action.KEY_USED, 55),
    (Action.USE_DENIED, 30),
    (Action.KEY_EDITED, 7),
    (Action.EXPIRY_SHORTENED, 3),
    (Action.EXPIRY_REMINDER, 4),
    (Action.CATALOGUE_CHANGED, 1),
]
DENIAL_REASONS = ["wrong_password", "ip_not_allowed", "expired", "revoked", "api_not_granted"]


class Command(BaseCommand):
    help = "Append N demo events (and demo users and keys) to the audit history."

    def add_arguments(self, parser):
        parser.add_argument("n", type=int, help="How many events to append.")
        parser.add_argument("--users", type=int, default=50)
        parser.add_argument("--keys-per-user", type=int, default=4)
        parser.add_argument("--days", type=int, default=365, help="Spread over this many days.")
        parser.add_argument("--batch", type=int, default=20_000)
        parser.add_argument("--seed", type=int, default=1, help="Random seed (repeatable data).")

    def handle(self, *args, n, users, keys_per_user, days, batch, seed, **options):
        if n < 1 or users < 1 or keys_per_user < 1:
            raise CommandError("N, --users and --keys-per-user must be positive.")
        if ApiKey.objects.exclude(owner__username__startswith="demo-").exists():
            # Demo events chain validly, so verify_audit could never tell them from real
            # ones: never mix them into a real installation's history.
            raise CommandError(
                "This database holds real keys; seed_audit_demo only fills a demo database."
            )
        rng = random.Random(seed)
        now = timezone.now()
        last_at = AuditEvent.objects.order_by("-seq").values_list("at", flat=True).first()
        start = max(
            now - datetime.timedelta(days=days), last_at or now - datetime.timedelta(days=days)
        )
        step = (now - start) / n

        people = self._users(users)
        keys = self._keys(people, keys_per_user, start, rng)
        apis = list(Api.objects.values_list("slug", flat=True))
        self.stdout.write(f"{len(people)} demo users, {len(keys)} demo keys; appending {n} events…")

        # The first events create the demo keys, then a random mix follows.
        plan = [(Action.KEY_CREATED, key) for key in keys][:n]
        choices, weights = zip(*ACTION_WEIGHTS, strict=True)
        done = 0
        while done < n:
            size = min(batch, n - done)
            events = []
            for i in range(done, done + size):
                if i < len(plan):
                    action, key = plan[i]
                else:
                    action, key = rng.choices(choices, weights)[0], rng.choice(keys)
                events.append(self._event(action, key, start + step * (i + 1), rng, apis))
            head = chain.append_batch(events)
            done += size
            self.stdout.write(f"  {done}/{n}")
        self.stdout.write(self.style.SUCCESS(f"Done: head #{head.seq} {head.hash}"))

    def _users(self, count: int) -> list:
        """Demo people, written in bulk: their creation is not part of the N events."""
        User = get_user_model()
        staff = Group.objects.get(name="staff")
        names = [f"demo-{number:04d}" for number in range(1, count + 1)]
        existing = set(User.objects.filter(username__in=names).values_list("username", flat=True))
        new = [User(username=name, email=f"{name}@example.com") for name in names]
        new = [person for person in new if person.username not in existing]
        for person in new:
            person.set_unusable_password()
        User.objects.bulk_create(new)
        people = list(User.objects.filter(username__in=names).order_by("username"))
        membership = User.groups.through
        membership.objects.bulk_create(
            [
                membership(user_id=p.pk, group_id=staff.pk)
                for p in people
                if p.username not in existing
            ]
        )
        return people

    def _keys(self, people: list, per_user: int, start, rng: random.Random) -> list[ApiKey]:
        """Demo keys, created at the start of the window; nobody knows a password for them."""
        unusable_hash = tokens.hash_password(secrets.token_urlsafe(32))  # password discarded
        keys = []
        for person in people:
            for number in range(1, per_user + 1):
                key = ApiKey(
                    owner=person,
                    name=f"demo key {number} {secrets.token_hex(3)}",
                    identifier=tokens.generate_identifier(),
                    password_hash=unusable_hash,
                )
                key.created_at = start
                key.prepare_creation()
                key.expires_on = key.latest_expires_on
                keys.append(key)
        # bulk_create: demo rows only; product code creates keys with keys.actions.create_key.
        ApiKey.objects.bulk_create(keys)
        AllowedIp.objects.bulk_create(AllowedIp(key=key, network="192.0.2.0/24") for key in keys)
        through = ApiKey.apis.through
        # Not the Audit history: only administrators may hold it (keys.models.KeyGrant).
        api_ids = list(Api.objects.filter(admins_only=False).values_list("pk", flat=True))
        through.objects.bulk_create(
            through(apikey_id=key.pk, api_id=api_id)
            for key in keys
            for api_id in rng.sample(api_ids, k=min(2, len(api_ids)))
        )
        return keys

    def _event(self, action, key: ApiKey, at, rng: random.Random, apis) -> AuditEvent:
        person_acts = action in (Action.KEY_CREATED, Action.KEY_EDITED, Action.EXPIRY_SHORTENED)
        event = AuditEvent(
            at=at,
            action=action,
            key=key,
            key_identifier=key.identifier,
            owner=key.owner,
            actor=key.owner if person_acts else None,
            actor_label=key.owner.username if person_acts else "system",
            details={},
        )
        if action == Action.KEY_CREATED:
            event.details = {"name": key.name, "expires_on": key.expires_on.isoformat()}
        elif action in (Action.KEY_USED, Action.USE_DENIED):
            event.actor_label = key.identifier
            event.actor_ip = f"192.0.2.{rng.randint(1, 254)}"
            path = f"/api/v1/{rng.choice(apis)}/"
            if action == Action.USE_DENIED:
                event.details = {"reason": rng.choice(DENIAL_REASONS), "path": path, "count": 1}
            else:
                event.details = {"path": path, "uses": rng.randint(1, 500)}
        elif action == Action.KEY_EDITED:
            event.details = {"name": {"before": key.name, "after": key.name + " (renamed)"}}
        elif action == Action.EXPIRY_SHORTENED:
            event.details = {
                "before": key.expires_on.isoformat(),
                "after": key.expires_on.isoformat(),
            }
        elif action == Action.EXPIRY_REMINDER:
            event.details = {"threshold_days": rng.choice([30, 7, 1]), "to": key.owner.email}
        elif action == Action.CATALOGUE_CHANGED:
            event.key = event.owner = None
            event.key_identifier = ""
            event.details = {"api": rng.choice(apis), "change": "changed"}
        return event
