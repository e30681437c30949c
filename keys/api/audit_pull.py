"""GET /api/v1/audit/events: the audit history for SIEMs that poll (docs/design.md §11).

A key granted the Audit history API (catalogue slug `audit`, which only administrators may
grant, and only read only: keys.models.ApiKey.grant_errors) pages through the chain oldest
first: `after` is the last seq the caller holds (0 for the start), `limit` how many events it
takes (100 by default, at most 1,000). Each event is keys.audit.export.event_document(), so
the caller re-computes its hash and checks its signature offline
(`verify_audit --jsonl FILE --public-key PEM`). The answer's `next_after` is the `after` of
the next call and `head_seq` the chain's newest event: the caller is up to date when they are
equal. Only events up to the head as read at the start of the call are served, so a page
never holds an event whose predecessor is not yet committed.

With `Accept: application/x-ndjson` the answer is one event document per line (a JSON lines
file a receiver appends as is); both forms carry `Audit-Next-After` and `Audit-Head-Seq`
headers.
"""

import json
import re

from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse, JsonResponse

from keys.api import check, usage
from keys.api.problems import problem
from keys.api.views import api_endpoint
from keys.audit.export import event_document
from keys.models import AuditEvent
from keys.permissions import GRANT_ADMINS_ONLY_APIS

AUDIT_API = "audit"  # keys.seed.AUDIT_API
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
NDJSON = "application/x-ndjson"
PARAMETERS = ("after", "limit")
# A seq is a PostgreSQL bigint: more than 18 digits could overflow it.
_WHOLE = re.compile(r"[0-9]{1,18}")


class BadParameter(ValueError):
    pass


@api_endpoint(AUDIT_API)
def events(request: HttpRequest, caller: check.Caller) -> HttpResponse:
    if not _owner_may_hold_it(caller):
        usage.record_refusal(
            identifier=caller.identifier,
            reason="owner_not_admin",
            ip=caller.ip,
            path=request.path_info[:200],
            key_id=caller.key_id,
            proved=True,
        )
        return problem(403, "Only an administrator's key may read the audit history.")
    try:
        after, limit = _page_parameters(request)
    except BadParameter as error:
        return problem(400, str(error))
    page, head_seq = AuditEvent.objects.pulled(after=after, limit=limit)
    documents = [event_document(event) for event in page]
    next_after = documents[-1]["seq"] if documents else after
    response: HttpResponse
    if _wants_ndjson(request):
        lines = "".join(json.dumps(document) + "\n" for document in documents)
        response = HttpResponse(lines.encode(), content_type=NDJSON)
    else:
        response = JsonResponse(
            {"events": documents, "next_after": next_after, "head_seq": head_seq}
        )
    response["Audit-Next-After"] = str(next_after)
    response["Audit-Head-Seq"] = str(head_seq)
    response["Vary"] = "Accept"
    return response


def _owner_may_hold_it(caller: check.Caller) -> bool:
    """Whether the key's owner is still an administrator: one granted the API, then demoted,
    must not keep reading every event (the grant rule is checked when a key is saved; this,
    on every call, costs three short queries)."""
    owner = get_user_model()._default_manager.filter(username=caller.owner).first()
    return owner is not None and owner.has_perm(GRANT_ADMINS_ONLY_APIS)


def _page_parameters(request: HttpRequest) -> tuple[int, int]:
    """(after, limit) from the query string; BadParameter names what is wrong, never echoing
    what the client sent (keys.api.problems)."""
    if set(request.GET) - set(PARAMETERS):
        raise BadParameter("Only the query parameters after and limit are accepted.")
    after = _whole(request, "after", 0)
    limit = _whole(request, "limit", DEFAULT_LIMIT)
    if after is None:
        raise BadParameter("after must be a whole number, 0 or more: the last seq you hold.")
    if limit is None or not 1 <= limit <= MAX_LIMIT:
        raise BadParameter(f"limit must be a whole number from 1 to {MAX_LIMIT}.")
    return after, limit


def _whole(request: HttpRequest, name: str, default: int) -> int | None:
    """The parameter as a whole number, its default if absent, None if malformed or given
    more than once (two values would make the page depend on which one counts)."""
    values = request.GET.getlist(name)
    if not values:
        return default
    if len(values) > 1 or not _WHOLE.fullmatch(values[0]):
        return None
    return int(values[0])


def _wants_ndjson(request: HttpRequest) -> bool:
    """Whether the caller asked for JSON lines by name (`*/*` gets the JSON document)."""
    accept = request.headers.get("Accept", "")
    return any(part.split(";")[0].strip().lower() == NDJSON for part in accept.split(","))
