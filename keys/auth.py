"""The one place API credentials are checked (DESIGN §4).

`authenticate(request, api)` returns a `Caller` or raises a `Refusal`, checking cheapest
first so that garbage, a throttled caller or an unknown IP never costs an Argon2 verification:

    parse + checksum -> throttle -> identifier -> status -> client IP -> password -> API grant

Every refusal before the password is verified is the same 401, whatever its reason; the
reason of each refusal of a known key is recorded for its owner (keys.usage), never sent.

Argon2 is only paid once per (key, password, revision): a successful verification is
remembered in the cache under an HMAC of identifier and password. The cache never holds a
decision: the key's status, allowlist and grants are read from the database on every request
(one indexed query), so a revocation or an edit counts on the very next request everywhere.
"""

import base64
import binascii
import datetime
import functools
import ipaddress
import json
import logging
import math
import re
import threading
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl, unquote_plus

from django.conf import settings
from django.core.cache import cache
from django.db import connections, models
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac
from django.views.decorators.debug import sensitive_variables

from keys import tokens, usage
from keys.client_ip import client_ip
from keys.models import ApiKey, ip_in_networks, local_date
from keys.problems import problem
from portal.cache_counters import cache_add, cache_incr

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
_VERIFIED_SALT = "keys.auth.verified-password"

WWW_AUTHENTICATE = 'Basic realm="Key Portal API", charset="UTF-8"'
UNAUTHORIZED_DETAIL = "Valid API key credentials are required (HTTP Basic: Identifier:Password)."

# Columns every check needs, read in one query through the unique identifier index. A key
# has few allowed IPs and APIs, so the joined rows (IPs x APIs) stay a handful.
_KEY_COLUMNS = (
    "pk",
    "name",
    "owner__is_active",
    "revision",
    "password_hash",
    "revoked_at",
    "expires_on",
    "allowed_ips__network",
    "apis__slug",
)


class Refusal(Exception):
    """A refused call: `reason` is for the record, `response()` is what the client sees."""

    def __init__(self, status: int, reason: str, *, retry_after: int | None = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after

    def response(self) -> HttpResponse:
        response = self._response()
        # Refusals are expected answers, recorded per key in aggregate (keys.usage); one
        # "Unauthorized" log line per call would let a flood drown the log.
        response._has_been_logged = True
        return response

    def _response(self) -> HttpResponse:
        if self.status == 401:
            return problem(401, UNAUTHORIZED_DETAIL, headers={"WWW-Authenticate": WWW_AUTHENTICATE})
        if self.status == 403:
            return problem(403, "This key is not granted the API it called.")
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


@dataclass(frozen=True)
class _KeyRow:
    key_id: int
    name: str
    owner_active: bool
    revision: int
    password_hash: str
    revoked: bool
    expires_on: datetime.date
    networks: frozenset[str]
    apis: frozenset[str]


# --- counters (read by bench/api_auth.py; cheap enough to be always on) -------------------

_counter_lock = threading.Lock()
argon2_verifications = 0


def _count_argon2() -> None:
    global argon2_verifications
    with _counter_lock:
        argon2_verifications += 1


# --- the checks --------------------------------------------------------------------------


@sensitive_variables("header", "credentials", "password")
def authenticate(request: HttpRequest, api: str) -> Caller:
    """Return the verified caller of `api` (a catalogue slug or ANY_API), or raise Refusal."""
    ip = client_ip(request)
    path = request.path_info[:200]
    if _credentials_outside_header(request):
        raise _unauthorized(ip)
    header = request.META.get("HTTP_AUTHORIZATION")
    if not header:
        # Not counted as a failure: many HTTP clients (Java's Authenticator, .NET without
        # PreAuthenticate) first ask without credentials and send them after the 401. It
        # costs no database or Argon2 work.
        raise Refusal(401, "no_credentials")
    credentials = parse_basic(header)
    if credentials is None:
        raise _unauthorized(ip)
    identifier, password = credentials

    # One cache round trip reads both the throttle counters and the verification cache.
    verified_name = _verified_cache_key(identifier, password)
    cached = _read_cache([*_throttle_names(ip, identifier), verified_name])
    if retry_after := throttled_for(ip, identifier, cached):
        _record_throttled(identifier, ip, path)
        raise Refusal(429, "throttled", retry_after=retry_after)

    row = _load_key(identifier)
    if row is None:
        raise _unauthorized(ip)

    def refuse(reason: str, status: int = 401) -> Refusal:
        usage.record_refusal(
            identifier=identifier, reason=reason, ip=ip, path=path, key_id=row.key_id
        )
        if status == 401:
            return _unauthorized(ip, reason)
        return Refusal(status, reason)

    if row.revoked:
        raise refuse("revoked")
    if row.expires_on < local_date():
        raise refuse("expired")
    if not row.owner_active:
        raise refuse("owner_inactive")
    if not _ip_allowed(ip, row.networks):
        raise refuse("ip_not_allowed")
    if not _password_verified(password, row, verified_name, cached.get(verified_name)):
        # Counted per identifier only here, from an allowed IP: the identifier is public,
        # so counting failures from anywhere would let anyone lock a key out.
        _count_failure(_identifier_bucket(identifier))
        raise refuse("bad_password")
    if api != ANY_API and api not in row.apis:
        raise refuse("api_not_granted", 403)
    return Caller(
        key_id=row.key_id,
        identifier=identifier,
        name=row.name,
        expires_on=row.expires_on,
        apis=row.apis,
        ip=ip,
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


def _key_query() -> models.QuerySet:
    return ApiKey.objects.filter(identifier=_PLACEHOLDER).order_by().values_list(*_KEY_COLUMNS)


_PLACEHOLDER = "identifier"


@functools.cache
def _key_sql(alias: str) -> str:
    """The SQL of _key_query(), compiled by the ORM once per process and database.

    Building and compiling the queryset costs several times what SQLite needs to run it,
    on every call of the API; the SQL itself never changes, only its one parameter.
    """
    sql, params = _key_query().query.get_compiler(using=alias).as_sql()
    assert params == (_PLACEHOLDER,), params
    return sql


def _load_key(identifier: str) -> _KeyRow | None:
    """Everything the checks need, in one query through the unique identifier index."""
    connection = connections[ApiKey.objects.db]
    with connection.cursor() as cursor:
        cursor.execute(_key_sql(connection.alias), [identifier])
        rows = cursor.fetchall()
    if not rows:
        return None
    pk, name, owner_active, revision, password_hash, revoked_at, expires_on = rows[0][:7]
    return _KeyRow(
        key_id=pk,
        name=name,
        owner_active=bool(owner_active),
        revision=revision,
        password_hash=password_hash,
        revoked=revoked_at is not None,
        expires_on=_DATE.to_python(expires_on),  # SQLite returns text
        networks=frozenset(row[7] for row in rows if row[7] is not None),
        apis=frozenset(row[8] for row in rows if row[8] is not None),
    )


_DATE = models.DateField()


def _ip_allowed(ip: str | None, networks: frozenset[str]) -> bool:
    if ip is None:
        return False  # no client IP determined: refused (DESIGN §4)
    if not networks:
        # Only possible with KEYS_REQUIRE_ALLOWED_IPS = False: the key allows any IP.
        return not settings.KEYS_REQUIRE_ALLOWED_IPS
    return ip_in_networks(ip, networks)


# --- the password and its verification cache ---------------------------------------------


def _verified_cache_key(identifier: str, password: str) -> str:
    # An HMAC under a key derived from SECRET_KEY: the cache never sees the password, and a
    # cache dump does not let anyone test guesses offline.
    mac = salted_hmac(_VERIFIED_SALT, f"{identifier}:{password}", algorithm="sha256")
    return "kp:verified:" + mac.hexdigest()


def _verified_token(row: _KeyRow) -> str:
    """What the cache remembers: this password verified for this key at this revision."""
    return f"{row.key_id}:{row.revision}:{row.password_hash[-12:]}"


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


def _read_cache(names: list[str]) -> dict:
    """The cached values of names; none at all while the cache is unavailable.

    A cache outage is a miss, never a pass: no throttle counts (Argon2 stays capped by the
    slots) and no remembered verification (the password is verified with Argon2).
    """
    try:
        return cache.get_many(names)
    except Exception:
        logger.warning("Cache unavailable; throttling off, verifying with Argon2", exc_info=True)
        return {}


@sensitive_variables("password")
def _password_verified(password: str, row: _KeyRow, cache_key: str, remembered: object) -> bool:
    """True if password is the key's: remembered under cache_key for this revision (as read
    by authenticate), or verified by Argon2 and then remembered."""
    token = _verified_token(row)
    if isinstance(remembered, str) and constant_time_compare(remembered, token):
        return True

    slots = _verification_slots()
    if not slots.acquire(timeout=VERIFICATION_WAIT_SECONDS):
        raise Refusal(503, "busy", retry_after=1)
    try:
        _count_argon2()
        verified = tokens.verify_password(row.password_hash, password)
        if verified and tokens.needs_rehash(row.password_hash):
            row = _upgrade_hash(row, password)
            token = _verified_token(row)
    finally:
        slots.release()
    if verified:
        try:
            cache.set(cache_key, token, settings.KEYS_VERIFICATION_CACHE_SECONDS)
        except Exception:
            logger.warning("Verification cache unavailable", exc_info=True)
    return verified


@sensitive_variables("password")
def _upgrade_hash(row: _KeyRow, password: str) -> _KeyRow:
    """Re-hash with the current Argon2 parameters (only if nobody changed it meanwhile)."""
    new_hash = tokens.hash_password(password)
    updated = ApiKey.objects.filter(pk=row.key_id, password_hash=row.password_hash).update(
        password_hash=new_hash
    )
    if not updated:
        return row
    return replace(row, password_hash=new_hash)


# --- throttling --------------------------------------------------------------------------


def _ip_bucket(ip: str | None) -> str | None:
    if ip is None:
        return None
    try:
        address = ipaddress.ip_address(ip.partition("%")[0])
    except ValueError:
        return f"kp:fail-ip:{ip}"
    if address.version == 6:
        # One IPv6 host usually holds a whole /64: count the /64, not each address in it.
        return "kp:fail-ip:" + str(ipaddress.ip_network(f"{address}/64", strict=False))
    return f"kp:fail-ip:{address}"


def _identifier_bucket(identifier: str) -> str:
    return f"kp:fail-id:{identifier}"


def _throttle_limits(ip: str | None, identifier: str) -> dict[str, int]:
    return {
        bucket: limit
        for bucket, limit in (
            (_ip_bucket(ip), settings.KEYS_THROTTLE_MAX_FAILURES_PER_IP),
            (_identifier_bucket(identifier), settings.KEYS_THROTTLE_MAX_FAILURES_PER_KEY),
        )
        if bucket is not None
    }


def _throttle_names(ip: str | None, identifier: str) -> list[str]:
    """The cache entries throttled_for() reads."""
    return [
        name for bucket in _throttle_limits(ip, identifier) for name in (bucket, bucket + ":since")
    ]


def throttled_for(ip: str | None, identifier: str, values: dict) -> int:
    """Seconds the caller must wait, or 0 if neither its IP nor the identifier is throttled.

    Each bucket's window opens at its first failure and lasts KEYS_THROTTLE_WINDOW_SECONDS;
    its `:since` entry says when it opened, so Retry-After tells exactly when it closes.
    `values` holds the entries of _throttle_names() as read from the cache.
    """
    limits = _throttle_limits(ip, identifier)
    now = timezone.now().timestamp()
    window = settings.KEYS_THROTTLE_WINDOW_SECONDS
    waits = [
        math.ceil(values.get(bucket + ":since", now) + window - now)
        for bucket, limit in limits.items()
        if values.get(bucket, 0) >= limit
    ]
    return max(1, *waits) if waits else 0


def _record_throttled(identifier: str, ip: str | None, path: str) -> None:
    """Record a 429 for the key the identifier names, if it names one.

    The caller is already over a limit and the identifier may be made up: nothing is
    written to the cache for an unknown one (a flood of made-up identifiers must not push
    the throttle counters out of a size-bounded cache), and it is looked up at most once a
    second per client network.
    """
    if usage.count_repeat(identifier, "throttled"):
        return
    if not cache_add(f"kp:throttled-lookup:{_ip_bucket(ip)}", 1):
        return
    key_id = ApiKey.objects.filter(identifier=identifier).values_list("pk", flat=True).first()
    if key_id is not None:
        usage.record_refusal(
            identifier=identifier, reason="throttled", ip=ip, path=path, key_id=key_id
        )


def _count_failure(bucket: str | None) -> None:
    if bucket is None:
        return
    window = settings.KEYS_THROTTLE_WINDOW_SECONDS
    if cache_incr(bucket, timeout=window) == 1:  # this failure opens the window
        cache_add(bucket + ":since", window, value=timezone.now().timestamp())


def _unauthorized(ip: str | None, reason: str = "unauthorized") -> Refusal:
    """The one 401 for every failure before the password is verified; counted per IP."""
    _count_failure(_ip_bucket(ip))
    return Refusal(401, reason)
