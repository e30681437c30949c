"""The protected endpoints under /api/v1/ (docs/design.md §4).

Every endpoint is made with `@api_endpoint(api)`, naming the catalogue API it belongs to (or
ANY_API for whoami); keys/urls.py lists each route with its view. Adding a catalogue API
takes its catalogue row, its data here and its two routes in keys/urls.py.
"""

import datetime
import json
from functools import wraps

from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_variables

from keys import actions
from keys.api import check, usage
from keys.api.demo_data import DEMO_DATA
from keys.api.problems import problem
from keys.models import ApiKey

ANY_API = check.ANY_API
ALLOWED_METHODS = ("GET", "HEAD")
DEFAULT_SELF_ROTATION_OVERLAP = 3600


def api_endpoint(api: str, *, methods: tuple[str, ...] = ALLOWED_METHODS):
    """Make a view callable only by a verified key granted `api` (its `.api` says which).

    The view is called as view(request, caller, **url_kwargs). Authentication comes first,
    whatever the method, so an anonymous caller learns nothing but 401; CSRF does not apply,
    since no cookie can authenticate an API call.
    """

    def decorate(view):
        @csrf_exempt
        @wraps(view)
        def endpoint(request: HttpRequest, **kwargs) -> HttpResponse:
            try:
                caller = check.authenticate(request, api)
            except check.Refusal as refusal:
                return refusal.response()
            if request.method not in methods:
                return problem(405, headers={"Allow": ", ".join(methods)})
            usage.record_use(caller.key_id, caller.ip, api=None if api == ANY_API else api)
            response = view(request, caller, **kwargs)
            response["Cache-Control"] = "no-store"
            return response

        endpoint.api = api
        endpoint.methods = methods
        return endpoint

    return decorate


@api_endpoint(ANY_API)
def whoami(request: HttpRequest, caller: check.Caller) -> HttpResponse:
    return JsonResponse(
        {
            "identifier": caller.identifier,
            "name": caller.name,
            "apis": sorted(caller.apis),
            "expires_on": caller.expires_on.isoformat(),
        }
    )


@api_endpoint(ANY_API, methods=("POST",))
@sensitive_variables("password")
def self_rotate(request: HttpRequest, caller: check.Caller) -> HttpResponse:
    """POST /api/v1/self/rotate: a new password for the calling key, in the response only.

    Body (optional): {"overlap_seconds": N}, how long the current password keeps working,
    0 to 86400 (24 hours); default 3600. Only for keys whose owner ticked "This key may
    rotate itself".
    """
    if not caller.may_rotate_itself:
        usage.record_refusal(
            identifier=caller.identifier,
            reason="rotation_not_allowed",
            ip=caller.ip,
            path=request.path_info[:200],
            key_id=caller.key_id,
        )
        return problem(403, "This key may not rotate itself; its owner can allow it.")
    try:
        body = json.loads(request.body or b"{}")
        seconds = body.get("overlap_seconds", DEFAULT_SELF_ROTATION_OVERLAP)
        if not isinstance(body, dict) or type(seconds) is not int:
            raise ValueError
    except (ValueError, AttributeError, UnicodeDecodeError):
        return problem(400, 'Send {"overlap_seconds": N} with N a whole number, or no body.')
    limit = int(actions.MAX_SELF_ROTATION_OVERLAP.total_seconds())
    if not 0 <= seconds <= limit:
        return problem(400, f"overlap_seconds must be between 0 and {limit}.")
    try:
        key, password = actions.regenerate_password(
            ApiKey.objects.get(pk=caller.key_id),
            actor=None,
            overlap=datetime.timedelta(seconds=seconds),
            ip=caller.ip,
            by_itself=True,
        )
    except (ValidationError, PermissionError):  # revoked or changed since the check above
        return problem(409, "The key changed meanwhile; retry.")
    until = key.previous_password_valid_until
    return JsonResponse(
        {
            "identifier": key.identifier,
            "password": password,
            "previous_password_valid_until": until.isoformat() if until else None,
        }
    )


def demo_list(api: str):
    """The list endpoint of a catalogue API serving demo data."""
    items = DEMO_DATA[api]

    @api_endpoint(api)
    def collection(request: HttpRequest, caller: check.Caller) -> HttpResponse:
        return JsonResponse({"api": api, "items": items})

    return collection


def demo_item(api: str):
    """The item endpoint of a catalogue API serving demo data."""
    by_id = {item["id"]: item for item in DEMO_DATA[api]}

    @api_endpoint(api)
    def item(request: HttpRequest, caller: check.Caller, item_id: str) -> HttpResponse:
        if item_id not in by_id:
            raise Http404("No such item.")
        return JsonResponse({"api": api, "item": by_id[item_id]})

    return item
