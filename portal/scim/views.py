"""The SCIM door: /scim/v2/Users and the discovery documents, behind one bearer token.

Every answer is application/scim+json; every refusal an RFC 7644 §3.12 error document, since
that is what Entra ID and Okta read into their provisioning logs. With SCIM_TOKEN unset the
door does not exist (404). A wrong token is a 401 counted per client network in the one
failure throttle (keys.lib.throttle.scim_network); a network past its limit gets 429 with
Retry-After until the window closes, before its token is even compared.
"""

import functools
import hashlib
import hmac
import json
import uuid

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.csrf import csrf_exempt

from keys.lib import throttle
from keys.lib.client_ip import client_ip
from portal.models import ScimIdentity
from portal.scim import discovery, provisioning
from portal.scim.protocol import (
    CONTENT_TYPE,
    LIST_SCHEMA,
    ScimError,
    apply_patch,
    bad,
    parse_body,
    parse_filter,
    resource,
    user_from_resource,
)

MAX_PAGE = 100  # ServiceProviderConfig's filter.maxResults says the same


def scim_response(document: dict | None, status: int = 200, **headers: str) -> HttpResponse:
    content = json.dumps(document) if document is not None else b""
    response = HttpResponse(content, status=status, content_type=CONTENT_TYPE, headers=headers)
    add_never_cache_headers(response)
    return response


def error_response(error: ScimError, **headers: str) -> HttpResponse:
    return scim_response(error.document(), status=error.status, **headers)


def token_matches(request: HttpRequest, token: str) -> bool:
    """True if the request carries `Authorization: Bearer <token>` (compared in constant time)."""
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    # Digests of both, so that not even the token's length shows in the time taken.
    given, wanted = (hashlib.sha256(t.encode()).digest() for t in (presented.strip(), token))
    return scheme.lower() == "bearer" and hmac.compare_digest(given, wanted)


def scim_endpoint(view):
    """The bearer token, the throttle and SCIM errors around a view; 404 with SCIM off."""

    @csrf_exempt
    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not settings.SCIM_TOKEN:
            raise Http404("SCIM is not configured.")
        bucket = throttle.scim_network(client_ip(request))
        if bucket is not None and (wait := throttle.locked_for([bucket])):
            too_many = ScimError(429, f"Too many wrong tokens; try again in {wait} seconds.")
            return error_response(too_many, **{"Retry-After": str(wait)})
        if not token_matches(request, settings.SCIM_TOKEN):
            throttle.count_failure(bucket)
            unauthorized = ScimError(401, "A valid bearer token is required.")
            return error_response(unauthorized, **{"WWW-Authenticate": 'Bearer realm="SCIM"'})
        try:
            return view(request, *args, **kwargs)
        except ScimError as error:
            return error_response(error)
        except RequestDataTooBig:
            return error_response(ScimError(413, "The request body is too large."))

    return wrapped


def _not_allowed(allowed: str) -> HttpResponse:
    error = ScimError(405, f"Allowed methods: {allowed}.")
    return error_response(error, Allow=allowed)


def _location(request: HttpRequest, identity: ScimIdentity) -> str:
    return request.build_absolute_uri(f"/scim/v2/Users/{identity.scim_id}")


def _document(request: HttpRequest, identity: ScimIdentity) -> dict:
    user = identity.user
    return resource(
        provisioning.as_scim(user, identity),
        scim_id=str(identity.scim_id),
        location=_location(request, identity),
        created=user.date_joined.isoformat(),
    )


def _found(scim_id: str) -> ScimIdentity:
    try:
        wanted = uuid.UUID(scim_id)
    except ValueError:
        raise ScimError(404, "No such user.") from None
    identity = (
        ScimIdentity.objects.select_related("user").filter(scim_id=wanted, deleted_at=None).first()
    )
    if identity is None:
        raise ScimError(404, "No such user.")
    return identity


@scim_endpoint
def users(request: HttpRequest) -> HttpResponse:
    """GET: list, filtered and paged; POST: create."""
    if request.method == "GET":
        return _list(request)
    if request.method == "POST":
        wanted = user_from_resource(parse_body(request.body))
        identity = provisioning.create_user(wanted, ip=client_ip(request))
        location = _location(request, identity)
        return scim_response(_document(request, identity), status=201, Location=location)
    return _not_allowed("GET, POST")


@scim_endpoint
def user(request: HttpRequest, scim_id: str) -> HttpResponse:
    """GET: read; PUT: replace; PATCH: change; DELETE: deactivate and forget."""
    if request.method not in {"GET", "PUT", "PATCH", "DELETE"}:
        return _not_allowed("GET, PUT, PATCH, DELETE")
    identity = _found(scim_id)
    ip = client_ip(request)
    if request.method == "PUT":
        wanted = user_from_resource(parse_body(request.body), active=identity.user.is_active)
        identity = provisioning.update_user(identity, wanted, ip=ip)
    elif request.method == "PATCH":
        current = provisioning.as_scim(identity.user, identity)
        wanted = apply_patch(current, parse_body(request.body))
        identity = provisioning.update_user(identity, wanted, ip=ip)
    elif request.method == "DELETE":
        provisioning.delete_user(identity, ip=ip)
        return scim_response(None, status=204)
    return scim_response(_document(request, identity))


def _whole_number(request: HttpRequest, name: str, default: int) -> int:
    value = request.GET.get(name, "")
    if value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise bad(f"{name} must be a whole number.") from None


def _list(request: HttpRequest) -> HttpResponse:
    # RFC 7644 §3.4.2.4: startIndex below 1 counts as 1, a negative count as 0.
    start = max(1, _whole_number(request, "startIndex", 1))
    count = min(MAX_PAGE, max(0, _whole_number(request, "count", MAX_PAGE)))
    people = provisioning.User.objects.exclude(scim_identity__deleted_at__isnull=False)
    if text := request.GET.get("filter", "").strip():
        attribute, value = parse_filter(text)
        lookup = {
            "userName": {"username__iexact": value},
            "externalId": {"scim_identity__external_id": value},
            "emails": {"email__iexact": value},
        }[attribute]
        people = people.filter(**lookup)
    total = people.count()
    # Past the end is an empty page, never an OFFSET too big for the database's integers.
    page = list(people.order_by("pk")[start - 1 : start - 1 + count]) if start <= total else []
    documents = [_document(request, identity) for identity in provisioning.identities_of(page)]
    return scim_response(
        {
            "schemas": [LIST_SCHEMA],
            "totalResults": total,
            "startIndex": start,
            "itemsPerPage": len(documents),
            "Resources": documents,
        }
    )


@scim_endpoint
def service_provider_config(request: HttpRequest) -> HttpResponse:
    if request.method != "GET":
        return _not_allowed("GET")
    return scim_response(discovery.service_provider_config(request))


@scim_endpoint
def resource_types(request: HttpRequest, name: str | None = None) -> HttpResponse:
    if request.method != "GET":
        return _not_allowed("GET")
    return scim_response(discovery.resource_types(request, name))


@scim_endpoint
def schemas(request: HttpRequest, urn: str | None = None) -> HttpResponse:
    if request.method != "GET":
        return _not_allowed("GET")
    return scim_response(discovery.schemas(request, urn))


@scim_endpoint
def unknown(request: HttpRequest, rest: str) -> HttpResponse:
    """Anything else under /scim/v2/ (Groups, Bulk, /Me): not here, in SCIM's own words."""
    raise ScimError(404, f"/scim/v2/{rest} is not supported: only Users.")
