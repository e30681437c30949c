"""The protected endpoints under /api/v1/ (docs/design.md §4).

Every endpoint is made with `@api_endpoint(api)`, naming the catalogue API it belongs to (or
ANY_API for whoami); keys/urls.py lists each route with its view. Adding a catalogue API
takes its catalogue row, its data here and its two routes in keys/urls.py.
"""

import datetime
import json
import logging
from functools import wraps

from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_variables

from keys import actions
from keys.api import check, usage
from keys.api.demo_data import DEMO_DATA
from keys.api.problems import problem
from keys.models import ApiKey

logger = logging.getLogger(__name__)

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
    rotate itself", only with the key's current password (403 with the previous one: after
    the owner regenerated a leaked password, the leaked one must not take the key back), at
    most once a minute (429 with Retry-After). The owner is mailed each time.
    """
    if not caller.may_rotate_itself:
        _refuse_rotation(request, caller, "rotation_not_allowed")
        return problem(403, "This key may not rotate itself; its owner can allow it.")
    if caller.previous_password:
        _refuse_rotation(request, caller, "rotation_by_previous_password")
        return problem(403, "Only the key's current password may rotate it, not its previous one.")
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
    except actions.RotatedTooSoon as too_soon:
        # 429, not 403: a rate limit, which retrying clients already honour through
        # Retry-After; automation that crashed mid-rotation recovers by retrying then.
        _refuse_rotation(request, caller, "rotation_too_soon")
        return problem(
            429,
            "This key rotated itself less than a minute ago; retry later.",
            headers={"Retry-After": str(too_soon.retry_after)},
        )
    except (ValidationError, PermissionError):  # revoked or changed since the check above
        return problem(409, "The key changed meanwhile; retry.")
    mail_self_rotation(key, caller.ip)
    until = key.previous_password_valid_until
    return JsonResponse(
        {
            "identifier": key.identifier,
            "password": password,
            "previous_password_valid_until": until.isoformat() if until else None,
        }
    )


def _refuse_rotation(request: HttpRequest, caller: check.Caller, reason: str) -> None:
    """Record why the key's rotation was refused, for its page (the caller proved a password)."""
    usage.record_refusal(
        identifier=caller.identifier,
        reason=reason,
        ip=caller.ip,
        path=request.path_info[:200],
        key_id=caller.key_id,
        proved=True,
    )


def mail_self_rotation(key: ApiKey, ip: str | None) -> None:
    """Tell the owner their key rotated itself (never the password): if their automation did
    not, someone holding the password did, and only the owner can take the key back. The
    rotation stands whether or not the mail goes out."""
    if not key.owner.email:
        return
    try:
        send_mail(
            subject=f"Your API key “{key.name}” rotated its password",
            message=render_to_string(
                "keys/self_rotated.txt",
                {
                    "key": key,
                    "ip": ip,
                    "at": timezone.now(),
                    "key_url": actions.portal_url("keys:detail", key),
                },
            ),
            from_email=None,
            recipient_list=[key.owner.email],
        )
    except Exception:
        logger.exception("Could not mail the owner of self-rotated key %s", key.identifier)


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
