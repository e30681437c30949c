"""Expiry reminder mails: which threshold a key has reached, and the mail itself."""

import datetime

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse

from keys.audit import chain
from keys.models import ApiKey, AuditEvent

Action = AuditEvent.Action


def portal_url(view: str, key: ApiKey) -> str:
    """The absolute address of a key's page, for mails (PORTAL_URL, e.g. https://keys.example)."""
    return settings.PORTAL_URL.rstrip("/") + reverse(view, args=[key.identifier])


def reminder_threshold(key: ApiKey, thresholds: list[int], today: datetime.date) -> int | None:
    """The tightest threshold (days before expiry) the key has reached, if any."""
    days_left = (key.expires_on - today).days
    reached = [days for days in thresholds if days_left <= days]
    return min(reached) if reached else None


def send_expiry_reminder(key: ApiKey, *, threshold: int, today: datetime.date) -> bool:
    """Mail the owner that `key` expires soon, once per threshold; False if already sent.

    The mail goes out before the transaction that records it, so a slow or hung mail server
    (bounded by EMAIL_TIMEOUT) holds no lock: not the key's row, not the audit head that
    every audited write waits for. The event is recorded once the server took the mail. If
    sending fails, the error propagates and nothing is recorded: the next run tries again.
    So a threshold is recorded at most once, and mailed at least once; twice only if the
    process dies between sending and recording, or two runs mail the same key at once.
    """
    key = ApiKey.objects.select_related("owner").get(pk=key.pk)
    if _reminded(key, threshold):
        return False
    days_left = (key.expires_on - today).days
    details = {
        "threshold_days": threshold,
        "days_left": days_left,
        "expires_on": key.expires_on.isoformat(),
        "to": key.owner.email,
    }
    send_mail(
        subject=f"Your API key “{key.name}” expires on {key.expires_on.isoformat()}",
        message=render_to_string(
            "keys/expiry_reminder.txt",
            {"key": key, "days_left": days_left, "renew_url": portal_url("keys:renew", key)},
        ),
        from_email=None,
        recipient_list=[key.owner.email],
    )
    with transaction.atomic():
        # Checked again under the key's lock: a run that recorded it meanwhile mailed too.
        key = ApiKey.objects.select_for_update().select_related("owner").get(pk=key.pk)
        if not _reminded(key, threshold):
            chain.record(Action.EXPIRY_REMINDER, key=key, actor=None, details=details)
    return True


def _reminded(key: ApiKey, threshold: int) -> bool:
    """A reminder for this threshold or a tighter one was recorded (this one is pointless)."""
    sent = AuditEvent.objects.filter(key=key, action=Action.EXPIRY_REMINDER).values_list(
        "details", flat=True
    )
    return any(details.get("threshold_days", -1) <= threshold for details in sent)
