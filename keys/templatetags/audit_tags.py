"""{{ event|event_summary:api_names }}: an audit event's details as one line of plain text.

Words, not codes: field names as labels, yes/no, and APIs by name when the page passes
`api_names` (Api.objects.names(); events keep the slugs, as the CSV does).
"""

from django import template

from keys.models import REFUSAL_REASONS, AuditEvent

register = template.Library()

_LABELS = {
    "expires_on": "expiration date",
    "allowed_ips": "allowed IPs",
    "apis": "APIs",
    "read_only_apis": "read-only APIs",
    "threshold_days": "threshold (days)",
    "days_left": "days left",
    "keys_revoked": "keys revoked",
}


# Fields that hold API slugs, shown by name.
_API_FIELDS = ("apis", "read_only_apis")


def _label(field: str) -> str:
    return _LABELS.get(field, field.replace("_", " "))


def _value(value, api_names=None) -> str:
    if isinstance(value, list):
        return ", ".join(_value(v, api_names) for v in value) or "none"
    if isinstance(value, dict):
        return "; ".join(
            f"{_label(k)}: {_value(v, api_names if k in _API_FIELDS else None)}"
            for k, v in sorted(value.items())
        )
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None or value == "":
        return "—"
    if api_names:
        return api_names.get(value, str(value))
    return str(value)


@register.filter
def event_summary(event, api_names=None) -> str:
    details = dict(event.details or {})
    parts: list[str] = []
    reason: str | None = details.pop("reason", None)
    if reason:
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
            names = api_names if field in _API_FIELDS else None
            before, after = _value(change["before"], names), _value(change["after"], names)
            parts.append(f"{_label(field)}: {before} → {after}")
    if set(details) == {"before", "after"}:  # expiry_shortened
        parts.append(f"{_value(details['before'])} → {_value(details['after'])}")
        details = {}
    parts.extend(
        f"{_label(k)}: {_value(v, api_names if k in _API_FIELDS else None)}"
        for k, v in sorted(details.items())
    )
    return "; ".join(parts)
