"""The one place API credentials are checked (docs/design.md §4).

`authenticate(request, api)` returns a `Caller` or raises a `Refusal`, checking cheapest
first so that garbage, a throttled caller or an unknown IP never costs an Argon2 verification:

    parse + checksum -> throttle -> identifier -> status (and key policy) -> client IP ->
    password -> API grant

The demo API names its API; the gateway check (keys/api/gateway.py) passes the request it was
asked about, whose API the route table decides at the last step. The grant's access decides
the method: read only allows GET, HEAD and OPTIONS.

Every refusal before the password is verified is the same 401, whatever its reason; the
reason of each refusal of a known key is recorded for its owner (keys.api.usage), never sent.
Failures are counted by keys.lib.throttle, per client network and per identifier.

Argon2 is only paid once per (key, password, revision): a successful verification is
remembered in the cache under an HMAC of identifier and password, and each process keeps its
own copy for a while, so a warm call makes no cache round trip at all. The cache never holds a
decision: the key's status, allowlist and grants are read from the database on every request
(one indexed query), so a revocation or an edit counts on the very next request everywhere.
A remembered password also gets in while its network or identifier is throttled, so nobody
else's failures can shut out an integration that works; one not remembered gets one try per
window while only its identifier is locked (keys.lib.throttle).
"""

import base64
import binascii
import datetime
import json
import logging
import re
import threading
from dataclasses import dataclass, replace
from typing import TypeGuard
from urllib.parse import parse_qsl, unquote_plus

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac
from django.views.decorators.debug import sensitive_variables

from keys import tokens
from keys.api import routes as route_table
from keys.api import usage
from keys.api.key_read import KeyRow, read_key
from keys.api.problems import problem
from keys.lib import throttle
from keys.lib.cache_counters import cache_get_many, here
from keys.lib.client_ip import client_ip
from keys.lib.networks import ip_in_networks
from keys.lib.routes import api_for
from keys.models import ApiKey, KeyGrant

logger = logging.getLogger(__name__)

# The marker an endpoint declares when any valid key may call it (whoami).
ANY_API = "*"

# Longest Authorization header worth decoding: "Basic " + base64 of ID:PASSWORD is 146.
MAX_AUTHORIZATION_LENGTH = 200
# Longest body inspected for stray credentials; the API is read-only, bodies are never needed.
MAX_INSPECTED_BODY = 64 * 1024
# How long a request waits for an Argon2 slot before it gets 503.
VERIFICATION_WAIT_SECONDS = 0.5

_BASIC_RE = re.compile(r"[Bb][Aa][Ss][Ii][Cc] ([A-Za-z0-9+/]+={0,2})")
_TOKEN_RE = re.compile(r"ck(?:id|pw)_", re.IGNORECASE)
_CREDENTIAL_NAME_RE = re.compile(
    r"pass|pwd|secret|token|api[-_]?key|identifier|credential|auth", re.IGNORECASE
)
# Named after this module's old path; renaming it would void every cached verification.
_VERIFIED_SALT = "keys.auth.verified-password"

# The one 401 reason that is not a failure (see _check).
NO_CREDENTIALS = "no_credentials"
# 401s that cost nothing but parsing (no cache, database or Argon2 work), so counting them
# would only add a cache round trip to a flood of garbage: they are not counted.
FREE_REFUSALS = {NO_CREDENTIALS, "malformed", "credentials_outside_header"}
# Refused because the database holds a hash Argon2 cannot parse: not the caller's failure.
STORED_HASH_UNUSABLE = "stored_hash_unusable"
# Which of a key's passwords a caller proved (step 6).
CURRENT, PREVIOUS = "current", "previous"

WWW_AUTHENTICATE = 'Basic realm="Key Portal API", charset="UTF-8"'
# One body for every 401: it names what a call needs and where its owner reads why it was
# refused, never which check failed.
UNAUTHORIZED_DETAIL = (
    "Valid API key credentials are required (HTTP Basic: Identifier:Password), sent from one "
    "of the key's allowed IPs. See the key's page in the portal for why this call was refused."
)


# The 403s: a verified key from an allowed IP, refused for what it asked.
FORBIDDEN_DETAILS = {
    "api_not_granted": "This key is not granted the API it called.",
    "method_not_granted": "This key may only read this API (GET, HEAD, OPTIONS).",
    "no_route": "No API of the catalogue serves this path.",
    "path_not_canonical": "The path has dot or empty segments, escaped slashes or control "
    "characters; send it in its plain form.",
}


@dataclass(frozen=True)
class GatewayRequest:
    """The request a gateway asks about: its method, host, path (decoded, or None if it is
    not in canonical form, see keys.lib.routes) and query string."""

    method: str
    host: str
    path: str | None
    query: str = ""
    raw_path: str = ""  # for the record: what the gateway sent, cut short


class Refusal(Exception):
    """A refused call: `reason` is for the record, `response()` is what the client sees."""

    def __init__(self, status: int, reason: str, *, retry_after: int | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after

    def response(self) -> HttpResponse:
        response = self._response()
        # Refusals are expected answers, recorded per key in aggregate (keys.api.usage); one
        # "Unauthorized" log line per call would let a flood drown the log.
        response._has_been_logged = True  # type: ignore[attr-defined]  # Django's, not in django-stubs
        return response

    def _response(self) -> HttpResponse:
        if self.status == 401:
            return problem(401, UNAUTHORIZED_DETAIL, headers={"WWW-Authenticate": WWW_AUTHENTICATE})
        if self.status == 403:
            return problem(
                403, FORBIDDEN_DETAILS.get(self.reason, FORBIDDEN_DETAILS["api_not_granted"])
            )
        headers = {"Retry-After": str(self.retry_after or 1)}
        if self.status == 429:
            return problem(429, "Too many failed attempts; retry later.", headers=headers)
        if self.status == 413:
            return problem(413, "Requests to this API carry no body.")
        return problem(self.status, "Busy verifying credentials; retry shortly.", headers=headers)


@dataclass(frozen=True)
class Caller:
    """A verified key calling from an allowed IP, with what the endpoints may show of it."""

    key_id: int
    identifier: str
    name: str
    expires_on: datetime.date
    apis: frozenset[str]
    ip: str
    may_rotate_itself: bool = False
    owner: str = ""  # the owner's user name
    api: str | None = None  # the catalogue API called (None for whoami, self-rotation)
    access: str | None = None  # how the key holds it: "read" or "write"
    # Authenticated with the previous password, during the overlap after a regeneration: it
    # still opens the key, but may not rotate it (keys.api.views.self_rotate).
    previous_password: bool = False


# --- the checks --------------------------------------------------------------------------


def authenticate(request: HttpRequest, api: "str | GatewayRequest") -> Caller:
    """Return the verified caller of `api` (a catalogue slug, ANY_API, or the request a
    gateway asks about), or raise Refusal.

    Every 401 that cost a lookup counts a failure against the client network; garbage that
    fails its parse or checksum costs nothing and is not counted.
    """
    ip = client_ip(request)
    try:
        return _check(request, api, ip)
    except Refusal as refusal:
        if refusal.status == 401 and refusal.reason not in {*FREE_REFUSALS, STORED_HASH_UNUSABLE}:
            throttle.count_failure(throttle.api_network(ip))
        raise


@sensitive_variables("header", "credentials", "password")
def _check(request: HttpRequest, api: "str | GatewayRequest", ip: str | None) -> Caller:
    if isinstance(api, GatewayRequest):
        method, path = api.method, api.raw_path[:200]
        stray = _looks_like_credentials(api.query) if api.query else False
    else:
        method, path = request.method or "GET", request.path_info[:200]
        stray = _credentials_outside_header(request)

    # 1. parse and checksum: no database, cache or Argon2 work for garbage
    if stray:
        raise Refusal(401, "credentials_outside_header")
    header = request.META.get("HTTP_AUTHORIZATION")
    if not header:
        # Not a failure: many HTTP clients (Java's Authenticator, .NET without
        # PreAuthenticate) first ask without credentials and send them after the 401. It
        # costs no database or Argon2 work.
        raise Refusal(401, NO_CREDENTIALS)
    credentials = parse_basic(header)
    if credentials is None:
        raise Refusal(401, "malformed")
    identifier, password = credentials

    # 2. throttle, per client network and per identifier; the same cache round trip reads
    # whether this password was verified before. A password this process remembers skips
    # it: whether it is still good for the key is decided in step 6, from the database row.
    verified_name = _verified_cache_key(identifier, password)
    remembered = here.get(verified_name)
    retry_after = None  # unknown until the shared cache is read
    one_try = False
    if remembered is None:
        retry_after, remembered, one_try = _shared_state(ip, identifier, verified_name)
        if retry_after and remembered is None and not one_try:
            usage.record_throttled(identifier=identifier, ip=ip, path=path)
            raise Refusal(429, "throttled", retry_after=retry_after)
    # A caller whose password is remembered goes on while throttled, so that neither a
    # misbehaving neighbour on its network nor someone hammering its (public) identifier
    # shuts it out; step 6 accepts it only from the cache, never with Argon2. A caller
    # whose network may take its one try this window (keys.lib.throttle) goes on too.

    # 3. identifier
    row = read_key(identifier)
    if row is None:
        raise Refusal(401, "unknown_identifier")

    def record_refusal(reason: str, status: int = 401, *, proved=False, **kwargs) -> Refusal:
        """The refusal of this known key, recorded for its owner (never sent); `proved`: the
        caller proved it holds the password (else it may be anyone who read the identifier)."""
        usage.record_refusal(
            identifier=identifier,
            reason=reason,
            ip=ip,
            path=path,
            key_id=row.key_id,
            proved=proved,
        )
        return Refusal(status, reason, **kwargs)

    # 4. status: revoked (or replaced, past its overlap), expired; the owner still active;
    # neither waiting for approval nor out of the key policy
    now = timezone.now()
    match row.status(now):
        case ApiKey.Status.REVOKED:
            raise record_refusal("revoked")
        case ApiKey.Status.EXPIRED:
            raise record_refusal("expired")
    if not row.owner_active:
        raise record_refusal("owner_inactive")
    # the key policy: flags kept by keys.actions and read with the key, so no extra query
    if row.awaiting_approval:
        raise record_refusal("pending_approval")
    if row.out_of_policy:
        raise record_refusal("out_of_policy")

    # 5. client IP in the allowlist. The password is not verified for an address that is not
    # allowed (no Argon2 for it); only a verification remembered for the current password
    # proves the caller, and only then does the key page offer to allow the address.
    if not _ip_allowed(ip, row.networks):
        raise record_refusal("ip_not_allowed", proved=_remembered(remembered, row, now) == CURRENT)

    # 6. password (the current one, or the previous one while its overlap runs): remembered
    # for this revision of the key, else Argon2 (not while throttled)
    if retry_after is None and not _remembered(remembered, row, now):
        # this process remembers it for another revision: the shared cache decides
        retry_after, remembered, one_try = _shared_state(ip, identifier, verified_name)
    if which := _remembered(remembered, row, now):
        if retry_after:
            _remember_longer(verified_name)  # an integration under attack stays in
    elif retry_after and not (one_try and throttle.take_one_try(ip, identifier)):
        raise record_refusal("throttled", 429, retry_after=retry_after)
    elif not (which := _verify_password(password, row, verified_name, now, record_refusal)):
        # Counted per identifier only here, from an allowed IP: the identifier is public,
        # so counting failures from anywhere would let anyone lock a key out. A network that
        # failed has no one try left in this window.
        throttle.count_failure(throttle.api_identifier(identifier))
        throttle.take_one_try(ip, identifier)
        raise record_refusal("bad_password")

    # 7. API granted, for this method
    if isinstance(api, GatewayRequest):
        if api.path is None:
            raise record_refusal("path_not_canonical", 403, proved=True)
        routed = api_for(route_table.table(row.routes_revision), api.host, api.path)
        if routed is None:
            raise record_refusal("no_route", 403, proved=True)
        api = routed
    access = None
    if api != ANY_API:
        access = row.access(api)
        if access is None:
            raise record_refusal("api_not_granted", 403, proved=True)
        if not KeyGrant.allows(access, method):
            raise record_refusal("method_not_granted", 403, proved=True)
    return Caller(
        key_id=row.key_id,
        identifier=identifier,
        name=row.name,
        expires_on=row.expires_on,
        apis=row.apis,
        ip=ip,
        may_rotate_itself=row.may_rotate_itself,
        owner=row.owner,
        api=None if api == ANY_API else api,
        access=access,
        previous_password=which == PREVIOUS,
    )


@sensitive_variables("header", "decoded", "password")
def parse_basic(header: str | None) -> tuple[str, str] | None:
    """(identifier, password) from an HTTP Basic header whose tokens check out, else None.

    Fails closed on anything odd: another scheme, stray whitespace, bad base64, non-ASCII,
    no colon, a token of the wrong shape or checksum, a password naming another key.
    Length is capped before decoding.
    """
    if not header or len(header) > MAX_AUTHORIZATION_LENGTH:
        return None
    match = _BASIC_RE.fullmatch(header)
    if match is None:
        return None
    try:
        decoded = base64.b64decode(match.group(1), validate=True).decode("ascii")
    except (binascii.Error, ValueError):
        return None
    identifier, colon, password = decoded.partition(":")
    if not colon or not tokens.is_identifier(identifier) or not tokens.is_password(password):
        return None
    if not tokens.may_belong_to(password, identifier):
        return None  # a password that names another key: refused before any lookup
    return identifier, password


def _credentials_outside_header(request: HttpRequest) -> bool:
    """True if the query string or body carries something credential-like.

    Such a request is refused, and never echoed: the credential may already sit in a proxy
    log, and a client that sends it there must learn to stop.
    """
    query = request.META.get("QUERY_STRING", "")
    if query and _looks_like_credentials(query):
        return True
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length <= 0:
        return False
    if length > MAX_INSPECTED_BODY:
        raise Refusal(413, "body_too_large")
    try:
        body = request.body
    except OSError:  # the client went away mid-body
        return True
    return _looks_like_credentials(body.decode("latin-1"))


def _looks_like_credentials(text: str) -> bool:
    if _TOKEN_RE.search(text) or _TOKEN_RE.search(unquote_plus(text)):
        return True
    names = [name for name, _value in parse_qsl(text, keep_blank_values=True)]
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
        document = None
    if isinstance(document, dict):
        names.extend(str(name) for name in document)
    return any(_CREDENTIAL_NAME_RE.search(name) for name in names)


def _ip_allowed(ip: str | None, networks: frozenset[str]) -> TypeGuard[str]:
    """True if ip (an address, then) may call with a key allowing these networks."""
    if ip is None:
        return False  # no client IP determined: refused (docs/design.md §4)
    if not networks:
        # Only possible with KEYS_REQUIRE_ALLOWED_IPS = False: the key allows any IP.
        return not settings.KEYS_REQUIRE_ALLOWED_IPS
    return ip_in_networks(ip, networks)


# --- the password and its verification cache ---------------------------------------------


def _shared_state(ip: str | None, identifier: str, verified_name: str) -> tuple[int, object, bool]:
    """(seconds the caller is throttled for, the shared cache's verification of the password,
    whether its network may take its one try while throttled), in one round trip; the
    verification is kept in this process too."""
    buckets = throttle.api_buckets(ip, identifier)
    gate = throttle.api_one_try(ip, identifier)
    gates = [gate.name] if gate else []
    cached = cache_get_many([*throttle.cache_names(buckets), *gates, verified_name])
    remembered = cached.get(verified_name)
    if remembered is not None:
        here.set(verified_name, remembered, _remembered_here_seconds())
    retry_after = throttle.retry_after(buckets, cached)
    return (
        retry_after,
        remembered,
        bool(retry_after) and throttle.one_try_open(ip, identifier, cached),
    )


def _verified_cache_key(identifier: str, password: str) -> str:
    # An HMAC under a key derived from SECRET_KEY: the cache never sees the password, and a
    # cache dump does not let anyone test guesses offline.
    mac = salted_hmac(_VERIFIED_SALT, f"{identifier}:{password}", algorithm="sha256")
    return "kp:verified:" + mac.hexdigest()


def _verified_token(row: KeyRow, *, previous: bool = False) -> str:
    """What the cache remembers: this password verified for this key at this revision, as
    its current password or as its previous one (during the overlap after a regeneration)."""
    if previous:
        return f"{row.key_id}:{row.revision}:previous:{row.previous_password_hash[-12:]}"
    return f"{row.key_id}:{row.revision}:{row.password_hash[-12:]}"


def _remembered(remembered: object, row: KeyRow, now: datetime.datetime) -> str | None:
    """Which password the cache remembers as verified for the key's current revision:
    CURRENT, PREVIOUS or None.

    A previous password counts only while its overlap runs: the end is the database's value
    read with this call, so no cache entry outlives it on any server."""
    if not isinstance(remembered, str):
        return None
    if constant_time_compare(remembered, _verified_token(row)):
        return CURRENT
    if row.previous_password_works(now) and constant_time_compare(
        remembered, _verified_token(row, previous=True)
    ):
        return PREVIOUS
    return None


def _remembered_here_seconds() -> int:
    """How long this process keeps a verification it read from the shared cache without
    asking again: half the shared entry's life, so that an entry kept alive while throttled
    (_remember_longer, on each shared read) is found alive by the next read. (A copy read
    late in an untouched entry's life can outlast it; a throttle starting just then makes
    that caller wait for its window, where it could have been verified again just before.)"""
    return max(1, settings.KEYS_VERIFICATION_CACHE_SECONDS // 2)


def _remember_longer(cache_key: str) -> None:
    try:
        cache.touch(cache_key, settings.KEYS_VERIFICATION_CACHE_SECONDS)
    except Exception:
        logger.warning("Verification cache unavailable", exc_info=True)


_slots_lock = threading.Lock()
_slots: tuple[int, threading.BoundedSemaphore] | None = None


def _verification_slots() -> threading.BoundedSemaphore:
    """This process's Argon2 slots, sized by KEYS_MAX_CONCURRENT_VERIFICATIONS."""
    global _slots
    size = settings.KEYS_MAX_CONCURRENT_VERIFICATIONS
    with _slots_lock:
        if _slots is None or _slots[0] != size:
            _slots = (size, threading.BoundedSemaphore(size))
        return _slots[1]


@sensitive_variables("password")
def _verify_password(
    password: str, row: KeyRow, cache_key: str, now: datetime.datetime, record_refusal
) -> str | None:
    """CURRENT if Argon2 verifies password against the key's hash, PREVIOUS if against its
    previous hash during an overlap, else None; a verified one is remembered under
    cache_key. At most KEYS_MAX_CONCURRENT_VERIFICATIONS run at once in a process."""
    slots = _verification_slots()
    if not slots.acquire(timeout=VERIFICATION_WAIT_SECONDS):
        raise Refusal(503, "busy", retry_after=1)
    token = which = None
    try:
        if _matches(row.password_hash, password, row, record_refusal):
            if tokens.needs_rehash(row.password_hash):
                row = _upgrade_hash(row, password)
            token, which = _verified_token(row), CURRENT
        elif row.previous_password_works(now) and _matches(
            row.previous_password_hash, password, row, record_refusal
        ):
            token, which = _verified_token(row, previous=True), PREVIOUS
    finally:
        slots.release()
    if token is not None:
        here.set(cache_key, token, _remembered_here_seconds())
        try:
            cache.set(cache_key, token, settings.KEYS_VERIFICATION_CACHE_SECONDS)
        except Exception:
            logger.warning("Verification cache unavailable", exc_info=True)
    return which


@sensitive_variables("password")
def _matches(stored_hash: str, password: str, row: KeyRow, record_refusal) -> bool:
    """Argon2's answer; a stored hash that cannot be parsed is an error naming the key, and
    a refusal that is not counted against the caller (it is not their wrong password)."""
    try:
        return tokens.verify_password(stored_hash, password)
    except tokens.StoredHashUnusable:
        logger.error("API key #%s: its stored password hash cannot be parsed", row.key_id)
        raise record_refusal(STORED_HASH_UNUSABLE) from None


@sensitive_variables("password")
def _upgrade_hash(row: KeyRow, password: str) -> KeyRow:
    """Re-hash with the current Argon2 parameters (only if nobody changed it meanwhile)."""
    new_hash = tokens.hash_password(password)
    updated = ApiKey.objects.filter(pk=row.key_id, password_hash=row.password_hash).update(
        password_hash=new_hash
    )
    if not updated:
        return row
    return replace(row, password_hash=new_hash)
