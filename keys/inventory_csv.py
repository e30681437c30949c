"""The key inventory for access reviews: one CSV row per key, as All keys filters them.

Times are UTC (the headers say so); the expiration date is the key's last valid day in
TIME_ZONE. Cells are spreadsheet-safe as in the audit export (keys.lib.csv_safety.neutralise).
No hash of any kind leaves through it.
"""

import csv
import datetime
from collections.abc import Iterator

from keys.audit.export import Echo, neutralise
from keys.lib.networks import display_network
from keys.models import ApiKey

COLUMNS = [
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
    # The key policy's (docs/design.md §12): pending_approval, out_of_policy or empty. Last,
    # so a spreadsheet reading the columns before it by position keeps working.
    "state",
]
# Keys are read this many at a time, each batch with its APIs and allowed IPs in two more
# queries: memory stays flat, and the queries grow only by three per batch.
CHUNK = 2000


def _utc(moment: datetime.datetime | None) -> str:
    return moment.astimezone(datetime.UTC).isoformat(timespec="seconds") if moment else ""


def key_row(key: ApiKey) -> list[str]:
    """One CSV row; `key` should come from ApiKey.objects.with_listing_data()."""
    grants = list(key.grants.all())
    apis = [grant.api for grant in grants]
    row = [
        key.owner.get_username(),
        key.name,
        key.identifier,
        " ".join(api.slug for api in apis),
        "; ".join(api.name for api in apis),
        " ".join(grant.api.slug for grant in grants if grant.access == grant.Access.READ),
        " ".join(display_network(entry.network) for entry in key.allowed_ips.all()),
        _utc(key.created_at),
        key.expires_on.isoformat(),
        key.status(),
        _utc(key.last_used_at),
        key.policy_state,
    ]
    return [neutralise(cell) for cell in row]


def stream(keys) -> Iterator[str]:
    """The CSV lines of `keys` (an ApiKey queryset with_listing_data()), header first."""
    writer = csv.writer(Echo())
    yield writer.writerow(COLUMNS)
    for key in keys.iterator(chunk_size=CHUNK):
        yield writer.writerow(key_row(key))
