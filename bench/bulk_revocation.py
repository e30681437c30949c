"""Time of a bulk revocation (docs/design.md §12): the preview and the revocation of KEYS keys.

    .venv/bin/python bench/bulk_revocation.py [--keys 500] [--others 10000]
    .venv/bin/python tests/with_postgres.py --redis .venv/bin/python bench/bulk_revocation.py

Uses DATABASE_URL and CACHE_URL when they are set, else a fresh SQLite file (the settings of
bench/portal_pages.py). Seeds OTHERS keys over 1,000 owners, then KEYS keys of one owner
in bulk, and as an admin (Django's test Client, in process: middleware, session, queries,
template; no network) opens the preview of that owner's keys and confirms it. Prints the
time and the number of queries of each. Figures, not a test: each key is revoked by
revoke_key with its own audit event (and its checkpoint, a revocation being a security
event), so the revocation grows with the number of keys; the preview does not.
"""

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.portal_pages import configure, persona, seed_keys


def seed_one_owner(count: int):
    """`count` active keys of one new owner, in bulk, one allowed IP and one API each."""
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from keys import tokens
    from keys.models import AllowedIp, Api, ApiKey, latest_expiry_for, local_date

    owner = get_user_model().objects.create(username="incident")
    shared_hash = tokens.hash_password(tokens.generate_password(tokens.generate_identifier()))
    today, now = local_date(), timezone.now()
    keys = [
        ApiKey(
            owner=owner,
            name=f"compromised {n}",
            identifier=tokens.generate_identifier(),
            password_hash=shared_hash,
            created_at=now,
            created_on=today,
            latest_expires_on=latest_expiry_for(today),
            expires_on=latest_expiry_for(today),
        )
        for n in range(count)
    ]
    risks = Api.objects.get(slug="risks")
    with transaction.atomic():
        keys = ApiKey.objects.bulk_create(keys)
        AllowedIp.objects.bulk_create(AllowedIp(key=key, network="192.0.2.7/32") for key in keys)
        ApiKey.apis.through.objects.bulk_create(
            ApiKey.apis.through(apikey_id=key.pk, api_id=risks.pk) for key in keys
        )
    return owner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=500)
    parser.add_argument("--others", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="keyportal-bulk-") as tmp:
        backends = configure(Path(tmp))
        from django.core.management import call_command
        from django.db import connection
        from django.test import Client
        from django.test.utils import CaptureQueriesContext

        from keys.models import ApiKey, AuditEvent

        call_command("migrate", verbosity=0)
        call_command("collectstatic", "--noinput", verbosity=0)
        seed_keys(args.others)
        owner = seed_one_owner(args.keys)
        admin = Client(headers={"host": "localhost"})
        admin.force_login(persona("bench-admin", "admin"))
        path = f"/all-keys/revoke/?owner={owner.username}"

        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            preview = admin.get(path)
            preview_s = time.perf_counter() - started
        assert preview.status_code == 200, preview.status_code
        shown = re.search(r'name="shown" value="([0-9a-f]+)"', preview.text).group(1)
        preview_queries = len(queries)

        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            done = admin.post(path, {"reason": "Bench incident", "shown": shown})
            revoke_s = time.perf_counter() - started
        assert done.status_code == 302, done.status_code
        revoked = ApiKey.objects.revoked().filter(owner=owner).count()
        events = AuditEvent.objects.filter(key__owner=owner, action="key_revoked").count()
        assert revoked == events == args.keys, (revoked, events)

        print(f"{backends}: {ApiKey.objects.count():,} keys, {args.keys} of them the owner's")
        print(f"preview of {args.keys} keys: {preview_s * 1000:.0f} ms, {preview_queries} queries")
        print(
            f"revocation of {args.keys} keys: {revoke_s:.2f} s, {len(queries)} queries "
            f"({len(queries) / args.keys:.1f} a key), {events} key_revoked events + 1 bulk"
        )


if __name__ == "__main__":
    main()
