"""/gateway/verify: may this request through? Asked by a gateway for each request to the
services it guards (nginx auth_request, Caddy forward_auth, Traefik ForwardAuth, Envoy
ext_authz over HTTP), answered by the one credential check of the API (docs/design.md §9).

Only a trusted proxy (KEYS_TRUSTED_PROXIES) is answered; anyone else gets 404, so the check
cannot be used to test passwords from outside. The original request comes from the gateway's
headers: X-Forwarded-Method / X-Forwarded-Uri / X-Forwarded-Host (Traefik, Caddy) or
X-Original-Method / X-Original-URI (nginx), or, in Envoy's style, the path after
/gateway/verify with the request's own method. A gateway passes the client's own headers
along, so a client may send the other dialect's headers itself: if two sources disagree,
the request is refused (403) rather than one of them believed.
"""

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_cache_control
from django.views.decorators.csrf import csrf_exempt

from keys.api import check, usage
from keys.api.problems import problem
from keys.lib.client_ip import from_trusted_proxy
from keys.lib.routes import canonical_path, normal_host

PREFIX = "/gateway/verify"

# Pairs of headers (as request.META names them) that say the same thing in two dialects.
METHOD_HEADERS = ("HTTP_X_FORWARDED_METHOD", "HTTP_X_ORIGINAL_METHOD")
URI_HEADERS = ("HTTP_X_FORWARDED_URI", "HTTP_X_ORIGINAL_URI")
MAX_URI = 8192


class Disagreement(Exception):
    """The gateway's headers name two different original requests."""


def _one(request: HttpRequest, names: tuple[str, ...], *also: str | None) -> str | None:
    """The value the headers `names` (and `also`, values from elsewhere) agree on, or None
    if none is present; raise Disagreement if two differ."""
    values = {request.META[name] for name in names if name in request.META}
    values.update(value for value in also if value is not None)
    if len(values) > 1:
        raise Disagreement
    return values.pop() if values else None


def original_request(request: HttpRequest, envoy_path: str | None) -> check.GatewayRequest | None:
    """The request the gateway asks about, or None if it did not say which."""
    envoy_uri = None
    if envoy_path is not None:
        # The raw URI (gunicorn's RAW_URI) keeps escapes that PATH_INFO has decoded.
        raw = request.META.get("RAW_URI") or request.get_full_path()
        envoy_uri = raw[len(PREFIX) :] if raw.startswith(PREFIX + "/") else None
        if envoy_uri is None:
            return None
    method = _one(request, METHOD_HEADERS, request.method if envoy_path is not None else None)
    uri = _one(request, URI_HEADERS, envoy_uri)
    if uri is None or len(uri) > MAX_URI:
        return None
    host = request.META.get("HTTP_X_FORWARDED_HOST")
    if host is None and envoy_path is not None:
        host = request.META.get("HTTP_HOST")  # Envoy keeps the original authority
    if host is not None and "," in host:
        raise Disagreement  # several hops each named a host: which one is meant?
    path, _question, query = uri.partition("?")
    return check.GatewayRequest(
        method=(method or request.method or "GET").upper(),
        host=normal_host(host),
        path=canonical_path(path),
        query=query,
        raw_path=path,
    )


@csrf_exempt  # asked by a gateway with any method; no cookie can authenticate it
def verify(request: HttpRequest, envoy_path: str | None = None) -> HttpResponse:
    """200 with the key's identity headers if the original request may pass, else the
    API's 401, 403 or 429 problem document."""
    if not from_trusted_proxy(request):
        return problem(404)
    try:
        target = original_request(request, envoy_path)
    except Disagreement:
        return _no_store(
            problem(403, "The gateway's headers name two different original requests.")
        )
    if target is None:
        return _no_store(
            problem(
                400,
                "Send the original request in X-Forwarded-Uri (or X-Original-URI) and "
                "X-Forwarded-Method (or X-Original-Method), or ask /gateway/verify/<path>.",
            )
        )
    try:
        caller = check.authenticate(request, target)
    except check.Refusal as refusal:
        return _no_store(refusal.response())
    usage.record_use(caller.key_id, caller.ip, api=caller.api)
    response = HttpResponse(status=200)
    response["X-Key-Identifier"] = caller.identifier
    response["X-Key-Name"] = caller.name
    response["X-Key-Owner"] = caller.owner
    response["X-Key-Api"] = caller.api or ""
    response["X-Key-Access"] = caller.access or ""
    seconds = settings.KEYS_GATEWAY_CACHE_SECONDS
    if seconds > 0:
        # The gateway may reuse this yes that long: then that is the revocation delay.
        patch_cache_control(response, max_age=seconds)
    else:
        _no_store(response)
    return response


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    return response


class GatewayMiddleware:
    """Answer the gateway check ahead of the page machinery (first in MIDDLEWARE).

    A gateway asks once per request to the services it guards, so the check should cost no
    more than the portal's own /healthz: it needs no session, CSRF token, user, messages,
    htmx or static files, and takes no URL resolving. Errors still become problem documents
    (handler500, portal/errors.py: 503 for an unreachable database). The URLconf routes the
    same paths to the same view, so nothing depends on this shortcut but speed.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if path == PREFIX:
            return verify(request)
        if path.startswith(PREFIX + "/"):
            return verify(request, path[len(PREFIX) :])
        return self.get_response(request)
