"""The audit history's rows: events, the chain's head, and records of chain checks."""

import datetime
from dataclasses import dataclass

from django.conf import settings
from django.db import (
    models,
)
from django.db.models import F, Q
from django.utils import timezone

from keys import tokens
from keys.models.key import ApiKey

AUDIT_PAGE_SIZE = 50


@dataclass
class AuditPage:
    events: list["AuditEvent"]
    older: int | None = None  # `before=` for the next older page
    newer: int | None = None  # `after=` for the next newer page


class AuditEventQuerySet(models.QuerySet):
    """Events are filtered and paged by sequence number (keyset), never by OFFSET: every page,
    the first or one a million events deep, is one short walk along an index."""

    def update(self, **kwargs):
        raise ValueError("Audit events are append-only.")

    def delete(self):
        raise ValueError("Audit events are append-only.")

    def _raw_delete(self, using: str | None) -> int:
        # Django's cascade path deletes through this, with the database alias.
        raise ValueError("Audit events are append-only.")

    def bulk_create(self, objs, *args, **kwargs):
        # Rows made here would be neither chained nor signed: keys.audit appends them.
        raise ValueError("Audit events are appended only through keys.audit.")

    def _append_sealed(self, events: list, batch_size: int) -> None:
        """Insert events keys.audit has chained and signed (its bulk path, for demo data)."""
        super().bulk_create(events, batch_size=batch_size)

    def bulk_update(self, objs, fields, batch_size=None):
        raise ValueError("Audit events are append-only.")

    def in_chain(self):
        """Only events up to the chain's head as read now: a row past it is not chained yet
        (verify_audit), and a page or an export stays one cut while events are appended."""
        return self.filter(seq__lte=AuditHead.objects.get(pk=1).seq)

    def pulled(self, *, after: int, limit: int) -> tuple[list["AuditEvent"], int]:
        """The first `limit` events of the chain after seq `after`, oldest first, with the
        head's seq (the pull, GET /api/v1/audit/events): two queries whatever the page's size,
        the events a walk along the seq index. Bounded by the head read first, so an event
        appended meanwhile comes on the next page, never half-way."""
        head = AuditHead.objects.get(pk=1).seq
        events = self.filter(seq__gt=after, seq__lte=head).select_related("owner")
        return list(events.order_by("seq")[:limit]), head

    def matching(self, *, keys=None, action="", outcome="", date_from=None, date_to=None):
        """Events of these keys, action, outcome (an AuditEvent.Outcome), dates; all optional."""
        events = self
        if keys is not None:
            # A list, not a subquery: one key becomes `key_id = x`, a walk of (key, -seq).
            events = events.filter(key__in=keys)
        denied = AuditEvent.Action.USE_DENIED
        if action and outcome:
            # The action decides the outcome: keep the action, or match nothing (rather
            # than walk every event of that action to find none).
            if (action == denied) != (outcome == AuditEvent.Outcome.DENIED):
                return self.none()
            outcome = ""
        if action:
            events = events.filter(action=action)
        if outcome == AuditEvent.Outcome.DENIED:
            events = events.filter(action=denied)
        elif outcome == AuditEvent.Outcome.SUCCESS:
            events = events.exclude(action=denied)
        return events.between(date_from, date_to)

    def between(self, date_from: datetime.date | None, date_to: datetime.date | None):
        """Events on these days (portal time zone), bounded by seq too, so the walk along a seq
        index starts and stops at once.

        keys.audit.chain.record() keeps `at` non-decreasing along the chain. So if some event E has
        at < start, every event from `start` on has a higher seq than E; and if some event F
        has at >= end, every event before `end` has a lower seq. One probe of the `at` index
        each.
        """
        events = self
        if date_from:
            start = _midnight(date_from)
            events = events.filter(at__gte=start)
            earlier = AuditEvent.objects.filter(at__lt=start).order_by("-at")
            if (seq := earlier.values_list("seq", flat=True).first()) is not None:
                events = events.filter(seq__gt=seq)
        if date_to:
            end = _midnight(date_to + datetime.timedelta(days=1))
            events = events.filter(at__lt=end)
            later = AuditEvent.objects.filter(at__gte=end).order_by("at")
            if (seq := later.values_list("seq", flat=True).first()) is not None:
                events = events.filter(seq__lt=seq)
        return events

    def walks(self, by_or_about=None) -> list["AuditEventQuerySet"]:
        """These events as index walks to merge by seq: one, or two by or about some users.

        "By or about users" is actor *or* owner among them. An OR across two indexes would make the
        database sort every event of that user for each page; two queries that each walk their
        own index, (actor, -seq) and (owner, -seq), and a merge of their first rows stay fast.
        """
        if by_or_about is None:
            return [self]
        return [self.filter(actor__in=by_or_about), self.filter(owner__in=by_or_about)]

    def page(
        self, *, before=None, after=None, by_or_about=None, size: int = AUDIT_PAGE_SIZE
    ) -> AuditPage:
        """Newest first; `before` pages towards older events, `after` towards newer ones."""
        walks = self.walks(by_or_about)
        if after is not None:
            rows = _first_rows(walks, limit=size + 1, ascending=True, seq__gt=after)
            more_newer = len(rows) > size
            events = list(reversed(rows[:size]))
            page = AuditPage(events)
            if events:
                page.newer = events[0].seq if more_newer else None
                page.older = events[-1].seq if _any(walks, seq__lte=after) else None
            return page
        bounds = {"seq__lt": before} if before is not None else {}
        rows = _first_rows(walks, limit=size + 1, ascending=False, **bounds)
        events = rows[:size]
        page = AuditPage(events)
        if events:
            page.older = events[-1].seq if len(rows) > size else None
            if before is not None and _any(walks, seq__gte=before):
                page.newer = events[0].seq
        return page


def _midnight(day: datetime.date) -> datetime.datetime:
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time()))


def _first_rows(walks, *, limit: int, ascending: bool, **bounds) -> list["AuditEvent"]:
    """The first `limit` events of the union of walks, in seq order, without repeats."""
    order = "seq" if ascending else "-seq"
    found: dict[int, AuditEvent] = {}
    for events in walks:
        rows = events.filter(**bounds).select_related("owner").annotate(key_name=F("key__name"))
        for event in rows.order_by(order)[:limit]:
            found[event.seq] = event
    return sorted(found.values(), key=lambda e: e.seq, reverse=not ascending)[:limit]


def _any(walks, **bounds) -> bool:
    return any(
        events.filter(**bounds).order_by("seq").values_list("seq", flat=True)[:1]
        for events in walks
    )


class AuditEvent(models.Model):
    """One entry of the append-only, hash-chained key history (docs/design.md §5).

    hash = SHA-256(prev_hash ‖ canonical JSON of the event), and signature = an Ed25519
    signature of that hash by a key the database does not hold; see keys.audit. The database
    refuses UPDATE and DELETE on the table (migration 0007).
    """

    class Action(models.TextChoices):
        KEY_CREATED = "key_created", "Key created"
        KEY_EDITED = "key_edited", "Key edited"
        EXPIRY_SHORTENED = "expiry_shortened", "Expiry shortened"
        KEY_REVOKED = "key_revoked", "Key revoked"
        BULK_REVOCATION = "bulk_revocation", "Keys revoked in bulk"
        OWNER_DEACTIVATED = "owner_deactivated", "Owner deactivated"
        USE_DENIED = "use_denied", "Use denied"
        KEY_USED = "key_used", "Key used"
        EXPIRY_REMINDER = "expiry_reminder", "Expiry reminder sent"
        CATALOGUE_CHANGED = "catalogue_changed", "API catalogue changed"
        PASSWORD_REGENERATED = "password_regenerated", "Password regenerated"
        PREVIOUS_PASSWORD_ENDED = "previous_password_ended", "Previous password stopped"
        KEY_RENEWED = "key_renewed", "Key renewed"
        USER_CREATED = "user_created", "User created"
        USER_CHANGED = "user_changed", "User changed"
        ROLES_CHANGED = "roles_changed", "Roles changed"
        PASSWORD_SET = "password_set", "Password set"
        LOGIN_SUCCEEDED = "login_succeeded", "Logged in"
        LOGIN_FAILED = "login_failed", "Log-in failed"
        LOGIN_LOCKED = "login_locked", "Log-in locked"
        DESTINATION_ADDED = "destination_added", "Stream destination added"
        DESTINATION_CHANGED = "destination_changed", "Stream destination changed"
        DESTINATION_REMOVED = "destination_removed", "Stream destination removed"
        DESTINATION_REPLAYED = "destination_replayed", "Stream destination replayed"
        FACTOR_ADDED = "factor_added", "Second factor added"
        FACTOR_REMOVED = "factor_removed", "Second factor removed"
        RECOVERY_CODES_MADE = "recovery_codes_made", "Recovery codes made"
        RECOVERY_CODE_USED = "recovery_code_used", "Recovery code used"
        SECOND_FACTOR_FAILED = "second_factor_failed", "Second-factor log-in failed"
        POLICY_CHANGED = "policy_changed", "Key policy changed"
        APPROVAL_REQUESTED = "approval_requested", "Approval requested"
        REQUEST_APPROVED = "request_approved", "Request approved"
        REQUEST_DENIED = "request_denied", "Request denied"
        IDENTITY_CONFIRMED = "identity_confirmed", "Identity confirmed"

    # What an attacker with database access would most like to erase: a checkpoint follows
    # each of these at once (keys.audit.chain), so deleting one from the end shows.
    SECURITY_ACTIONS = frozenset(
        {
            Action.KEY_REVOKED,
            Action.BULK_REVOCATION,
            Action.OWNER_DEACTIVATED,
            Action.PASSWORD_REGENERATED,
            Action.USER_CHANGED,  # (de)activation, admin flags, e-mail address
            Action.ROLES_CHANGED,
            Action.PASSWORD_SET,
            # Silencing or redirecting the copy the auditors' SIEM keeps.
            Action.DESTINATION_CHANGED,
            Action.DESTINATION_REMOVED,
            Action.FACTOR_ADDED,
            Action.FACTOR_REMOVED,
            Action.RECOVERY_CODES_MADE,
            Action.RECOVERY_CODE_USED,
            Action.POLICY_CHANGED,  # what every key must respect
            Action.REQUEST_APPROVED,  # an allowlist outside the approved networks
        }
    )

    class Outcome(models.TextChoices):
        """Whether a call with a key went through: denied ones are USE_DENIED events."""

        SUCCESS = "success", "Succeeded"
        DENIED = "denied", "Denied"

    seq = models.PositiveBigIntegerField(unique=True, editable=False)
    at = models.DateTimeField(editable=False)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        editable=False,
    )
    actor_label = models.CharField(
        max_length=150, editable=False, help_text="User name, or the key for API callers."
    )
    actor_ip = models.GenericIPAddressField(null=True, blank=True, editable=False)
    key = models.ForeignKey(
        ApiKey,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="events",
        editable=False,
    )
    key_identifier = models.CharField(max_length=tokens.IDENTIFIER_LENGTH, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        editable=False,
        help_text="The key's owner, or the user the event concerns.",
    )
    action = models.CharField(max_length=32, choices=Action.choices, editable=False)
    details = models.JSONField(default=dict, editable=False)
    prev_hash = models.CharField(max_length=64, editable=False)
    hash = models.CharField(max_length=64, unique=True, editable=False)
    signature = models.CharField(
        max_length=128,
        blank=True,
        default="",
        editable=False,
        help_text="'<key id>:<base64 Ed25519 signature>' of the hash; empty only for events "
        "recorded before signing began, which the first signed checkpoint covers.",
    )

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-seq"]
        indexes = [
            # Each filter of the history pages walks one of these, newest first.
            models.Index(fields=["key", "-seq"], name="audit_key_seq"),
            models.Index(fields=["owner", "-seq"], name="audit_owner_seq"),
            models.Index(fields=["actor", "-seq"], name="audit_actor_seq"),
            models.Index(fields=["action", "-seq"], name="audit_action_seq"),
            models.Index(fields=["at"], name="audit_at"),
            # A filter on a person or key *and* an action (or outcome) walks one of these
            # instead of every event of that person or key.
            models.Index(fields=["key", "action", "-seq"], name="audit_key_action_seq"),
            models.Index(fields=["owner", "action", "-seq"], name="audit_owner_action_seq"),
            models.Index(fields=["actor", "action", "-seq"], name="audit_actor_action_seq"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action}"

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise ValueError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Audit events are append-only.")


class AuditHead(models.Model):
    """The single row holding the chain's last sequence number and hash.

    Appending locks it (SELECT … FOR UPDATE on PostgreSQL; SQLite transactions are
    IMMEDIATE), so two writers can never chain onto the same predecessor.
    """

    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="audit_head_singleton")]

    def __str__(self) -> str:
        return f"head #{self.seq}"


class ChainVerification(models.Model):
    """One check of the whole audit chain (verify_audit, or Verify now on the history page).

    Not an audit event and outside the chain: recording a check changes nothing it checks,
    and the history page only reads the newest one.
    """

    at = models.DateTimeField(default=timezone.now, editable=False)
    by = models.CharField(
        max_length=150, editable=False, help_text="Who asked: a user name, or the command."
    )
    intact = models.BooleanField(editable=False)
    events = models.PositiveBigIntegerField(editable=False, help_text="Events in the chain.")
    broken_at = models.PositiveBigIntegerField(
        null=True, blank=True, editable=False, help_text="The first broken sequence number."
    )
    reason = models.CharField(max_length=500, blank=True, editable=False)
    signature = models.CharField(
        max_length=128,
        blank=True,
        default="",
        editable=False,
        help_text="'<key id>:<base64 Ed25519 signature>' of the other fields, by the audit "
        "signing key: the history page trusts no record of a check without it.",
    )

    class Meta:
        ordering = ["-at", "-id"]
        get_latest_by = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {'intact' if self.intact else 'broken'}"

    def save(self, *args, **kwargs) -> None:
        # A check is recorded when it ran: a record from the future would stay the newest.
        if self.at > timezone.now():
            raise ValueError("A chain check cannot be recorded in the future.")
        super().save(*args, **kwargs)
