"""{% if key|revocable_by:user %}: the model's rules, for templates (they restate none)."""

from django import template
from django.conf import settings
from django.utils import dateformat, timezone

from keys.lib.networks import display_network
from keys.models import REFUSAL_REASONS, KeyRequest, local_date

register = template.Library()


@register.filter
def revocable_by(key, user) -> bool:
    return not key.is_revoked and key.may_be_revoked_by(user)


@register.filter
def editable_by(key, user) -> bool:
    return key.may_be_edited_by(user)


@register.filter
def renewable_by(key, user) -> bool:
    return key.may_be_renewed_by(user)


@register.filter
def regenerable_by(key, user) -> bool:
    return key.may_get_a_new_password_from(user)


@register.filter
def status_words(key) -> str:
    """The status a list shows: "Replaced, stops <moment>" for an active key being replaced."""
    if key.is_being_replaced:
        return f"Replaced, stops {moment(key.revoke_at)}"
    return key.get_status_display()


@register.filter
def policy_words(key) -> str:
    """What the key policy says of a key not revoked: "Pending approval", "Out of policy"."""
    return {"pending_approval": "Pending approval", "out_of_policy": "Out of policy"}.get(
        key.policy_state, ""
    )


@register.filter
def status_class(key) -> str:
    return "replaced" if key.is_being_replaced else key.current_status


@register.filter
def moment(value) -> str:
    """Every time the portal shows, in one format with its zone: 2026-11-28 14:05 CET."""
    if not value:
        return ""
    return dateformat.format(timezone.localtime(value), "Y-m-d H:i T")


@register.filter
def duration(seconds: int) -> str:
    """A number of seconds in words, at most two units: "1 hour", "7 days", "2 hours 30 minutes"."""
    if seconds <= 0:
        return "none"
    parts = []
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {unit}{'s' if count != 1 else ''}")
    return " ".join(parts[:2])


@register.filter
def revoker_words(key) -> str:
    """Who revoked the key: "the owner", an admin's name, or the portal itself."""
    if key.revoked_by_id is None:
        return "the portal"
    if key.revoked_by_id == key.owner_id:
        return "the owner"
    return key.revoked_by.get_username()


@register.filter
def expires_in(key) -> str:
    """ "expires in N days" (today, tomorrow) for a key that is not revoked or expired."""
    if key.status() != key.Status.ACTIVE:
        return ""
    days = (key.expires_on - local_date()).days
    if days == 0:
        return "expires at the end of today"
    if days == 1:
        return "expires at the end of tomorrow"
    return f"expires in {days} days"


@register.filter
def expiring_soon(key) -> bool:
    """Inside the expiry reminder window (the widest of KEYS_EXPIRY_REMINDER_DAYS)."""
    window = max(settings.KEYS_EXPIRY_REMINDER_DAYS or [0])
    active = key.status() == key.Status.ACTIVE
    return active and (key.expires_on - local_date()).days <= window


@register.filter
def reason_text(code: str) -> str:
    """Why a call was refused, as a sentence (the CSV keeps the code)."""
    return REFUSAL_REASONS.get(code, code)


@register.filter
def address(network: str) -> str:
    """An allowed network as the key page shows it: a single address without its /32 or /128."""
    return display_network(network)


@register.simple_tag
def open_request_count() -> int:
    """How many requests wait for an administrator (the header's Requests link)."""
    return KeyRequest.objects.open().count()
