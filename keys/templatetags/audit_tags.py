"""{{ event|event_summary }}: an audit event's details as one line of plain text."""

from django import template

from keys.models import REFUSAL_REASONS, AuditEvent

register = template.Library()

_LABELS = {
    "expires_on": "expiration date",
    "allowed_ips": "allowed IPs",
    "apis": "APIs",
    "threshold_days": "threshold (days)",
    "days_left": "days left",
    "keys_revoked": "keys revoked",
}


def _value(value) -> str:
    if isinstance(value, list):
        return ", ".join(_value(v) for v in value) or "none"
    if isinstance(value, dict):
        return "; ".join(f"{_LABELS.get(k, k)}: {_value(v)}" for k, v in sorted(value.items()))
    if value is None or value == "":
        return "—"
    return str(value)


@register.filter
def event_summary(event) -> str:
    details = dict(event.details or {})
    parts = []
    if reason := details.pop("reason", None):
        if event.action == AuditEvent.Action.USE_DENIED:  # a code: shown as its sentence
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
            name = _LABELS.get(field, field)
            parts.append(f"{name}: {_value(change['before'])} → {_value(change['after'])}")
    if set(details) == {"before", "after"}:  # expiry_shortened
        parts.append(f"{_value(details['before'])} → {_value(details['after'])}")
        details = {}
    parts.extend(f"{_LABELS.get(k, k)}: {_value(v)}" for k, v in sorted(details.items()))
    return "; ".join(parts)
