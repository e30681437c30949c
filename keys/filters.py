"""The GET filters of the All keys and Audit history pages.

Every query parameter goes through one of these forms: bad input becomes an error next to
its field, never a 500 and never a silently ignored filter.
"""

import datetime

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.utils import timezone

from keys.models import Api, ApiKey, AuditEvent


def _user_named(username: str):
    User = get_user_model()
    user = User.objects.filter(username=username).first()
    if user is None:
        user = User.objects.filter(username__iexact=username).first()
    if user is None:
        raise ValidationError("No user with this name.")
    return user


class AllKeysFilterForm(forms.Form):
    q = forms.CharField(
        label="Search",
        required=False,
        max_length=100,
        help_text="Part of a key's name, identifier or owner.",
    )
    owner = forms.CharField(label="Owner", required=False, max_length=150)
    status = forms.ChoiceField(
        label="Status", required=False, choices=[("", "Any"), *ApiKey.Status.choices]
    )
    api = forms.ModelChoiceField(
        label="API",
        required=False,
        queryset=Api.objects.all(),
        to_field_name="slug",
        empty_label="Any",
    )
    expiring_within = forms.IntegerField(
        label="Expiring within (days)",
        required=False,
        min_value=0,
        max_value=366,
        help_text="Active keys whose last valid day is at most this many days away.",
    )
    page = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def clean_owner(self):
        username = self.cleaned_data["owner"].strip()
        return _user_named(username) if username else None

    def filter(self, keys):
        data = self.cleaned_data
        if q := data.get("q", "").strip():
            keys = keys.filter(
                Q(name__icontains=q) | Q(identifier__icontains=q) | Q(owner__username__icontains=q)
            )
        if data.get("owner"):
            keys = keys.filter(owner=data["owner"])
        if data.get("status"):
            keys = keys.with_status(data["status"])
        if data.get("api"):
            keys = keys.filter(apis=data["api"])
        if data.get("expiring_within") is not None:
            keys = keys.expiring_within(data["expiring_within"])
        return keys


class Outcome:
    SUCCESS = "success"
    DENIED = "denied"
    CHOICES = [("", "Any"), (SUCCESS, "Succeeded"), (DENIED, "Denied")]


# The date filters become midnights in TIME_ZONE and then UTC; near year 1 or 9999 that
# overflows (a 500). Audit events lie well inside these bounds.
EARLIEST_DAY = datetime.date(2000, 1, 1)
LATEST_DAY = datetime.date(9000, 12, 31)


def _within_bounds(day: datetime.date | None) -> datetime.date | None:
    if day is not None and not EARLIEST_DAY <= day <= LATEST_DAY:
        raise ValidationError(f"Enter a date between {EARLIEST_DAY} and {LATEST_DAY}.")
    return day


def _date_input() -> forms.DateInput:
    bounds = {"min": EARLIEST_DAY.isoformat(), "max": LATEST_DAY.isoformat()}
    return forms.DateInput(attrs={"type": "date", **bounds})


class AuditFilterForm(forms.Form):
    key = forms.CharField(
        label="Key", required=False, max_length=100, help_text="Its identifier, ckid_…"
    )
    user = forms.CharField(
        label="User",
        required=False,
        max_length=150,
        help_text="Events by this user or about their keys.",
    )
    action = forms.ChoiceField(
        label="Action", required=False, choices=[("", "Any"), *AuditEvent.Action.choices]
    )
    outcome = forms.ChoiceField(
        label="Outcome",
        required=False,
        choices=Outcome.CHOICES,
        help_text="Denied: refused calls with a key.",
    )
    date_from = forms.DateField(label="From", required=False, widget=_date_input())
    date_to = forms.DateField(label="To", required=False, widget=_date_input())
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    after = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)

    def clean_key(self):
        identifier = self.cleaned_data["key"].strip()
        if not identifier:
            return None
        key = ApiKey.objects.filter(identifier=identifier).first()
        if key is None:
            raise ValidationError("No key with this identifier.")
        return key

    def clean_user(self):
        username = self.cleaned_data["user"].strip()
        return _user_named(username) if username else None

    def clean_date_from(self):
        return _within_bounds(self.cleaned_data["date_from"])

    def clean_date_to(self):
        return _within_bounds(self.cleaned_data["date_to"])

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "The end date is before the start date.")
        if cleaned.get("before") is not None and cleaned.get("after") is not None:
            raise ValidationError("Ask for older or newer events, not both.")
        return cleaned

    def querysets(self) -> list:
        """The matching events, as one queryset or (user filter) two to merge by seq.

        "User" means actor *or* owner. An OR across two indexes would make the database sort
        every event of that user for each page; two queries that each walk their own index
        (actor, -seq) and (owner, -seq) and a merge of their first rows stay fast.
        """
        data = self.cleaned_data
        events = AuditEvent.objects.all()
        if data.get("key"):
            events = events.filter(key=data["key"])
        action, outcome = data.get("action"), data.get("outcome")
        if action and outcome:
            # The action decides the outcome: keep the action, or match nothing (rather
            # than walk every event of that action to find none).
            denied = action == AuditEvent.Action.USE_DENIED
            if denied != (outcome == Outcome.DENIED):
                return [AuditEvent.objects.none()]
            outcome = None
        if action:
            events = events.filter(action=action)
        if outcome == Outcome.DENIED:
            events = events.filter(action=AuditEvent.Action.USE_DENIED)
        elif outcome == Outcome.SUCCESS:
            events = events.exclude(action=AuditEvent.Action.USE_DENIED)
        events = _within_dates(events, data.get("date_from"), data.get("date_to"))
        if user := data.get("user"):
            return [events.filter(actor=user), events.filter(owner=user)]
        return [events]


def _midnight(day: datetime.date) -> datetime.datetime:
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time()))


def _within_dates(events, date_from, date_to):
    """Filter on `at`, and bound seq too so the walk along a seq index starts and stops at once.

    keys.audit.record() keeps `at` non-decreasing along the chain. So if some event E has
    at < start, every event from `start` on has a higher seq than E; and if some event F has
    at >= end, every event before `end` has a lower seq. One probe of the `at` index each.
    """
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
