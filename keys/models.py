"""API keys, their allowed IPs and APIs, the API catalogue, usage and the audit history.

Every key rule of DESIGN §3 lives here: `clean()` explains a broken rule to a person, `save()`
refuses it from any code path, and CheckConstraints refuse it in the database itself.
"""

import dataclasses
import datetime
import functools
import ipaddress
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import (
    InterfaceError,
    NotSupportedError,
    OperationalError,
    connections,
    models,
)
from django.db.models import F, Q
from django.db.models.functions import Substr
from django.utils import timezone
from django.utils.functional import cached_property

from keys import tokens

MAX_ALLOWED_IPS = 50
MAX_DESCRIPTION = 1000
REFUSED_ADDRESSES_SHOWN = datetime.timedelta(days=30)
# Why a call with a known key was refused: the code recorded (and exported), the sentence shown.
REFUSAL_REASONS = {
    "revoked": "The key is revoked.",
    "expired": "The key has expired.",
    "owner_inactive": "The key's owner is deactivated.",
    "ip_not_allowed": "Called from an address that is not in the allowed IPs.",
    "bad_password": "Wrong password.",
    "api_not_granted": "The key is not granted the API it called.",
    "throttled": "Too many failed attempts: refused for a while.",
    "rotation_not_allowed": "Tried to rotate itself without being allowed to.",
    "stored_hash_unusable": "The stored password hash is damaged: contact the administrators.",
}
UNUSED_AFTER = datetime.timedelta(days=90)


def local_date(at: datetime.datetime | None = None) -> datetime.date:
    """The calendar date of `at` (default: now) in the portal's TIME_ZONE."""
    return timezone.localtime(at or timezone.now()).date()


def latest_expiry_for(created_on: datetime.date) -> datetime.date:
    """The same calendar date one year later; 29 February gives 28 February."""
    try:
        return created_on.replace(year=created_on.year + 1)
    except ValueError:  # 29 February -> no such day next year
        return created_on.replace(year=created_on.year + 1, day=28)


def normalise_network(text: str) -> str:
    """Return an IPv4/IPv6 address or CIDR range in canonical form, or raise ValidationError.

    A single address becomes a /32 or /128 network; an IPv4-mapped IPv6 address becomes its
    IPv4 form, so it matches the IPv4 clients it stands for. Host bits in a range are an
    error, not silently dropped: 10.0.0.1/8 is probably a typo for 10.0.0.0/8 or 10.0.0.1.
    """
    value = (text or "").strip()
    if not value:
        raise ValidationError("Enter an IP address or CIDR range.", code="required")
    if "%" in value:  # an IPv6 zone (fe80::1%eth0) names a local interface, not a client
        raise ValidationError(
            "“%(value)s” has an IPv6 zone (%%…); enter the address without it.",
            code="zone",
            params={"value": value[:60]},
        )
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValidationError(
            "“%(value)s” is not an IPv4 or IPv6 address or CIDR range.",
            code="invalid",
            params={"value": value[:60]},
        ) from None
    if network.network_address != ipaddress.ip_interface(value).ip and "/" in value:
        raise ValidationError(
            "“%(value)s” has host bits set; did you mean %(network)s?",
            code="host_bits",
            params={"value": value, "network": network},
        )
    if network.version == 6 and network.network_address.ipv4_mapped and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        network = ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")
    widest = settings.KEYS_MIN_PREFIX_V4 if network.version == 4 else settings.KEYS_MIN_PREFIX_V6
    if network.prefixlen < widest:
        # An allowlist restricts: a range this wide (0.0.0.0/0 at the extreme) would let a
        # stolen password in from almost anywhere.
        raise ValidationError(
            "“%(value)s” is too wide: an allowed range may be at most /%(widest)s for IPv%(v)s.",
            code="too_wide",
            params={"value": value[:60], "widest": widest, "v": network.version},
        )
    return str(network)


def allowlist(entries: Iterable[str]) -> list[str]:
    """The allowed IPs of a key, normalised; or ValidationError listing every broken entry.

    The one home of the allowlist rules: each entry's shape and width (normalise_network),
    no duplicates, at most MAX_ALLOWED_IPS, and at least one unless KEYS_REQUIRE_ALLOWED_IPS
    is off. Blank entries are ignored (an emptied row is how a row is removed).
    """
    errors, networks = [], []
    for entry in entries:
        if not (entry or "").strip():
            continue
        try:
            networks.append(normalise_network(entry))
        except ValidationError as error:
            errors.extend(error.messages)
    if len(networks) > MAX_ALLOWED_IPS:
        errors.append(f"A key can have at most {MAX_ALLOWED_IPS} allowed IP entries.")
    if len(set(networks)) != len(networks):
        errors.append("Each allowed IP may be listed only once.")
    if not networks and not errors and settings.KEYS_REQUIRE_ALLOWED_IPS:
        errors.append("Add at least one allowed IP address or range.")
    if errors:
        raise ValidationError(errors)
    return networks


# Unicode categories no name may hold: controls (a newline forges a log or CSV line),
# format characters (right-to-left overrides disguise a name) and line/paragraph separators.
_FORBIDDEN_IN_NAMES = {"Cc", "Cf", "Zl", "Zp"}


def validate_no_control_characters(value: str) -> None:
    """Refuse a name (of a key or a user) holding control or invisible format characters."""
    if any(unicodedata.category(char) in _FORBIDDEN_IN_NAMES for char in value or ""):
        raise ValidationError(
            "Names cannot hold control or invisible formatting characters.",
            code="control_characters",
        )


def widened(address: str) -> str:
    """The usual network around an address: its /24 (IPv4) or /64 (IPv6)."""
    ip = ipaddress.ip_address(address)
    return str(ipaddress.ip_network(f"{ip}/{24 if ip.version == 4 else 64}", strict=False))


def display_network(network: str) -> str:
    """A single-address network shows as the bare address."""
    net = ipaddress.ip_network(network)
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


class ApiQuerySet(models.QuerySet):
    def active(self):
        return self.filter(is_active=True)

    def names(self) -> dict[str, str]:
        """Each API's name by its slug (the code events and CSV files carry)."""
        return dict(self.values_list("slug", "name"))


class Api(models.Model):
    """An entry of the API catalogue: one endpoint group under /api/v1/<slug>/."""

    slug = models.SlugField(
        unique=True, help_text="The path segment under /api/v1/; never changes once in use."
    )
    name = models.CharField(max_length=100, unique=True)
    description = models.CharField(max_length=200, blank=True)
    position = models.PositiveSmallIntegerField(default=0)
    is_active = models.BooleanField(
        default=True, help_text="Inactive APIs are not offered for new keys."
    )

    objects = ApiQuerySet.as_manager()

    class Meta:
        ordering = ["position", "name"]
        verbose_name = "API"
        verbose_name_plural = "API catalogue"

    def __str__(self) -> str:
        return self.name


KEY_PAGE_SIZE = 50


@dataclass
class KeyPage:
    keys: list["ApiKey"]
    older: str | None = None  # `before=` (a key's identifier) for the next older page
    newer: str | None = None  # `after=` for the next newer page


def _revoked(at: datetime.datetime | None = None) -> Q:
    return ~Q(revoked_at=None) | Q(revoke_at__lte=at or timezone.now())


class ApiKeyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        if frozen := ApiKey.columns_only_save_writes().intersection(kwargs):
            raise ValueError(f"Keys change {sorted(frozen)} only through keys.actions.")
        return super().update(**kwargs)

    def live(self, at: datetime.datetime | None = None):
        """Not revoked (possibly expired), counting a replaced key revoked once its overlap ends."""
        return self.exclude(_revoked(at))

    def usable(self, at: datetime.datetime | None = None):
        """Neither revoked nor past the end of their expiration date."""
        return self.live(at).filter(expires_on__gte=local_date(at))

    def expired(self, at: datetime.datetime | None = None):
        return self.live(at).filter(expires_on__lt=local_date(at))

    def revoked(self, at: datetime.datetime | None = None):
        return self.filter(_revoked(at))

    def overlap_over(self, at: datetime.datetime | None = None):
        """Replaced keys whose overlap has ended but whose revocation is not written yet."""
        return self.filter(revoked_at=None, revoke_at__lte=at or timezone.now())

    def with_status(self, status: str, at: datetime.datetime | None = None):
        """Keys whose ApiKey.status() is `status` (the one status filter of every list)."""
        match status:
            case ApiKey.Status.ACTIVE:
                return self.usable(at)
            case ApiKey.Status.EXPIRED:
                return self.expired(at)
            case ApiKey.Status.REVOKED:
                return self.revoked(at)
        raise ValueError(f"Unknown key status {status!r}.")

    def name_taken(self, owner, name: str, *, exclude=None) -> bool:
        """True if `owner` has another key with this name that is neither revoked nor
        being replaced (a renewed key passes its name on to its successor)."""
        keys = self.filter(owner=owner, name=name, revoked_at=None, revoke_at=None)
        return keys.exclude(pk=exclude).exists()

    def visible_to(self, user):
        """Keys `user` may see: their own, or all with the view_all_keys permission."""
        if user.has_perm("keys.view_all_keys"):
            return self
        return self.filter(owner=user)

    def with_listing_data(self, *, allowed_ips: bool = True):
        """What a list row shows: owner, revoker, APIs and (unless the list omits them) the
        allowed IPs, in a fixed number of queries whatever the number of rows."""
        keys = self.select_related("owner", "revoked_by").prefetch_related("apis")
        return keys.prefetch_related("allowed_ips") if allowed_ips else keys

    def expiring_within(self, days: int, at: datetime.datetime | None = None):
        """Usable keys whose last valid day is at most `days` days after today."""
        today = local_date(at)
        return self.usable(at).filter(expires_on__lte=today + datetime.timedelta(days=days))

    def matching(self, *, q="", owner=None, status="", api=None, expiring_within=None):
        """Keys whose name, identifier or owner contains `q`, of this owner, status (ApiKey.Status),
        API and expiring within so many days; each optional."""
        keys = self
        if q := q.strip():
            # The owners are looked up first (people are few next to keys), so each part of the
            # OR is an index on the keys table: the trigram indexes of migration 0016 on
            # PostgreSQL, the owner index; not a join that scans every key for its owner.
            users = self.model._meta.get_field("owner").related_model._default_manager
            owners = list(users.filter(username__icontains=q).values_list("pk", flat=True))
            keys = keys.filter(
                Q(name__icontains=q) | Q(identifier__icontains=q) | Q(owner__in=owners)
            )
        if owner is not None:
            keys = keys.filter(owner=owner)
        if status:
            keys = keys.with_status(status)
        if api is not None:
            keys = keys.filter(apis=api)
        if expiring_within is not None:
            keys = keys.expiring_within(expiring_within)
        return keys

    def page(self, *, before=None, after=None, size: int = KEY_PAGE_SIZE) -> "KeyPage":
        """Newest first, cut at a key (its identifier is the cursor), never by OFFSET: a page
        10,000 keys deep is one short walk along the key_newest_first index, like the first.

        `before` is a key: the page holds the keys created before it (older); `after`, the
        keys created after it (newer). A cursor key need not match this queryset's filters.
        """
        if after is not None:
            rows = list(self.newer_than(after).order_by("created_at", "pk")[: size + 1])
            keys = rows[:size][::-1]
            page = KeyPage(keys)
            if keys:
                page.newer = keys[0].identifier if len(rows) > size else None
                page.older = keys[-1].identifier if self.older_than(keys[-1]).exists() else None
            return page
        keys = self.older_than(before) if before is not None else self
        rows = list(keys.order_by("-created_at", "-pk")[: size + 1])
        keys = rows[:size]
        page = KeyPage(keys)
        if keys:
            page.older = keys[-1].identifier if len(rows) > size else None
            if before is not None and self.newer_than(keys[0]).exists():
                page.newer = keys[0].identifier
        return page

    def page_and_total(self, **cursors) -> tuple["KeyPage", int | None]:
        """page(), and on the first page how many keys this queryset holds. Counted only when
        they fill more than that page (a narrow search costs no second walk of its index); a
        deeper page is not counted again (a count reads every key: 3 ms at 100,000)."""
        page = self.page(**cursors)
        if any(cursors.values()):
            return page, None
        if page.older is None:
            return page, len(page.keys)
        return page, self.count()

    def older_than(self, key: "ApiKey"):
        """Keys after `key` in the newest-first order (created_at, then pk, descending)."""
        # The first bound lets the index walk start at `key`; the exclusion settles ties.
        keys = self.filter(created_at__lte=key.created_at)
        return keys.exclude(created_at=key.created_at, pk__gte=key.pk)

    def newer_than(self, key: "ApiKey"):
        """Keys before `key` in the newest-first order."""
        keys = self.filter(created_at__gte=key.created_at)
        return keys.exclude(created_at=key.created_at, pk__lte=key.pk)

    def known_as(self, text: str):
        """Keys whose name is `text` (any case) or whose identifier starts with it.

        On PostgreSQL the identifier's pattern index serves the prefix (LIKE 'text%') and the
        trigram index on UPPER(name) the name. SQLite's LIKE ignores case, so the prefix is
        also compared with `=` on a substring: ckid_abc must not find ckid_ABC; SQLite scans.
        """
        keys = self.annotate(identifier_prefix=Substr("identifier", 1, len(text)))
        prefix = Q(identifier__startswith=text, identifier_prefix=text)
        return keys.filter(prefix | Q(name__iexact=text))

    def for_authentication(self, identifier: str) -> "KeyRow | None":
        """Everything the API checks need of the key `identifier`, from all keys (whatever
        this queryset filters), in one query through the unique identifier index."""
        connection = connections[self.db]
        rows = _fetch_skipping_health_check(
            connection, _key_row_sql(self.model, connection.alias), [identifier]
        )
        if not rows:
            return None
        (pk, name, owner_active, revision, password_hash, revoked_at, expires_on, revoke_at,
         previous_hash, previous_until, may_rotate_itself) = rows[0][:-2]  # fmt: skip
        return KeyRow(
            key_id=pk,
            name=name,
            owner_active=bool(owner_active),
            revision=revision,
            password_hash=password_hash,
            revoked_at=_moment(revoked_at),
            expires_on=_DATE.to_python(expires_on),  # SQLite returns text
            revoke_at=_moment(revoke_at),
            previous_password_hash=previous_hash,
            previous_password_valid_until=_moment(previous_until),
            may_rotate_itself=bool(may_rotate_itself),
            networks=frozenset(row[-2] for row in rows if row[-2] is not None),
            apis=frozenset(row[-1] for row in rows if row[-1] is not None),
        )


def _fetch_skipping_health_check(connection, sql: str, params: list) -> list[tuple]:
    """The rows of one read, without the `SELECT 1` round trip that CONN_HEALTH_CHECKS spends
    on a reused connection before a request's first query: the read itself is the check. If
    it fails because the connection is dead (the database restarted) or holds a prepared
    plan a migration made stale, it reconnects and reads once more, so the caller sees no
    failure; any other error (a timeout, a lock), or one inside a transaction, is raised."""
    reused = connection.connection is not None and not connection.in_atomic_block
    if reused:
        connection.health_check_done = True
    try:
        return _fetch_prepared(connection, sql, params)
    except (OperationalError, InterfaceError, NotSupportedError) as error:
        if not (reused and _reconnecting_helps(connection, error)):
            raise
        connection.close()
    return _fetch_prepared(connection, sql, params)


def _fetch_prepared(connection, sql: str, params: list) -> list[tuple]:
    """Run the read as a prepared statement on PostgreSQL (KEYS_PREPARED_KEY_READ): parsed
    and planned once per connection (0.29 -> 0.03 ms of PostgreSQL's CPU per read), its one
    plan right for any identifier. Only this read: a generic plan would be wrong for a search
    whose best plan depends on its pattern, so nothing else is prepared."""
    with connection.cursor() as cursor:
        driver = connection.connection
        if connection.vendor != "postgresql" or not settings.KEYS_PREPARED_KEY_READ:
            cursor.execute(sql, params)
            return cursor.fetchall()
        threshold, driver.prepare_threshold = driver.prepare_threshold, 0
        try:
            cursor.execute(sql, params)
        finally:
            driver.prepare_threshold = threshold
        return cursor.fetchall()


def _reconnecting_helps(connection, error: Exception) -> bool:
    if isinstance(error, NotSupportedError):
        # PostgreSQL refuses a prepared statement whose result columns changed type since it
        # was prepared (a migration while this process ran); a new connection prepares anew.
        return "cached plan must not change result type" in str(error)
    return not connection.is_usable()


@dataclasses.dataclass(frozen=True)
class KeyRow:
    """What the API checks read of a key (ApiKeyQuerySet.for_authentication)."""

    key_id: int
    name: str
    owner_active: bool
    revision: int
    password_hash: str
    revoked_at: datetime.datetime | None
    expires_on: datetime.date
    revoke_at: datetime.datetime | None
    previous_password_hash: str
    previous_password_valid_until: datetime.datetime | None
    may_rotate_itself: bool
    networks: frozenset[str]
    apis: frozenset[str]

    def status(self, at: datetime.datetime) -> str:
        """The key's status at `at`: the same rule as ApiKey.status()."""
        return key_status(self.revoked_at, self.expires_on, at, revoke_at=self.revoke_at)

    def previous_password_works(self, at: datetime.datetime) -> bool:
        """After a regeneration the old password works until its overlap ends, on every
        server at the same moment (the end is read from the database with each call)."""
        until = self.previous_password_valid_until
        return bool(self.previous_password_hash) and until is not None and at < until


# Columns every check needs. A key has few allowed IPs and APIs, so the joined rows
# (IPs x APIs) stay a handful.
_KEY_ROW_COLUMNS = (
    "pk",
    "name",
    "owner__is_active",
    "revision",
    "password_hash",
    "revoked_at",
    "expires_on",
    "revoke_at",
    "previous_password_hash",
    "previous_password_valid_until",
    "may_rotate_itself",
    # Last: one row per (allowed IP x API); the columns above are the same in each.
    "allowed_ips__network",
    "apis__slug",
)
_PLACEHOLDER = "identifier"
_DATE = models.DateField()


def _moment(value) -> datetime.datetime | None:
    """A stored moment as an aware datetime (SQLite returns UTC, naive or as text)."""
    if value is None:
        return None
    if not isinstance(value, datetime.datetime):
        value = datetime.datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)


@functools.cache
def _key_row_sql(model: type[models.Model], alias: str) -> str:
    """The SQL of for_authentication(), compiled by the ORM once per process and database.

    Building and compiling the queryset costs several times what SQLite needs to run it,
    on every call of the API; the SQL itself never changes, only its one parameter.
    """
    query = model._base_manager.filter(identifier=_PLACEHOLDER).order_by()
    sql, params = query.values_list(*_KEY_ROW_COLUMNS).query.get_compiler(using=alias).as_sql()
    assert params == (_PLACEHOLDER,), params
    return sql


class ApiKey(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        EXPIRED = "expired", "Expired"
        REVOKED = "revoked", "Revoked"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="api_keys"
    )
    name = models.CharField(
        max_length=100,
        validators=[validate_no_control_characters],
        help_text="Descriptive; unique among your keys that are not revoked.",
    )
    description = models.TextField(
        blank=True,
        max_length=1000,
        help_text="Optional: what the key is for and who runs the integration.",
    )
    identifier = models.CharField(max_length=tokens.IDENTIFIER_LENGTH, unique=True, editable=False)
    password_hash = models.CharField(max_length=200, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    created_on = models.DateField(
        editable=False, help_text="Creation date in the portal's time zone."
    )
    latest_expires_on = models.DateField(
        editable=False, help_text="Same calendar date one year after creation."
    )
    expires_on = models.DateField(
        "expiration date",
        help_text="Valid through the end of this date; at most one year after creation.",
    )
    apis = models.ManyToManyField(Api, related_name="keys", verbose_name="APIs")
    revision = models.PositiveIntegerField(
        default=1, editable=False, help_text="Raised on every change; cached checks expire."
    )
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        editable=False,
    )
    revoke_reason = models.CharField(max_length=500, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True, editable=False)
    previous_password_hash = models.CharField(max_length=200, blank=True, editable=False)
    previous_password_valid_until = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="After a regeneration, the old password works until this moment.",
    )
    may_rotate_itself = models.BooleanField(
        "This key may rotate itself",
        default=False,
        help_text="Automation may get a new password with the key's own credentials "
        "(POST /api/v1/self/rotate).",
    )
    replaces = models.OneToOneField(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="replaced_by",
        editable=False,
        help_text="The key this one renewed.",
    )
    revoke_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Revoked at this moment: the end of the overlap after a renewal.",
    )

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"
        permissions = [
            ("manage_own_keys", "Can create, edit and revoke their own keys"),
            ("view_all_keys", "Can see every user's keys"),
            ("revoke_any_key", "Can revoke any user's key"),
            ("view_audit", "Can read and export the audit history"),
        ]
        indexes = [
            # All keys lists every key newest first, 50 a page: with this index a page is a
            # short index walk instead of a sort of the whole table (bench/portal_pages.py).
            models.Index(fields=["-created_at", "-id"], name="key_newest_first"),
            # The search's trigram indexes (name, identifier) exist on PostgreSQL only, so
            # they live in migration 0015 alone, outside the models' state.
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "name"],
                condition=Q(revoked_at=None, revoke_at=None),
                name="key_name_unique_among_live_keys",
                violation_error_message="You already have a key with this name.",
            ),
            models.CheckConstraint(
                condition=Q(expires_on__lte=models.F("latest_expires_on")),
                name="key_expiry_at_most_one_year",
            ),
            models.CheckConstraint(
                condition=Q(expires_on__gte=models.F("created_on")),
                name="key_expiry_not_before_creation",
            ),
            models.CheckConstraint(
                condition=Q(revoked_at__isnull=False) | Q(revoked_by=None, revoke_reason=""),
                name="key_revocation_fields_only_when_revoked",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.identifier})"

    # --- rules ------------------------------------------------------------------------------

    # What never changes on a key once it is written, and what becomes final once it is
    # revoked. Declared here only: save() checks them against the stored row, update()
    # refuses them, and the database trigger (keys.guards, built from these lists) refuses
    # them from raw SQL. The expiration date also only ever moves earlier.
    NEVER_CHANGES = (
        "identifier",
        "owner",
        "created_at",
        "created_on",
        "latest_expires_on",
        "replaces",
    )
    FINAL_ONCE_REVOKED = ("revoked_at", "revoked_by", "revoke_reason", "name", "expires_on")
    FINAL_ONCE_SET = ("revoke_at",)

    @classmethod
    def columns_only_save_writes(cls) -> frozenset[str]:
        """Fields (and their columns) a bulk update() may never write: it would skip the rules."""
        fields = [cls._meta.get_field(name) for name in (*cls.NEVER_CHANGES, "revoked_at")]
        fields += [cls._meta.get_field(name) for name in ("revoked_by", "revoke_reason")]
        return frozenset(name for f in fields for name in (f.name, f.attname))

    @staticmethod
    def expiry_errors(
        expires_on: datetime.date | None,
        *,
        latest: datetime.date,
        previous: datetime.date | None = None,
        today: datetime.date | None = None,
    ) -> list[str]:
        """What is wrong with an expiration date, as messages for its field.

        `latest` is the one-year limit; `previous` the stored date of an existing key (it
        may only move earlier, and an expired key keeps its past date when edited).
        """
        today = today or local_date()
        if expires_on is None:
            return ["Enter an expiration date."]
        errors = []
        if expires_on != previous and expires_on < today:
            errors.append("The expiration date cannot be in the past.")
        if expires_on > latest:
            errors.append(
                f"The expiration date can be at most one year after creation: "
                f"{latest.isoformat()} at the latest."
            )
        elif previous is not None and expires_on > previous:
            errors.append(
                f"The expiration date can only be shortened: {previous.isoformat()} at the latest."
            )
        return errors

    @classmethod
    def validated(
        cls,
        *,
        owner,
        name: str,
        expires_on,
        networks,
        apis,
        description: str = "",
        key: "ApiKey | None" = None,
        created_at: datetime.datetime | None = None,
    ) -> dict:
        """The fields of a new key (or of `key`, edited), checked against every key rule.

        Returns them cleaned (name stripped, networks normalised) or raises ValidationError
        with every broken rule under its field's name. The form, the actions and the admin
        call this; nothing else restates a rule.
        """
        errors: dict[str, list[str]] = {}
        name = (name or "").strip()
        try:
            validate_no_control_characters(name)
        except ValidationError as error:
            errors["name"] = error.messages
        if not name:
            errors["name"] = ["Enter a name."]
        elif "name" not in errors and cls.objects.name_taken(
            owner, name, exclude=key.pk if key else None
        ):
            errors["name"] = ["You already have a key with this name."]
        if key is None:
            latest, previous = latest_expiry_for(local_date(created_at)), None
        else:
            latest, previous = key.latest_expires_on, key.expires_on
        if expiry := cls.expiry_errors(expires_on, latest=latest, previous=previous):
            errors["expires_on"] = expiry
        try:
            networks = allowlist(networks)
        except ValidationError as error:
            errors["allowed_ips"] = error.messages
        apis = list(apis)
        if not apis:
            errors["apis"] = ["Select at least one API."]
        description = (description or "").strip()
        if len(description) > MAX_DESCRIPTION:
            errors["description"] = [f"At most {MAX_DESCRIPTION} characters."]
        if key is not None and key.is_revoked:
            errors["__all__"] = ["A revoked key cannot be changed."]
        if errors:
            raise ValidationError(errors)
        return {
            "name": name,
            "description": description,
            "expires_on": expires_on,
            "networks": networks,
            "apis": apis,
        }

    def clean(self) -> None:
        """The expiry rules of this row alone, for full_clean() (the admin, the shell)."""
        if self._state.adding:
            latest, previous = latest_expiry_for(local_date(self.created_at)), None
        else:
            latest, previous = self.latest_expires_on, self._stored()["expires_on"]
        if errors := self.expiry_errors(self.expires_on, latest=latest, previous=previous):
            raise ValidationError({"expires_on": errors})

    def may_be_revoked_by(self, user) -> bool:
        """Whether `user`'s role lets them revoke this key (whatever its state)."""
        if self.owner_id == user.pk:
            return user.has_perm("keys.manage_own_keys")
        return user.has_perm("keys.revoke_any_key")

    # --- least privilege: what the door saw ----------------------------------------------

    def refused_addresses(self, at: datetime.datetime | None = None):
        """Addresses refused as not allowed in the last 30 days, newest first."""
        since = (at or timezone.now()) - REFUSED_ADDRESSES_SHOWN
        return self.callers.filter(refused=True, last_seen__gte=since).order_by("-last_seen")

    def unused_networks(self, at: datetime.datetime | None = None) -> list[str]:
        """Allowed entries no successful call came from in 90 days (a key that old)."""
        since = (at or timezone.now()) - UNUSED_AFTER
        if self.created_at > since:
            return []
        used = self.callers.filter(refused=False, last_seen__gte=since).values_list("ip", flat=True)
        used = list(used)
        return [
            entry.network
            for entry in self.allowed_ips.all()
            if not any(ip_in_networks(ip, [entry.network]) for ip in used)
        ]

    def unused_apis(self, at: datetime.datetime | None = None) -> list["Api"]:
        """Granted APIs not called in 90 days (a key that old)."""
        since = (at or timezone.now()) - UNUSED_AFTER
        if self.created_at > since:
            return []
        used = set(self.api_uses.filter(last_used_at__gte=since).values_list("api_id", flat=True))
        return [api for api in self.apis.all() if api.pk not in used]

    def may_be_edited_by(self, user) -> bool:
        """Only the owner edits a key, and only while it is not revoked."""
        return (
            not self.is_revoked
            and self.owner_id == user.pk
            and user.has_perm("keys.manage_own_keys")
        )

    def revocation_needs_reason(self, user) -> bool:
        """Revoking someone else's key needs a reason, shown to its owner."""
        return user is not None and user.pk != self.owner_id

    def prepare_creation(self, at: datetime.datetime | None = None) -> None:
        """Fix the creation time and the dates derived from it (before the first save)."""
        if self.created_at is None:
            self.created_at = at or timezone.now()
        self.created_on = local_date(self.created_at)
        self.latest_expires_on = latest_expiry_for(self.created_on)

    def save(self, *args, **kwargs) -> None:
        if self._state.adding:
            # The creation time fixes the one-year limit: it is now, never a chosen future.
            if self.created_at > timezone.now() + datetime.timedelta(seconds=60):
                raise ValueError("A key's creation time cannot lie in the future.")
            self.prepare_creation()
            if not tokens.is_identifier(self.identifier):
                raise ValueError("Create keys with keys.actions.create_key().")
            previous = None
        else:
            previous = self._check_against_stored()
        errors = self.expiry_errors(
            self.expires_on, latest=self.latest_expires_on, previous=previous
        )
        if errors:
            raise ValidationError({"expires_on": errors})
        validate_no_control_characters(self.name)
        if not self.password_hash.startswith("$argon2id$"):
            raise ValueError("Only an Argon2id hash of the password is stored.")
        super().save(*args, **kwargs)

    def _stored(self) -> dict:
        """The row as stored now: what never changes, the revocation and the expiry."""
        fields = [self._meta.get_field(n).attname for n in self.NEVER_CHANGES]
        return (
            type(self)
            .objects.filter(pk=self.pk)
            .values(*fields, *self.FINAL_ONCE_SET, "revoked_at", "expires_on")
            .get()
        )

    def _check_against_stored(self) -> datetime.date:
        """Refuse changes to what never changes; return the stored expiration date."""
        stored = self._stored()
        for name in self.NEVER_CHANGES:
            attname = self._meta.get_field(name).attname
            if stored[attname] != getattr(self, attname):
                raise ValueError(f"A key's {name} never changes after creation.")
        for name in self.FINAL_ONCE_SET:
            if stored[name] is not None and stored[name] != getattr(self, name):
                raise ValueError(f"A key's {name} never changes once set.")
        if stored["revoked_at"] is not None:
            raise ValueError("A revoked key cannot be changed.")
        return stored["expires_on"]

    def delete(self, *args, **kwargs):
        raise ValueError("Keys are revoked, never deleted: their history must survive.")

    # --- state ------------------------------------------------------------------------------

    def status(self, at: datetime.datetime | None = None) -> str:
        return key_status(self.revoked_at, self.expires_on, at, revoke_at=self.revoke_at)

    @cached_property
    def current_status(self) -> str:
        return self.status()

    def get_status_display(self) -> str:
        return self.Status(self.current_status).label

    @property
    def is_revoked(self) -> bool:
        return self.status() == self.Status.REVOKED

    @property
    def replaced_by_key(self) -> "ApiKey | None":
        """The key that renewed this one, if any."""
        try:
            return self.replaced_by
        except ApiKey.DoesNotExist:
            return None

    @property
    def previous_password_works(self) -> bool:
        """After a regeneration: the old password still works (its overlap is running)."""
        until = self.previous_password_valid_until
        return bool(self.previous_password_hash) and until is not None and timezone.now() < until


def key_status(revoked_at, expires_on: datetime.date, at=None, *, revoke_at=None) -> str:
    """Revoked (or past the end of its overlap after a renewal), expired (valid through the
    end of its date in TIME_ZONE) or active."""
    if revoked_at is not None or (revoke_at is not None and revoke_at <= (at or timezone.now())):
        return ApiKey.Status.REVOKED
    if expires_on < local_date(at):
        return ApiKey.Status.EXPIRED
    return ApiKey.Status.ACTIVE


def ip_in_networks(address: str, networks: Iterable[str]) -> bool:
    """True if address lies in one of networks; IPv4-mapped IPv6 counts as its IPv4 form."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    for network in networks:
        try:
            if ip in _parsed_network(network):
                return True
        except ValueError:
            continue
    return False


@functools.lru_cache(maxsize=4096)
def _parsed_network(network: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    # Every API call checks its key's allowlist; parsing the same few strings each time
    # would cost more than the rest of the check.
    return ipaddress.ip_network(network)


class AllowedIp(models.Model):
    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="allowed_ips")
    network = models.CharField(
        max_length=43, help_text="Normalised IPv4/IPv6 network, e.g. 192.0.2.7/32 or 10.0.0.0/8."
    )

    class Meta:
        ordering = ["id"]
        verbose_name = "allowed IP"
        constraints = [
            models.UniqueConstraint(fields=["key", "network"], name="allowed_ip_unique_per_key")
        ]

    def __str__(self) -> str:
        return display_network(self.network)

    def save(self, *args, **kwargs) -> None:
        self.network = normalise_network(self.network)
        if self._state.adding and self.key.allowed_ips.count() >= MAX_ALLOWED_IPS:
            raise ValidationError(f"A key can have at most {MAX_ALLOWED_IPS} allowed IP entries.")
        super().save(*args, **kwargs)


class KeyUsageDay(models.Model):
    """How many successful calls a key served on one day (portal time zone)."""

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="usage_days")
    day = models.DateField()
    uses = models.PositiveBigIntegerField(default=0)
    recorded = models.BooleanField(
        default=False, help_text="The finished day's count is in the audit history."
    )

    class Meta:
        ordering = ["-day"]
        constraints = [
            models.UniqueConstraint(fields=["key", "day"], name="usage_one_row_per_key_and_day")
        ]
        indexes = [
            # keys.usage.close_finished_days looks for the few days not yet recorded.
            models.Index(
                fields=["day"], condition=Q(recorded=False), name="usage_day_not_recorded"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.day}: {self.uses}"


class KeyCaller(models.Model):
    """An address a key was used from, or refused from as not allowed: how often, when
    first and (to the minute) last. The key page turns these into least-privilege advice."""

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="callers")
    ip = models.GenericIPAddressField()
    refused = models.BooleanField(default=False, help_text="Refused: not in the allowlist.")
    calls = models.PositiveBigIntegerField(default=0)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        ordering = ["-last_seen"]
        constraints = [
            models.UniqueConstraint(
                fields=["key", "ip", "refused"], name="caller_one_row_per_key_ip_outcome"
            )
        ]

    def __str__(self) -> str:
        return self.ip


class KeyApiUse(models.Model):
    """When a key last called one of its APIs (to the minute): unused grants can go."""

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="api_uses")
    api = models.ForeignKey(Api, on_delete=models.CASCADE, related_name="+")
    last_used_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["key", "api"], name="api_use_one_row_per_key_and_api")
        ]

    def __str__(self) -> str:
        return f"{self.api_id} {self.last_used_at}"


AUDIT_PAGE_SIZE = 50


@dataclass
class AuditPage:
    events: list["AuditEvent"]
    older: int | None = None  # `before=` for the next older page
    newer: int | None = None  # `after=` for the next newer page


class AuditEventQuerySet(models.QuerySet):
    """Events are filtered and paged by sequence number (keyset), never by OFFSET: every page,
    the first or one a million events deep, is one short walk along an index."""

    def update(self, **kwargs):
        raise ValueError("Audit events are append-only.")

    def delete(self):
        raise ValueError("Audit events are append-only.")

    _raw_delete = delete

    def bulk_create(self, objs, *args, **kwargs):
        # Rows made here would be neither chained nor signed: keys.audit appends them.
        raise ValueError("Audit events are appended only through keys.audit.")

    def _append_sealed(self, events: list, batch_size: int) -> None:
        """Insert events keys.audit has chained and signed (its bulk path, for demo data)."""
        super().bulk_create(events, batch_size=batch_size)

    def bulk_update(self, objs, fields, batch_size=None):
        raise ValueError("Audit events are append-only.")

    def in_chain(self):
        """Only events up to the chain's head as read now: a row past it is not chained yet
        (verify_audit), and a page or an export stays one cut while events are appended."""
        return self.filter(seq__lte=AuditHead.objects.get(pk=1).seq)

    def matching(self, *, keys=None, action="", outcome="", date_from=None, date_to=None):
        """Events of these keys, action, outcome (an AuditEvent.Outcome), dates; all optional."""
        events = self
        if keys is not None:
            # A list, not a subquery: one key becomes `key_id = x`, a walk of (key, -seq).
            events = events.filter(key__in=keys)
        denied = AuditEvent.Action.USE_DENIED
        if action and outcome:
            # The action decides the outcome: keep the action, or match nothing (rather
            # than walk every event of that action to find none).
            if (action == denied) != (outcome == AuditEvent.Outcome.DENIED):
                return self.none()
            outcome = ""
        if action:
            events = events.filter(action=action)
        if outcome == AuditEvent.Outcome.DENIED:
            events = events.filter(action=denied)
        elif outcome == AuditEvent.Outcome.SUCCESS:
            events = events.exclude(action=denied)
        return events.between(date_from, date_to)

    def between(self, date_from: datetime.date | None, date_to: datetime.date | None):
        """Events on these days (portal time zone), bounded by seq too, so the walk along a seq
        index starts and stops at once.

        keys.audit.record() keeps `at` non-decreasing along the chain. So if some event E has
        at < start, every event from `start` on has a higher seq than E; and if some event F
        has at >= end, every event before `end` has a lower seq. One probe of the `at` index
        each.
        """
        events = self
        if date_from:
            start = _midnight(date_from)
            events = events.filter(at__gte=start)
            earlier = AuditEvent.objects.filter(at__lt=start).order_by("-at")
            if (seq := earlier.values_list("seq", flat=True).first()) is not None:
                events = events.filter(seq__gt=seq)
        if date_to:
            end = _midnight(date_to + datetime.timedelta(days=1))
            events = events.filter(at__lt=end)
            later = AuditEvent.objects.filter(at__gte=end).order_by("at")
            if (seq := later.values_list("seq", flat=True).first()) is not None:
                events = events.filter(seq__lt=seq)
        return events

    def walks(self, by_or_about=None) -> list["AuditEventQuerySet"]:
        """These events as index walks to merge by seq: one, or two by or about some users.

        "By or about users" is actor *or* owner among them. An OR across two indexes would make the
        database sort every event of that user for each page; two queries that each walk their
        own index, (actor, -seq) and (owner, -seq), and a merge of their first rows stay fast.
        """
        if by_or_about is None:
            return [self]
        return [self.filter(actor__in=by_or_about), self.filter(owner__in=by_or_about)]

    def page(
        self, *, before=None, after=None, by_or_about=None, size: int = AUDIT_PAGE_SIZE
    ) -> AuditPage:
        """Newest first; `before` pages towards older events, `after` towards newer ones."""
        walks = self.walks(by_or_about)
        if after is not None:
            rows = _first_rows(walks, limit=size + 1, ascending=True, seq__gt=after)
            more_newer = len(rows) > size
            events = list(reversed(rows[:size]))
            page = AuditPage(events)
            if events:
                page.newer = events[0].seq if more_newer else None
                page.older = events[-1].seq if _any(walks, seq__lte=after) else None
            return page
        bounds = {"seq__lt": before} if before is not None else {}
        rows = _first_rows(walks, limit=size + 1, ascending=False, **bounds)
        events = rows[:size]
        page = AuditPage(events)
        if events:
            page.older = events[-1].seq if len(rows) > size else None
            if before is not None and _any(walks, seq__gte=before):
                page.newer = events[0].seq
        return page


def _midnight(day: datetime.date) -> datetime.datetime:
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time()))


def _first_rows(walks, *, limit: int, ascending: bool, **bounds) -> list["AuditEvent"]:
    """The first `limit` events of the union of walks, in seq order, without repeats."""
    order = "seq" if ascending else "-seq"
    found: dict[int, AuditEvent] = {}
    for events in walks:
        rows = events.filter(**bounds).select_related("owner").annotate(key_name=F("key__name"))
        for event in rows.order_by(order)[:limit]:
            found[event.seq] = event
    return sorted(found.values(), key=lambda e: e.seq, reverse=not ascending)[:limit]


def _any(walks, **bounds) -> bool:
    return any(
        events.filter(**bounds).order_by("seq").values_list("seq", flat=True)[:1]
        for events in walks
    )


class AuditEvent(models.Model):
    """One entry of the append-only, hash-chained key history (DESIGN §5).

    hash = SHA-256(prev_hash ‖ canonical JSON of the event), and signature = an Ed25519
    signature of that hash by a key the database does not hold; see keys.audit. The database
    refuses UPDATE and DELETE on the table (migration 0007).
    """

    class Action(models.TextChoices):
        KEY_CREATED = "key_created", "Key created"
        KEY_EDITED = "key_edited", "Key edited"
        EXPIRY_SHORTENED = "expiry_shortened", "Expiry shortened"
        KEY_REVOKED = "key_revoked", "Key revoked"
        OWNER_DEACTIVATED = "owner_deactivated", "Owner deactivated"
        USE_DENIED = "use_denied", "Use denied"
        KEY_USED = "key_used", "Key used"
        EXPIRY_REMINDER = "expiry_reminder", "Expiry reminder sent"
        CATALOGUE_CHANGED = "catalogue_changed", "API catalogue changed"
        PASSWORD_REGENERATED = "password_regenerated", "Password regenerated"
        PREVIOUS_PASSWORD_ENDED = "previous_password_ended", "Previous password stopped"
        KEY_RENEWED = "key_renewed", "Key renewed"
        USER_CREATED = "user_created", "User created"
        USER_CHANGED = "user_changed", "User changed"
        ROLES_CHANGED = "roles_changed", "Roles changed"
        PASSWORD_SET = "password_set", "Password set"
        LOGIN_SUCCEEDED = "login_succeeded", "Logged in"
        LOGIN_FAILED = "login_failed", "Log-in failed"

    class Outcome(models.TextChoices):
        """Whether a call with a key went through: denied ones are USE_DENIED events."""

        SUCCESS = "success", "Succeeded"
        DENIED = "denied", "Denied"

    seq = models.PositiveBigIntegerField(unique=True, editable=False)
    at = models.DateTimeField(editable=False)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        editable=False,
    )
    actor_label = models.CharField(
        max_length=150, editable=False, help_text="User name, or the key for API callers."
    )
    actor_ip = models.GenericIPAddressField(null=True, blank=True, editable=False)
    key = models.ForeignKey(
        ApiKey,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="events",
        editable=False,
    )
    key_identifier = models.CharField(max_length=tokens.IDENTIFIER_LENGTH, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        editable=False,
        help_text="The key's owner, or the user the event concerns.",
    )
    action = models.CharField(max_length=32, choices=Action.choices, editable=False)
    details = models.JSONField(default=dict, editable=False)
    prev_hash = models.CharField(max_length=64, editable=False)
    hash = models.CharField(max_length=64, unique=True, editable=False)
    signature = models.CharField(
        max_length=128,
        blank=True,
        default="",
        editable=False,
        help_text="'<key id>:<base64 Ed25519 signature>' of the hash; empty only for events "
        "recorded before signing began, which the first signed checkpoint covers.",
    )

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-seq"]
        indexes = [
            # Each filter of the history pages walks one of these, newest first.
            models.Index(fields=["key", "-seq"], name="audit_key_seq"),
            models.Index(fields=["owner", "-seq"], name="audit_owner_seq"),
            models.Index(fields=["actor", "-seq"], name="audit_actor_seq"),
            models.Index(fields=["action", "-seq"], name="audit_action_seq"),
            models.Index(fields=["at"], name="audit_at"),
            # A filter on a person or key *and* an action (or outcome) walks one of these
            # instead of every event of that person or key.
            models.Index(fields=["key", "action", "-seq"], name="audit_key_action_seq"),
            models.Index(fields=["owner", "action", "-seq"], name="audit_owner_action_seq"),
            models.Index(fields=["actor", "action", "-seq"], name="audit_actor_action_seq"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise ValueError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Audit events are append-only.")


class AuditHead(models.Model):
    """The single row holding the chain's last sequence number and hash.

    Appending locks it (SELECT … FOR UPDATE on PostgreSQL; SQLite transactions are
    IMMEDIATE), so two writers can never chain onto the same predecessor.
    """

    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="audit_head_singleton")]

    def __str__(self) -> str:
        return f"head #{self.seq}"


class ChainVerification(models.Model):
    """One check of the whole audit chain (verify_audit, or Verify now on the history page).

    Not an audit event and outside the chain: recording a check changes nothing it checks,
    and the history page only reads the newest one.
    """

    at = models.DateTimeField(default=timezone.now, editable=False)
    by = models.CharField(
        max_length=150, editable=False, help_text="Who asked: a user name, or the command."
    )
    intact = models.BooleanField(editable=False)
    events = models.PositiveBigIntegerField(editable=False, help_text="Events in the chain.")
    broken_at = models.PositiveBigIntegerField(
        null=True, blank=True, editable=False, help_text="The first broken sequence number."
    )
    reason = models.CharField(max_length=500, blank=True, editable=False)

    class Meta:
        ordering = ["-at", "-id"]
        get_latest_by = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {'intact' if self.intact else 'broken'}"
