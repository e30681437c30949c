"""API keys, their allowed IPs and their granted APIs.

Every key rule of docs/design.md §3 lives here: `clean()` explains a broken rule to a person,
`save()` refuses it from any code path, and CheckConstraints refuse it in the database itself.
"""

import datetime
from collections import defaultdict

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import (
    models,
)
from django.db.models import Q
from django.utils import timezone
from django.utils.functional import cached_property

from keys import permissions, tokens
from keys.lib.dates import local_date
from keys.lib.networks import address_range, display_network, ip_in_networks
from keys.models.catalogue import Api
from keys.models.key_queries import ApiKeyQuerySet
from keys.models.policy import KeyPolicy, roles_of
from keys.validators import (
    MAX_ALLOWED_IPS,
    allowlist,
    normalise_network,
    validate_no_control_characters,
)

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
    "method_not_granted": "Tried to write to an API it may only read (GET, HEAD, OPTIONS).",
    "no_route": "Called a path that no API of the catalogue serves (gateway check).",
    "path_not_canonical": "Called a path with dot or empty segments or escapes (gateway check).",
    "throttled": "Too many failed attempts: refused for a while.",
    "rotation_not_allowed": "Tried to rotate itself without being allowed to.",
    "rotation_by_previous_password": "Tried to rotate itself with its previous password: "
    "only the current password may.",
    "rotation_too_soon": "Tried to rotate itself again within a minute of its last rotation.",
    "stored_hash_unusable": "The stored password hash is damaged: contact the administrators.",
    "owner_not_admin": "Called an API only administrators may grant, and its owner is no "
    "longer an administrator.",
    "pending_approval": "The key waits for an administrator's approval (key policy).",
    "out_of_policy": "The key is out of the key policy: edit it to bring it back in.",
}
UNUSED_AFTER = datetime.timedelta(days=90)


def admins_only_message(api: Api) -> str:
    return f"Only administrators may grant the {api.name} API."


def latest_expiry_for(created_on: datetime.date) -> datetime.date:
    """The same calendar date one year later; 29 February gives 28 February."""
    try:
        return created_on.replace(year=created_on.year + 1)
    except ValueError:  # 29 February -> no such day next year
        return created_on.replace(year=created_on.year + 1, day=28)


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
    apis: "models.ManyToManyField[Api, KeyGrant]" = models.ManyToManyField(
        Api, through="KeyGrant", related_name="keys", verbose_name="APIs"
    )
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

    # The key policy (docs/design.md §12), kept by keys.actions and read by the API with the
    # key in its one query: a new key whose allowed IPs wait for an administrator, a key the
    # policy in force does not allow, and the allowed IPs outside the approved networks an
    # administrator approved for this key.
    awaiting_approval = models.BooleanField(
        default=False, editable=False, help_text="Refused until an administrator approves it."
    )
    out_of_policy = models.BooleanField(
        default=False, editable=False, help_text="Refused until an edit or the policy allows it."
    )
    approved_exceptions = models.JSONField(
        default=list,
        blank=True,
        editable=False,
        help_text="Allowed IPs outside the approved networks that an administrator approved.",
    )

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"
        permissions = [*permissions.DECLARED]
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
    def column_field(cls, name: str) -> models.Field:
        """The field called name, one that has a column (as every field the rules list has)."""
        field = cls._meta.get_field(name)
        assert isinstance(field, models.Field), name  # not a reverse relation
        return field

    @classmethod
    def columns_only_save_writes(cls) -> frozenset[str]:
        """Fields (and their columns) a bulk update() may never write: it would skip the rules."""
        names = (*cls.NEVER_CHANGES, "revoked_at", "revoked_by", "revoke_reason")
        fields = [cls.column_field(name) for name in names]
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
        read_only=(),
        description: str = "",
        key: "ApiKey | None" = None,
        created_at: datetime.datetime | None = None,
        justification: str = "",
        exempt=(),
    ) -> dict:
        """The fields of a new key (or of `key`, edited), checked against every key rule.

        Returns them cleaned (name stripped, networks normalised) or raises ValidationError
        with every broken rule under its field's name. The form, the actions and the admin
        call this; nothing else restates a rule.

        The key policy is one more rule: its lifetime and its APIs per role are errors; allowed
        IPs outside the approved networks (and not approved for this key, or `exempt`) need a
        `justification`, and come back as `needs_approval`.
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
        elif grant := cls.grant_errors(owner, apis, read_only):
            errors["apis"] = grant
        description = (description or "").strip()
        if len(description) > MAX_DESCRIPTION:
            errors["description"] = [f"At most {MAX_DESCRIPTION} characters."]
        if key is not None and key.is_revoked:
            errors["__all__"] = ["A revoked key cannot be changed."]
        policy = KeyPolicy.current()
        exempt = [*exempt, *(key.approved_exceptions if key is not None else [])]
        outside = [] if "allowed_ips" in errors else policy.networks_outside(networks, exempt)
        justification = (justification or "").strip()
        if outside and not justification:
            shown = ", ".join(display_network(n) for n in outside)
            errors["justification"] = [
                f"{shown} {'lies' if len(outside) == 1 else 'lie'} outside the approved "
                "networks: say why the key needs it, and an administrator will decide; or use "
                "addresses inside the approved networks."
            ]
        elif len(justification) > MAX_DESCRIPTION:
            errors["justification"] = [f"At most {MAX_DESCRIPTION} characters."]
        if "expires_on" not in errors and expires_on is not None:
            today = local_date(created_at) if key is None else local_date()
            found = policy.violations(
                networks=[], exempt=[], expires_on=expires_on, apis=apis, roles=roles_of(owner),
                today=today,
            )  # fmt: skip
            for field, messages in found.items():
                errors.setdefault(field, []).extend(messages)
        if errors:
            raise ValidationError(errors)
        return {
            "name": name,
            "description": description,
            "expires_on": expires_on,
            "networks": networks,
            "apis": apis,
            # Read only is a property of a grant: only APIs granted can be read only.
            "read_only": sorted(set(read_only) & {api.slug for api in apis}),
            "needs_approval": outside,
            "justification": justification if outside else "",
        }

    @staticmethod
    def grant_errors(owner, apis, read_only) -> list[str]:
        """What is wrong with granting `apis` to a key of `owner`, those whose slugs are in
        `read_only` read only: an admins-only API for someone who is not an administrator (only
        owners grant their keys APIs, so the owner is the one granting), a read-only API read
        and write."""
        errors = []
        for api in apis:
            if api.admins_only and not owner.has_perm(permissions.GRANT_ADMINS_ONLY_APIS):
                errors.append(admins_only_message(api))
            elif api.read_only and api.slug not in read_only:
                errors.append(f"The {api.name} API can only be granted read only.")
        return errors

    def policy_violations(self, policy: KeyPolicy, roles=None) -> dict[str, list[str]]:
        """What of this key, as stored, `policy` does not allow (see KeyPolicy.violations).

        `roles`: its owner's (roles_of), when the caller read them for many keys at once."""
        return policy.violations(
            networks=[entry.network for entry in self.allowed_ips.all()],
            exempt=self.approved_exceptions,
            expires_on=self.expires_on,
            apis=[grant.api for grant in self.grants.all()],
            roles=roles_of(self.owner) if roles is None else roles,
        )

    @property
    def policy_state(self) -> str:
        """pending_approval, out_of_policy or "": why the API refuses a key not revoked."""
        if self.is_revoked:
            return ""
        if self.awaiting_approval:
            return "pending_approval"
        return "out_of_policy" if self.out_of_policy else ""

    def open_request(self):
        """The request of this key waiting for an administrator, if any."""
        return self.requests.open().first()

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
            return user.has_perm(permissions.MANAGE_OWN_KEYS)
        return user.has_perm(permissions.REVOKE_ANY_KEY)

    # --- least privilege: what the door saw ----------------------------------------------

    def refused_addresses(self, at: datetime.datetime | None = None):
        """Addresses refused as not allowed in the last 30 days, newest first."""
        return _refused(self.callers.all(), at).order_by("-last_seen")

    def unused_networks(self, at: datetime.datetime | None = None) -> list[str]:
        """Allowed entries no successful call came from in 90 days (a key that old)."""
        if (since := self._unused_since(at)) is None:
            return []
        used = self.callers.filter(refused=False, last_seen__gte=since).values_list("ip", flat=True)
        return _unused_networks(self.allowed_ips.all(), list(used))

    def read_only_slugs(self) -> list[str]:
        """The slugs of the APIs this key may only read (GET, HEAD, OPTIONS)."""
        grants = KeyGrant.objects.filter(apikey=self, access=KeyGrant.Access.READ)
        return sorted(grants.values_list("api__slug", flat=True))

    def grants_for_display(self) -> list["KeyGrant"]:
        """Each granted API with its access, in catalogue order."""
        return list(self.grants.select_related("api").order_by("api__position", "api__name"))

    def unused_apis(self, at: datetime.datetime | None = None) -> list["Api"]:
        """Granted APIs not called in 90 days (a key that old)."""
        if (since := self._unused_since(at)) is None:
            return []
        used = set(self.api_uses.filter(last_used_at__gte=since).values_list("api_id", flat=True))
        return _unused_apis(self.apis.all(), used)

    def _unused_since(self, at: datetime.datetime | None) -> datetime.datetime | None:
        """The start of the 90 days without use that mark an entry or API, if the key is that
        old; None for a younger key (nothing of it is unused yet)."""
        since = (at or timezone.now()) - UNUSED_AFTER
        return None if self.created_at > since else since

    @classmethod
    def advised(cls, keys: list["ApiKey"], at: datetime.datetime | None = None) -> set[int]:
        """The ids of those of `keys` (read with_listing_data) whose page advises narrowing
        them: an active key with an address refused as not allowed, or an allowed entry or
        API unused (the rules of the three methods above). At most three queries, however
        many keys."""
        from keys.models.usage import KeyApiUse, KeyCaller  # they import this module

        at = at or timezone.now()
        active = [key for key in keys if key.status(at) == cls.Status.ACTIVE]
        if not active:
            return set()
        callers = KeyCaller.objects
        refused = _refused(callers.filter(key__in=active), at)
        advised = set(refused.values_list("key_id", flat=True).distinct())
        old = [key for key in active if key.pk not in advised and key._unused_since(at)]
        if not old:
            return advised
        since = at - UNUSED_AFTER
        used_ips, used_apis = defaultdict(list), defaultdict(set)
        used = callers.filter(key__in=old, refused=False, last_seen__gte=since)
        for key_id, ip in used.values_list("key_id", "ip"):
            used_ips[key_id].append(ip)
        api_uses = KeyApiUse.objects.filter(key__in=old, last_used_at__gte=since)
        for key_id, api_id in api_uses.values_list("key_id", "api_id"):
            used_apis[key_id].add(api_id)
        return advised | {
            key.pk
            for key in old
            if _unused_networks(key.allowed_ips.all(), used_ips[key.pk])
            or _unused_apis([grant.api for grant in key.grants.all()], used_apis[key.pk])
        }

    def may_be_edited_by(self, user) -> bool:
        """Only the owner edits a key, and only while it is not revoked."""
        return (
            not self.is_revoked
            and self.owner_id == user.pk
            and user.has_perm(permissions.MANAGE_OWN_KEYS)
        )

    def may_be_renewed_by(self, user) -> bool:
        """The owner renews a key not revoked and not already being replaced."""
        return self.may_be_edited_by(user) and not self.is_being_replaced

    def may_get_a_new_password_from(self, user) -> bool:
        """The owner regenerates the password of an active key not being replaced: a key
        being replaced has a successor for that (keys.actions.regenerate_password)."""
        return self.may_be_renewed_by(user) and self.status() == self.Status.ACTIVE

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
        fields = [self.column_field(n).attname for n in self.NEVER_CHANGES]
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
            attname = self.column_field(name).attname
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
    def is_being_replaced(self) -> bool:
        """Renewed, and still working until its overlap ends (revoke_at)."""
        return self.revoke_at is not None and not self.is_revoked

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
        return previous_password_works_at(
            self.previous_password_hash, self.previous_password_valid_until, timezone.now()
        )


def previous_password_works_at(
    previous_password_hash: str,
    valid_until: datetime.datetime | None,
    at: datetime.datetime,
) -> bool:
    """After a regeneration the old password works until its overlap ends (`valid_until`)."""
    return bool(previous_password_hash) and valid_until is not None and at < valid_until


def _refused(callers, at: datetime.datetime | None):
    """The callers refused as not allowed in the last 30 days (the key page lists them)."""
    since = (at or timezone.now()) - REFUSED_ADDRESSES_SHOWN
    return callers.filter(refused=True, last_seen__gte=since)


def _unused_networks(entries, used_ips: list[str]) -> list[str]:
    """The allowed entries none of `used_ips` lies in."""
    return [
        entry.network
        for entry in entries
        if not any(ip_in_networks(ip, [entry.network]) for ip in used_ips)
    ]


def _unused_apis(apis, used_api_ids: set[int]) -> list["Api"]:
    return [api for api in apis if api.pk not in used_api_ids]


def key_status(revoked_at, expires_on: datetime.date, at=None, *, revoke_at=None) -> str:
    """Revoked (or past the end of its overlap after a renewal), expired (valid through the
    end of its date in TIME_ZONE) or active."""
    if revoked_at is not None or (revoke_at is not None and revoke_at <= (at or timezone.now())):
        return ApiKey.Status.REVOKED
    if expires_on < local_date(at):
        return ApiKey.Status.EXPIRED
    return ApiKey.Status.ACTIVE


class AllowedIpQuerySet(models.QuerySet):
    def bulk_create(self, objs, *args, **kwargs):
        objs = list(objs)
        for entry in objs:
            entry.set_range()
        return super().bulk_create(objs, *args, **kwargs)

    def overlapping(self, network: str):
        """Entries sharing at least one address with `network`."""
        version, first, last = address_range(network)
        return self.filter(version=version, first_address__lte=last, last_address__gte=first)

    def reaching_outside(self, network: str):
        """Entries holding at least one address that is not in `network`."""
        version, first, last = address_range(network)
        return self.filter(
            ~Q(version=version) | Q(first_address__lt=first) | Q(last_address__gt=last)
        )


class AllowedIp(models.Model):
    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="allowed_ips")
    network = models.CharField(
        max_length=43, help_text="Normalised IPv4/IPv6 network, e.g. 192.0.2.7/32 or 10.0.0.0/8."
    )
    # The network as numbers (keys.lib.networks.address_range), so All keys can ask the
    # database which keys allow addresses in or outside a network. Set by save() and
    # bulk_create() from `network`; never typed. Nullable so that adding them did not
    # rebuild the SQLite table (and drop its trigger, keys.guards); migration 0021 filled them.
    version = models.PositiveSmallIntegerField(null=True, editable=False)
    first_address = models.CharField(max_length=39, null=True, editable=False)  # noqa: DJ001
    last_address = models.CharField(max_length=39, null=True, editable=False)  # noqa: DJ001

    objects = AllowedIpQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        verbose_name = "allowed IP"
        constraints = [
            models.UniqueConstraint(fields=["key", "network"], name="allowed_ip_unique_per_key")
        ]

    def __str__(self) -> str:
        return display_network(self.network)

    def set_range(self) -> None:
        self.version, self.first_address, self.last_address = address_range(self.network)

    def save(self, *args, **kwargs) -> None:
        self.network = normalise_network(self.network)
        if self._state.adding and self.key.allowed_ips.count() >= MAX_ALLOWED_IPS:
            raise ValidationError(f"A key can have at most {MAX_ALLOWED_IPS} allowed IP entries.")
        self.set_range()
        super().save(*args, **kwargs)


class KeyGrantQuerySet(models.QuerySet):
    """Every way of writing grants meets the grant rules (ApiKey.grant_errors): the key's
    actions, and `key.apis.add()` or `KeyGrant.objects.create()` from a shell."""

    def bulk_create(self, objs, *args, **kwargs):
        objs = list(objs)
        flagged = Api.objects.filter(
            Q(admins_only=True) | Q(read_only=True), pk__in={grant.api_id for grant in objs}
        )
        if flagged_apis := {api.pk: api for api in flagged}:
            for grant in objs:
                if grant.api_id in flagged_apis:
                    grant.api = flagged_apis[grant.api_id]
                    grant.refuse_broken_rules()
        return super().bulk_create(objs, *args, **kwargs)

    def update(self, **kwargs):
        if kwargs.get("access", KeyGrant.Access.READ) != KeyGrant.Access.READ and (
            self.filter(api__read_only=True).exists()
        ):
            raise ValidationError({"apis": ["An API granted read only cannot be read and write."]})
        if {"api", "api_id", "apikey", "apikey_id"} & set(kwargs):
            raise ValueError("A grant's key and API never change: grant the key another API.")
        return super().update(**kwargs)


class KeyGrant(models.Model):
    """One API granted to a key, and how: read and write (every method) or read only.

    The table is the one the key's `apis` always had (keys_apikey_apis); `access` was added
    to it, existing grants becoming read and write, as CERRIX grants are.
    """

    class Access(models.TextChoices):
        WRITE = "write", "Read and write"
        READ = "read", "Read only"

    # Methods a read-only grant allows: they change nothing on a well-behaved API.
    READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

    apikey = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="grants")
    api = models.ForeignKey(Api, on_delete=models.CASCADE, related_name="grants")
    access = models.CharField(
        max_length=5,
        choices=Access.choices,
        default=Access.WRITE,
        help_text="Read only allows GET, HEAD and OPTIONS; read and write every method.",
    )

    objects = KeyGrantQuerySet.as_manager()

    class Meta:
        db_table = "keys_apikey_apis"
        unique_together = [("apikey", "api")]
        verbose_name = "granted API"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(access__in=["read", "write"]), name="key_grant_access_known"
            )
        ]

    def __str__(self) -> str:
        return f"{self.api} ({self.get_access_display().lower()})"

    def refuse_broken_rules(self) -> None:
        """Raise ValidationError if this grant breaks a grant rule (ApiKey.grant_errors)."""
        read_only = [self.api.slug] if self.access == self.Access.READ else []
        if errors := ApiKey.grant_errors(self.apikey.owner, [self.api], read_only):
            raise ValidationError({"apis": errors})

    def save(self, *args, **kwargs) -> None:
        self.refuse_broken_rules()
        super().save(*args, **kwargs)

    @classmethod
    def allows(cls, access: str, method: str) -> bool:
        """Whether a grant of `access` lets a request of `method` through."""
        return access == cls.Access.WRITE or method.upper() in cls.READ_METHODS
