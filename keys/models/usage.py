"""What keys did: calls per day, the addresses that called, the APIs used."""

from django.db import models
from django.db.models import Q

from keys.models.catalogue import Api
from keys.models.key import ApiKey


class KeyUsageDay(models.Model):
    """How many successful calls a key served on one day (portal time zone)."""

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="usage_days")
    day = models.DateField()
    uses = models.PositiveBigIntegerField(default=0)
    recorded = models.BooleanField(
        default=False, help_text="The finished day's count is in the audit history."
    )

    class Meta:
        ordering = ["-day"]
        constraints = [
            models.UniqueConstraint(fields=["key", "day"], name="usage_one_row_per_key_and_day")
        ]
        indexes = [
            # keys.api.usage.close_finished_days looks for the few days not yet recorded.
            models.Index(
                fields=["day"], condition=Q(recorded=False), name="usage_day_not_recorded"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.day}: {self.uses}"


class KeyCaller(models.Model):
    """An address a key was used from, or refused from as not allowed: how often, when
    first and (to the minute) last. The key page turns these into least-privilege advice."""

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="callers")
    ip = models.GenericIPAddressField()
    refused = models.BooleanField(default=False, help_text="Refused: not in the allowlist.")
    password_proved = models.BooleanField(
        default=False,
        help_text="A caller from this address proved the key's current password. Only then "
        "does the key page offer to allow a refused address with one click: the identifier "
        "is public, so anyone can be refused from an address of their choosing.",
    )
    calls = models.PositiveBigIntegerField(default=0)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()

    class Meta:
        ordering = ["-last_seen"]
        constraints = [
            models.UniqueConstraint(
                fields=["key", "ip", "refused"], name="caller_one_row_per_key_ip_outcome"
            )
        ]

    def __str__(self) -> str:
        return self.ip


class KeyApiUse(models.Model):
    """When a key last called one of its APIs (to the minute): unused grants can go."""

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="api_uses")
    api = models.ForeignKey(Api, on_delete=models.CASCADE, related_name="+")
    last_used_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["key", "api"], name="api_use_one_row_per_key_and_api")
        ]

    def __str__(self) -> str:
        return f"{self.api_id} {self.last_used_at}"


class UsageJournal(models.Model):
    """How far a process's key use journal is stored (keys/api/usage.py).

    Written in the transaction that stores the journal's counts, so whoever adopts the
    journal of a process that died knows which of its counts the database holds already.
    """

    journal = models.CharField(max_length=32, unique=True)
    stored_generation = models.PositiveBigIntegerField()

    def __str__(self) -> str:
        return f"{self.journal}: {self.stored_generation}"
