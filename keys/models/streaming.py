"""Where the audit history streams to (docs/design.md §11): one row per destination.

A destination holds its configuration (changed only through keys.actions.streaming, audited)
and its delivery state (written by the sender, keys.audit.delivery, not audited: an event per
acknowledged batch would itself need streaming). `last_acked_seq` is the one number delivery
trusts: every event after it is still to be sent, so a restart, an outage or a killed sender
resends from there (at least once, in order, never a gap).
"""

import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

SECRET_BYTES = 32


def new_identifier() -> str:
    return "dst_" + secrets.token_hex(6)


def new_secret() -> str:
    """A webhook signing secret: 256 random bits, hex."""
    return secrets.token_hex(SECRET_BYTES)


class StreamDestinationQuerySet(models.QuerySet):
    def active(self):
        return self.filter(is_active=True)


class StreamDestination(models.Model):
    class Kind(models.TextChoices):
        WEBHOOK = "webhook", "HTTPS webhook (JSON lines)"
        SYSLOG_TCP = "syslog_tcp", "Syslog RFC 5424 over TCP"
        SYSLOG_TLS = "syslog_tls", "Syslog RFC 5424 over TLS"

    identifier = models.CharField(max_length=16, unique=True, default=new_identifier)
    name = models.CharField(max_length=100, unique=True, help_text="A name for people.")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.WEBHOOK)
    url = models.CharField(
        "URL",
        max_length=500,
        blank=True,
        help_text="Webhook only: https://… (batches of JSON lines are POSTed here).",
    )
    host = models.CharField(max_length=255, blank=True, help_text="Syslog only: the receiver.")
    port = models.PositiveIntegerField(null=True, blank=True, help_text="Syslog only.")
    secret = models.CharField(
        max_length=200, blank=True, help_text="Webhook only: the HMAC-SHA256 signing secret."
    )
    headers = models.JSONField(
        default=dict, blank=True, help_text="Webhook only: extra request headers, name → value."
    )
    batch_size = models.PositiveIntegerField(
        default=100, help_text="At most this many events per webhook request or syslog connection."
    )
    is_active = models.BooleanField("Active", default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    # Delivery state, written by the sender only.
    last_acked_seq = models.PositiveBigIntegerField(
        default=0, help_text="Every event up to this sequence number was acknowledged."
    )
    sent = models.PositiveBigIntegerField(default=0, help_text="Events acknowledged.")
    failed = models.PositiveBigIntegerField(default=0, help_text="Attempts that failed.")
    last_error = models.CharField(max_length=300, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    # The sender holding the destination (claimed under a row lock, keys.audit.delivery).
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    objects = StreamDestinationQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(batch_size__gte=1) & models.Q(batch_size__lte=1000),
                name="stream_batch_size_1_to_1000",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_webhook(self) -> bool:
        return self.kind == self.Kind.WEBHOOK

    @property
    def target(self) -> str:
        """Where it sends, for people and the history: the URL without its query values (some
        receivers take a token there), or host:port."""
        return url_for_people(self.url) if self.is_webhook else f"{self.host}:{self.port}"

    def oldest_unsent_at(self):
        """The time of the first event not yet acknowledged; None when none is waiting."""
        from keys.models.audit import AuditEvent, AuditHead

        head = AuditHead.objects.values_list("seq", flat=True).get(pk=1)
        if self.last_acked_seq >= head:
            return None
        return (
            AuditEvent.objects.filter(seq=self.last_acked_seq + 1).values_list("at", flat=True)
        ).first()

    def lag_seconds(self, now) -> float:
        """Now minus the time of the oldest unsent event, or 0 when every event was acknowledged."""
        oldest = self.oldest_unsent_at()
        return 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())

    def status(self, now) -> dict:
        """Delivery figures, as the page and /readyz show them."""
        return {
            "kind": self.kind,
            "active": self.is_active,
            "last_acked_seq": self.last_acked_seq,
            "sent": self.sent,
            "failed": self.failed,
            "lag_seconds": round(self.lag_seconds(now), 1),
            "last_error": self.last_error,
            "last_error_at": self.last_error_at.isoformat() if self.last_error_at else None,
        }

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.is_webhook:
            if reason := webhook_url_problem(self.url):
                errors["url"] = reason
        else:
            if not self.host:
                errors["host"] = "Give the syslog receiver's host name or address."
            if not self.port or not 1 <= self.port <= 65535:
                errors["port"] = "Give a port between 1 and 65535."
        if not 1 <= self.batch_size <= 1000:
            errors["batch_size"] = "Between 1 and 1000."
        if errors:
            raise ValidationError(errors)


def url_for_people(url: str) -> str:
    """The URL with each query value replaced by "…": what pages and the history show."""
    base, question, query = url.partition("?")
    if not question:
        return url
    names = [pair.partition("=")[0] for pair in query.split("&") if pair]
    return base + "?" + "&".join(f"{name}=…" for name in names)


def webhook_url_problem(url: str) -> str | None:
    """Why `url` may not receive the history; None if it may.

    Only https, so the events and the signature travel encrypted and the receiver is
    authenticated; plain http only to this machine and only when
    AUDIT_STREAM_ALLOW_HTTP_LOCALHOST is set (tests, a relay on the same host).
    """
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        return "Not a valid URL."
    if not parts.hostname:
        return "Give a full URL, e.g. https://siem.example.com/collector."
    if parts.username is not None or parts.password is not None:
        return "Put credentials in a custom header (e.g. Authorization), not in the URL."
    if parts.scheme == "https":
        return None
    if (
        parts.scheme == "http"
        and settings.AUDIT_STREAM_ALLOW_HTTP_LOCALHOST
        and parts.hostname in ("127.0.0.1", "localhost", "::1")
    ):
        return None
    return "The URL must start with https:// (the events and their signature travel encrypted)."
