"""Changes of the key policy and decisions on requests (docs/design.md §12).

Each changes the data and appends its audit event in one transaction; the mails go out after
it is committed (keys.actions.policy_mail).
"""

from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from keys.actions import policy_mail
from keys.actions.keys import keep_policy_mark, key_snapshot, lock_policy, revoke_key
from keys.audit import chain
from keys.lib.networks import address_range, display_network
from keys.models import AllowedIp, ApiKey, AuditEvent, KeyPolicy, KeyRequest, roles_of
from keys.validators import allowlist, network_of

Action = AuditEvent.Action


# --- the policy and its dry run ---------------------------------------------------------------


@dataclass
class LeftOut:
    """A key a policy would leave out, and why (messages by key form field)."""

    key: ApiKey
    why: dict[str, list[str]]

    @property
    def reasons(self) -> list[str]:
        return [message for messages in self.why.values() for message in messages]


def keys_out_of(policy: KeyPolicy) -> list[LeftOut]:
    """Every usable key `policy` does not allow, oldest owner name first: the dry run."""
    # Each owner's roles asked once, through has_perm(): the portal's backends give staff's
    # permissions to every active user without a role, which no query of groups would see.
    roles_by_owner: dict[int, set[str]] = {}
    found = []
    keys = ApiKey.objects.usable().with_listing_data().order_by("owner__username", "name", "pk")
    for key in keys:
        if key.owner_id not in roles_by_owner:
            roles_by_owner[key.owner_id] = roles_of(key.owner)
        if why := key.policy_violations(policy, roles_by_owner[key.owner_id]):
            found.append(LeftOut(key, why))
    return found


def newly_out(candidate: KeyPolicy) -> list[LeftOut]:
    """The keys `candidate` would leave out of policy that are not marked out already."""
    already = set(ApiKey.objects.usable().filter(out_of_policy=True).values_list("pk", flat=True))
    return [left for left in keys_out_of(candidate) if left.key.pk not in already]


def candidate_policy(*, approved_networks, max_lifetime_days: int, api_roles: dict) -> KeyPolicy:
    """An unsaved policy with these values, checked; ValidationError under the form's names."""
    errors = {}
    try:
        networks = allowlist_of_networks(approved_networks)
    except ValidationError as error:
        errors["approved_networks"] = error.messages
        networks = []
    policy = KeyPolicy(
        pk=1,
        approved_networks=networks,
        max_lifetime_days=max_lifetime_days,
        api_roles={slug: sorted(roles) for slug, roles in api_roles.items()},
    )
    try:
        policy.full_clean(
            exclude=["approved_networks", "api_roles"],
            validate_unique=False,
            validate_constraints=False,
        )
    except ValidationError as error:
        errors.update(error.message_dict)
    if errors:
        raise ValidationError(errors)
    return policy


MAX_APPROVED_NETWORKS = 200


def allowlist_of_networks(entries) -> list[str]:
    """Approved networks, in canonical form (keys.validators.network_of: shape, host bits,
    IPv4-mapped addresses), sorted; any width (an organisation's 10.0.0.0/8 is fine), no
    duplicates. ValidationError listing every broken entry."""
    errors, networks = [], []
    for entry in entries:
        if not entry.strip():
            continue
        try:
            networks.append(network_of(entry))
        except ValidationError as error:
            errors.extend(error.messages)
    if len(set(networks)) != len(networks):
        errors.append("Each network may be listed only once.")
    if len(networks) > MAX_APPROVED_NETWORKS:
        errors.append(f"At most {MAX_APPROVED_NETWORKS} approved networks.")
    if errors:
        raise ValidationError(errors)
    return sorted(networks, key=address_range)


def change_policy(
    *,
    actor,
    approved_networks,
    max_lifetime_days: int,
    api_roles: dict,
    ip: str | None = None,
) -> tuple[KeyPolicy, list[ApiKey], list[ApiKey]]:
    """Put a new policy in force: the keys it leaves out are refused (out_of_policy), those
    it lets back in work again. Returns the policy, the keys newly out and those back in."""
    candidate = candidate_policy(
        approved_networks=approved_networks,
        max_lifetime_days=max_lifetime_days,
        api_roles=api_roles,
    )
    with transaction.atomic():
        stored = KeyPolicy.objects.select_for_update().filter(pk=1).first() or KeyPolicy(pk=1)
        before = stored.snapshot()
        candidate.changed_at = timezone.now()
        candidate.save()
        out = {left.key.pk: left.key for left in keys_out_of(candidate)}
        marked = ApiKey.objects.usable().filter(out_of_policy=True)
        was_out = {key.pk: key for key in marked.select_related("owner")}
        newly = [key for pk, key in out.items() if pk not in was_out]
        back = [key for pk, key in was_out.items() if pk not in out]
        for keys, mark in ((newly, True), (back, False)):
            for key in keys:
                ApiKey.objects.filter(pk=key.pk).update(
                    out_of_policy=mark, revision=key.revision + 1
                )
        changes = chain.changes(before, candidate.snapshot())
        if changes or newly or back:
            chain.record(
                Action.POLICY_CHANGED,
                actor=actor,
                ip=ip,
                details={
                    "changes": changes,
                    "keys_out_of_policy": sorted(key.identifier for key in newly),
                    "keys_back_in_policy": sorted(key.identifier for key in back),
                },
            )
    policy_mail.out_of_policy_to_owners(newly)
    return candidate, newly, back


# --- requests ---------------------------------------------------------------------------------


def _open(request: KeyRequest) -> KeyRequest:
    """The request, locked, if it is still open; else ValidationError."""
    request = KeyRequest.objects.select_for_update().select_related("key").get(pk=request.pk)
    if request.decided_at is not None:
        raise ValidationError("This request was decided already.")
    return request


def approve_request(
    request: KeyRequest, *, actor, reason: str = "", ip: str | None = None
) -> KeyRequest:
    """Approve the allowed IPs of a request: a new key works from now on; a change replaces
    the key's allowed IPs. The entries outside the approved networks stay approved for it."""
    with transaction.atomic():
        lock_policy()  # before the key's row, as every action that marks a key
        request = _open(request)
        key = ApiKey.objects.select_for_update().get(pk=request.key_id)
        if key.is_revoked:
            raise ValidationError("The key is revoked: nothing to approve.")
        before = key_snapshot(key)
        key.approved_exceptions = sorted({*key.approved_exceptions, *request.outside})
        key.awaiting_approval = False
        key.revision += 1
        key.save()
        if request.kind == KeyRequest.Kind.CHANGE:
            networks = allowlist(request.networks)
            key.allowed_ips.exclude(network__in=networks).delete()
            current = set(key.allowed_ips.values_list("network", flat=True))
            AllowedIp.objects.bulk_create(
                AllowedIp(key=key, network=n) for n in networks if n not in current
            )
        keep_policy_mark(key)
        request.decided_at, request.decided_by = timezone.now(), actor
        request.decision, request.reason = KeyRequest.Decision.APPROVED, reason.strip()
        request.save()
        chain.record(
            Action.REQUEST_APPROVED,
            key=key,
            actor=actor,
            ip=ip,
            details={
                "kind": request.kind,
                "reason": request.reason,
                "approved": [display_network(n) for n in request.outside],
                **chain.changes(before, key_snapshot(key)),
            },
        )
    policy_mail.decision_to_owner(request)
    return request


def deny_request(request: KeyRequest, *, actor, reason: str, ip: str | None = None) -> KeyRequest:
    """Deny a request, with a reason for its owner. A denied new key is revoked: it can
    never be used, and its name is free again; a denied change leaves the key as it is."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": ["Give a reason for denying: the owner reads it."]})
    with transaction.atomic():
        request = _open(request)
        request.decided_at, request.decided_by = timezone.now(), actor
        request.decision, request.reason = KeyRequest.Decision.DENIED, reason
        request.save()
        chain.record(
            Action.REQUEST_DENIED,
            key=request.key,
            actor=actor,
            ip=ip,
            details={"kind": request.kind, "reason": reason},
        )
        if request.kind == KeyRequest.Kind.NEW and not request.key.is_revoked:
            revoke_key(request.key, actor=actor, reason=f"Request denied: {reason}", ip=ip)
    policy_mail.decision_to_owner(request)
    return request
