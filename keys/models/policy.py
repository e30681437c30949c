"""The administrator's key policy (docs/design.md §12) and the requests it gives rise to.

KeyPolicy is one row (id 1): the approved networks, the maximum lifetime and which roles may
grant which API. Its rules are asked by the key model (ApiKey.validated, policy_violations),
so the form, the actions and the shell obey the same policy. It changes only through
keys.actions.change_policy, which records `policy_changed` and marks the keys it leaves out
of policy (ApiKey.out_of_policy, read by the API with the key, in its one query).

A KeyRequest is a key, or a change of its allowed IPs, waiting for an administrator because
its allowed IPs lie outside the approved networks (keys.actions.requests).
"""

import datetime

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from keys import permissions
from keys.lib.dates import local_date
from keys.lib.networks import display_network, network_within

MAX_LIFETIME_DAYS = 365
# The roles that own keys, and the permission that marks each (portal/roles.py gives them);
# an auditor owns no keys, so grants nothing.
GRANTING_ROLES = {"staff": permissions.MANAGE_OWN_KEYS, "admin": permissions.REVOKE_ANY_KEY}
ROLE_LABELS = {"staff": "Staff", "admin": "Admins"}


class KeyPolicy(models.Model):
    """What every key must respect; one row, read with KeyPolicy.current()."""

    approved_networks = models.JSONField(
        default=list,
        blank=True,
        help_text="Normalised CIDRs; a key's allowed IPs outside them need an approval. "
        "None: no restriction.",
    )
    max_lifetime_days = models.PositiveSmallIntegerField(
        "maximum lifetime (days)",
        default=MAX_LIFETIME_DAYS,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_LIFETIME_DAYS)],
        help_text="A key expires at most this many days after today (at most 365).",
    )
    api_roles = models.JSONField(
        default=dict,
        blank=True,
        help_text="{API slug: [roles that may grant it]}; an API not listed: every role.",
    )
    changed_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "key policy"
        constraints = [
            models.CheckConstraint(condition=Q(id=1), name="key_policy_is_one_row"),
            models.CheckConstraint(
                condition=Q(max_lifetime_days__gte=1, max_lifetime_days__lte=MAX_LIFETIME_DAYS),
                name="key_policy_lifetime_at_most_a_year",
            ),
        ]

    def __str__(self) -> str:
        return "Key policy"

    @classmethod
    def current(cls) -> "KeyPolicy":
        """The policy in force (the defaults until an administrator saves one)."""
        return cls.objects.filter(pk=1).first() or cls(pk=1)

    def snapshot(self) -> dict:
        """What the history records of the policy, before and after a change."""
        return {
            "approved_networks": [display_network(n) for n in self.approved_networks],
            "max_lifetime_days": self.max_lifetime_days,
            "api_roles": {slug: sorted(roles) for slug, roles in sorted(self.api_roles.items())},
        }

    # --- the rules -------------------------------------------------------------------------

    def networks_outside(self, networks, exempt=()) -> list[str]:
        """The entries of `networks` not inside an approved network, nor approved for the key
        (`exempt`); none while no network is approved."""
        if not self.approved_networks:
            return []
        return [
            network
            for network in networks
            if network not in exempt and not network_within(network, self.approved_networks)
        ]

    def latest_expiry(self, today: datetime.date | None = None) -> datetime.date:
        """The latest expiration date the policy allows a key today. 365 days means a year:
        a year holding 29 February has 366 days, which the key's own one-year rule allows."""
        today = today or local_date()
        latest = today + datetime.timedelta(days=self.max_lifetime_days)
        if self.max_lifetime_days < MAX_LIFETIME_DAYS:
            return latest
        try:
            return max(latest, today.replace(year=today.year + 1))
        except ValueError:  # 29 February: the key's rule says 28 February, earlier than latest
            return latest

    def roles_granting(self, slug: str) -> list[str]:
        return list(self.api_roles.get(slug, GRANTING_ROLES))

    def may_grant(self, slug: str, roles) -> bool:
        """Whether an owner with `roles` may grant the API `slug`: any owner while the policy
        does not restrict it (so keys made outside the portal's pages, an auditor's in a
        script, are not refused by a policy nobody set)."""
        if slug not in self.api_roles:
            return True
        return any(role in roles for role in self.api_roles[slug])

    def violations(
        self,
        *,
        networks,
        exempt,
        expires_on: datetime.date,
        apis,
        roles,
        today: datetime.date | None = None,
    ) -> dict[str, list[str]]:
        """What of a key (its networks, expiry, APIs as Api objects, its owner's roles) the
        policy does not allow, as messages under the key form's field names."""
        found: dict[str, list[str]] = {}
        if outside := self.networks_outside(networks, exempt):
            shown = ", ".join(display_network(n) for n in outside)
            found["allowed_ips"] = [f"Outside the approved networks: {shown}."]
        latest = self.latest_expiry(today)
        if expires_on > latest:
            found["expires_on"] = [
                f"The key policy allows at most {self.max_lifetime_days} days: "
                f"{latest.isoformat()} at the latest."
            ]
        if refused := [api.name for api in apis if not self.may_grant(api.slug, roles)]:
            found["apis"] = [f"The key policy does not let your role grant {', '.join(refused)}."]
        return found


def roles_of(user) -> set[str]:
    """The roles of `user` that may own keys (staff, admin)."""
    return {role for role, perm in GRANTING_ROLES.items() if user.has_perm(perm)}


class KeyRequestQuerySet(models.QuerySet):
    def open(self):
        return self.filter(decided_at=None)


class KeyRequest(models.Model):
    """A new key, or a change of a key's allowed IPs, waiting for an administrator."""

    class Kind(models.TextChoices):
        NEW = "new", "New key"
        CHANGE = "change", "Change of allowed IPs"

    class Decision(models.TextChoices):
        APPROVED = "approved", "Approved"
        DENIED = "denied", "Denied"
        WITHDRAWN = "withdrawn", "Withdrawn"  # the owner saved another change meanwhile

    key = models.ForeignKey("keys.ApiKey", on_delete=models.PROTECT, related_name="requests")
    kind = models.CharField(max_length=6, choices=Kind.choices)
    networks = models.JSONField(
        help_text="The allowed IPs asked for (the whole list); those outside need approval."
    )
    outside = models.JSONField(help_text="The entries outside the approved networks.")
    justification = models.TextField(max_length=1000)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    requested_at = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decision = models.CharField(max_length=9, choices=Decision.choices, blank=True)
    reason = models.CharField(max_length=500, blank=True)

    objects = KeyRequestQuerySet.as_manager()

    class Meta:
        ordering = ["requested_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["key"], condition=Q(decided_at=None), name="key_request_one_open_per_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for {self.key_id}"

    @property
    def networks_shown(self) -> list[str]:
        return [display_network(n) for n in self.networks]

    @property
    def outside_shown(self) -> list[str]:
        return [display_network(n) for n in self.outside]


def users_with_perm(users, perm: str):
    """Active `users` (a User queryset) holding `perm` through a group, directly or as
    superusers: Django's with_perm() wants one backend named, and the portal has two."""
    app_label, codename = perm.split(".")
    through_group = Q(
        groups__permissions__codename=codename,
        groups__permissions__content_type__app_label=app_label,
    )
    direct = Q(
        user_permissions__codename=codename,
        user_permissions__content_type__app_label=app_label,
    )
    return users.filter(Q(is_superuser=True) | through_group | direct, is_active=True).distinct()
