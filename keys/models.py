"""API keys, their allowed IPs and APIs, the API catalogue, usage and the audit history.

Every key rule of DESIGN §3 lives here: `clean()` explains a broken rule to a person, `save()`
refuses it from any code path, and CheckConstraints refuse it in the database itself.
"""

import datetime
import functools
import ipaddress
from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.functional import cached_property

from keys import tokens


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
    return str(network)


def display_network(network: str) -> str:
    """A single-address network shows as the bare address."""
    net = ipaddress.ip_network(network)
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


class ApiQuerySet(models.QuerySet):
    def active(self):
        return self.filter(is_active=True)


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


class ApiKeyQuerySet(models.QuerySet):
    # Columns only the model's own save() may write: a bulk update() of these would skip the
    # rules (un-revoke, move the one-year limit, swap identity).
    FROZEN_BY_UPDATE = frozenset(
        {
            "owner",
            "owner_id",
            "identifier",
            "created_at",
            "created_on",
            "latest_expires_on",
            "revoked_at",
            "revoked_by",
            "revoked_by_id",
            "revoke_reason",
        }
    )

    def update(self, **kwargs):
        if frozen := self.FROZEN_BY_UPDATE.intersection(kwargs):
            raise ValueError(f"Keys change {sorted(frozen)} only through keys.actions.")
        return super().update(**kwargs)

    def live(self):
        """Not revoked (possibly expired): names are unique among these."""
        return self.filter(revoked_at=None)

    def usable(self, at: datetime.datetime | None = None):
        """Neither revoked nor past the end of their expiration date."""
        return self.filter(revoked_at=None, expires_on__gte=local_date(at))

    def expired(self, at: datetime.datetime | None = None):
        return self.filter(revoked_at=None, expires_on__lt=local_date(at))

    def revoked(self):
        return self.exclude(revoked_at=None)

    def visible_to(self, user):
        """Keys `user` may see: their own, or all with the view_all_keys permission."""
        if user.has_perm("keys.view_all_keys"):
            return self
        return self.filter(owner=user)

    def with_listing_data(self):
        return self.select_related("owner", "revoked_by").prefetch_related("apis", "allowed_ips")

    def expiring_within(self, days: int, at: datetime.datetime | None = None):
        """Usable keys whose last valid day is at most `days` days after today."""
        today = local_date(at)
        return self.usable(at).filter(expires_on__lte=today + datetime.timedelta(days=days))


class ApiKey(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        EXPIRED = "expired", "Expired"
        REVOKED = "revoked", "Revoked"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="api_keys"
    )
    name = models.CharField(
        max_length=100, help_text="Descriptive; unique among your keys that are not revoked."
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
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "name"],
                condition=Q(revoked_at=None),
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

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._stored = dict(zip(field_names, values, strict=True))
        return instance

    def refresh_from_db(self, *args, **kwargs) -> None:
        super().refresh_from_db(*args, **kwargs)
        self._remember_stored()

    def _remember_stored(self) -> None:
        """Remember the values as stored, so save() can refuse forbidden changes."""
        deferred = self.get_deferred_fields()
        self._stored = {
            f.attname: getattr(self, f.attname)
            for f in self._meta.concrete_fields
            if f.attname not in deferred
        }

    # --- rules ------------------------------------------------------------------------------

    def _stored_value(self, field: str):
        return getattr(self, "_stored", {}).get(field)

    def prepare_creation(self, at: datetime.datetime | None = None) -> None:
        """Fix the creation time and the dates derived from it (before the first save)."""
        if self.created_at is None:
            self.created_at = at or timezone.now()
        self.created_on = local_date(self.created_at)
        self.latest_expires_on = latest_expiry_for(self.created_on)

    def expiry_errors(self, today: datetime.date | None = None) -> list[str]:
        """What is wrong with expires_on, as messages for the Expiration date field."""
        today = today or local_date()
        if self.expires_on is None:
            return ["Enter an expiration date."]
        if self._state.adding:
            latest = latest_expiry_for(local_date(self.created_at))
        else:
            latest = self.latest_expires_on
        stored = self._stored_value("expires_on")
        changed = self._state.adding or stored != self.expires_on
        errors = []
        if changed and self.expires_on < today:
            errors.append("The expiration date cannot be in the past.")
        if self.expires_on > latest:
            errors.append(
                f"The expiration date can be at most one year after creation: "
                f"{latest.isoformat()} at the latest."
            )
        elif not self._state.adding and stored and self.expires_on > stored:
            errors.append(
                f"The expiration date can only be shortened: {stored.isoformat()} at the latest."
            )
        return errors

    def clean(self) -> None:
        if self.created_at is None:
            self.created_at = timezone.now()
        errors = {}
        if expiry := self.expiry_errors():
            errors["expires_on"] = expiry
        if not self._state.adding and self._stored_value("revoked_at") is not None:
            errors["__all__"] = ["A revoked key cannot be changed."]
        if errors:
            raise ValidationError(errors)

    def save(self, *args, **kwargs) -> None:
        if self._state.adding:
            # The creation time fixes the one-year limit: it is now, never a chosen future.
            if self.created_at > timezone.now() + datetime.timedelta(seconds=60):
                raise ValueError("A key's creation time cannot lie in the future.")
            self.prepare_creation()
            if not tokens.is_identifier(self.identifier):
                raise ValueError("Create keys with keys.actions.create_key().")
        else:
            stored = getattr(self, "_stored", {})
            for field in ("identifier", "password_hash", "created_at", "latest_expires_on"):
                if field in stored and stored[field] != getattr(self, field):
                    raise ValueError(f"{field} never changes after creation.")
            if self._stored_value("revoked_at") is not None:
                raise ValueError("A revoked key cannot be changed.")
        if errors := self.expiry_errors():
            raise ValidationError({"expires_on": errors})
        if not self.password_hash.startswith("$argon2id$"):
            raise ValueError("Only an Argon2id hash of the password is stored.")
        super().save(*args, **kwargs)
        self._remember_stored()

    def delete(self, *args, **kwargs):
        raise ValueError("Keys are revoked, never deleted: their history must survive.")

    @staticmethod
    def access_errors(networks: list[str], apis) -> dict[str, list[str]]:
        """Rules that span related rows: at least one API and (by setting) one allowed IP."""
        errors = {}
        if settings.KEYS_REQUIRE_ALLOWED_IPS and not networks:
            errors["allowed_ips"] = ["Add at least one allowed IP address or range."]
        if len(set(networks)) != len(networks):
            errors["allowed_ips"] = ["Each allowed IP may be listed only once."]
        if not apis:
            errors["apis"] = ["Select at least one API."]
        return errors

    # --- state ------------------------------------------------------------------------------

    def status(self, at: datetime.datetime | None = None) -> str:
        if self.revoked_at is not None:
            return self.Status.REVOKED
        if self.expires_on < local_date(at):
            return self.Status.EXPIRED
        return self.Status.ACTIVE

    @cached_property
    def current_status(self) -> str:
        return self.status()

    def get_status_display(self) -> str:
        return self.Status(self.current_status).label

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


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
        super().save(*args, **kwargs)


class KeyUsageDay(models.Model):
    """How many successful calls a key served on one day (portal time zone)."""

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="usage_days")
    day = models.DateField()
    uses = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-day"]
        constraints = [
            models.UniqueConstraint(fields=["key", "day"], name="usage_one_row_per_key_and_day")
        ]

    def __str__(self) -> str:
        return f"{self.day}: {self.uses}"


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise ValueError("Audit events are append-only.")

    def delete(self):
        raise ValueError("Audit events are append-only.")

    _raw_delete = delete

    def bulk_update(self, objs, fields, batch_size=None):
        raise ValueError("Audit events are append-only.")


class AuditEvent(models.Model):
    """One entry of the append-only, hash-chained key history (DESIGN §5).

    hash = SHA-256(prev_hash ‖ canonical JSON of the event); see keys.audit.
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
