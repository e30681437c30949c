"""{{ event|event_summary:api_names }} and {{ event|actor_words }}: an audit event in words.

Words, not codes: field names as labels, yes/no, times in the portal's zone (as `moment`
shows them), durations in hours and days, APIs by name when the page passes `api_names`
(Api.objects.names(); events keep the slugs, as the CSV does), and who acted as a reader
says it ("the owner", "an unauthenticated caller"), never the recorded `api:ckid_…` label.
The CSV export keeps the recorded values.
"""

import re

from django import template
from django.utils.dateparse import parse_datetime

from keys.models import REFUSAL_REASONS, AuditEvent
from keys.templatetags.key_rules import duration, moment

register = template.Library()

Action = AuditEvent.Action

_LABELS = {
    "expires_on": "expiration date",
    "allowed_ips": "allowed IPs",
    "apis": "APIs",
    "read_only_apis": "read-only APIs",
    "threshold_days": "threshold (days)",
    "days_left": "days left",
    "keys_revoked": "keys revoked",
    "overlap_seconds": "old password overlap",
    "previous_password_valid_until": "old password stops",
    "replaced_by": "replaced by",
    "revoke_at": "old key stops",
    "ended_at": "stopped",
    "first_call_from": "first call from",
    "uses": "calls",
    "count": "calls",
    "replaces": "renews",
    "scim": "SCIM request",
    "scim_external_id": "identity provider's id (externalId)",
    "subject": "provider's id (sub)",
}
# Details the rest of the line says already: who acted (the actor column).
_SAID_ELSEWHERE = {"by"}
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")

# Fields that hold API slugs, shown by name.
_API_FIELDS = ("apis", "read_only_apis")

# Who acted, for the recorded labels that name no person (keys.api.usage.UNAUTHENTICATED).
_MACHINES = {
    "system": "the portal",
    "leak report": "a leak report",
    "unauthenticated caller": "an unauthenticated caller",
    "SCIM": "the identity provider (SCIM)",  # portal/scim/provisioning.py
    "single sign-on": "the single sign-on provider",  # portal/sso.py: roles from its claim
}


def _label(field: str) -> str:
    return _LABELS.get(field, field.replace("_", " "))


def _value(value, api_names=None, field: str = "") -> str:
    if isinstance(value, list):
        return ", ".join(_value(v, api_names) for v in value) or "none"
    if isinstance(value, dict):
        return "; ".join(
            f"{_label(k)}: {_value(v, api_names if k in _API_FIELDS else None, k)}"
            for k, v in sorted(value.items())
        )
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None or value == "":
        return "—"
    if field.endswith("_seconds") and isinstance(value, int):
        return duration(value)
    if isinstance(value, str) and _TIMESTAMP.match(value) and (at := parse_datetime(value)):
        return moment(at)
    if api_names:
        return api_names.get(value, str(value))
    return str(value)


@register.filter
def event_summary(event, api_names=None) -> str:
    details = {k: v for k, v in (event.details or {}).items() if k not in _SAID_ELSEWHERE}
    parts: list[str] = []
    reason: str | None = details.pop("reason", None)
    if reason:
        if event.action == Action.USE_DENIED:  # a code: shown as its sentence
            parts.append(REFUSAL_REASONS.get(reason, reason))
        else:
            parts.append(f"“{reason}”")
    if (changes := details.pop("changes", None)) is None:
        # key_edited holds its changes at the top level, other events under "changes".
        changes = {
            k: details.pop(k)
            for k in list(details)
            if isinstance(details[k], dict) and set(details[k]) == {"before", "after"}
        }
    for field, change in sorted(changes.items()):
        if isinstance(change, dict) and set(change) == {"before", "after"}:
            names = api_names if field in _API_FIELDS else None
            before = _value(change["before"], names, field)
            after = _value(change["after"], names, field)
            parts.append(f"{_label(field)}: {before} → {after}")
    if set(details) == {"before", "after"}:  # expiry_shortened
        parts.append(f"{_value(details['before'])} → {_value(details['after'])}")
        details = {}
    parts.extend(
        f"{_label(k)}: {_value(v, api_names if k in _API_FIELDS else None, k)}"
        for k, v in sorted(details.items())
    )
    if len(parts) > 1:  # a sentence's full stop before "; …" would read as the end
        parts[0] = parts[0].removesuffix(".")
    return "; ".join(parts)


@register.filter
def actor_words(event) -> str:
    """Who acted: "the owner" (of the event's key), a person's name, or what a machine was."""
    if event.actor_id is not None:
        if event.key_identifier and event.actor_id == event.owner_id:
            return "the owner"
        return event.actor_label  # the name the person had then
    label = event.actor_label
    if label.startswith("api:"):
        # The key itself: a refusal names it only when the caller proved the password
        # (keys.api.usage); anyone else is an "unauthenticated caller".
        if event.action == Action.USE_DENIED:
            return "a caller with the key's password"
        if event.action == Action.PASSWORD_REGENERATED:
            return "the key itself (self-rotation)"
        return "callers with this key"
    return _MACHINES.get(label, label)
