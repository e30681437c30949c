"""The route table each process keeps, current to the revision read with the key.

The table changes rarely (an admin edits a route); reading it on every gateway call would
add a query. So each process keeps the table with the RouteTable revision it was read at,
and the key read brings the current revision in its one query: if they differ, the table
is read again before the request is decided. An edited route therefore counts on the next
request in every process, like a revocation, and a warm check makes no extra query.
"""

import threading

from keys.lib import routes
from keys.models import ApiRoute, RouteTable

_lock = threading.Lock()
_kept: tuple[int, list[routes.Route]] | None = None


def table(revision: int) -> list[routes.Route]:
    """The route table at `revision` (read again whenever the revision differs)."""
    global _kept
    kept = _kept
    if kept is not None and kept[0] == revision:
        return kept[1]
    with _lock:
        # The revision first: a change between the two reads makes the table newer than its
        # label, never older, and the next call, at the new revision, reads it again.
        current = RouteTable.objects.filter(pk=1).values_list("revision", flat=True).first()
        rows = ApiRoute.objects.table()
        _kept = (current or 0, rows)
        return rows


def forget() -> None:
    """Drop this process's table (tests that rebuild the database)."""
    global _kept
    _kept = None
