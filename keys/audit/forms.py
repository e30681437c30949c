"""The GET filters of the Audit history page: bad input becomes an error next to its field,
never a 500 and never a silently ignored filter."""

import datetime

from django import forms
from django.core.exceptions import ValidationError
from django.http import QueryDict

from keys.filters import keys_known_as, users_matching
from keys.models import AuditEvent, local_date

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
        label="Key",
        required=False,
        max_length=100,
        help_text="Its name, or its identifier or the start of it (ckid_…).",
    )
    user = forms.CharField(
        label="User",
        required=False,
        max_length=150,
        help_text="Part of a user name: events by them or about their keys.",
    )
    action = forms.ChoiceField(
        label="Action", required=False, choices=[("", "Any"), *AuditEvent.Action.choices]
    )
    outcome = forms.ChoiceField(
        label="Outcome",
        required=False,
        choices=[("", "Any"), *AuditEvent.Outcome.choices],
        help_text="Denied: refused calls with a key.",
    )
    date_from = forms.DateField(label="From", required=False, widget=_date_input())
    date_to = forms.DateField(label="To", required=False, widget=_date_input())
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    after = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)

    def clean_key(self):
        text = self.cleaned_data["key"].strip()
        return keys_known_as(text) if text else None

    def clean_user(self):
        text = self.cleaned_data["user"].strip()
        return users_matching(text) if text else None

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

    def filters(self) -> dict:
        """The arguments of AuditEvent.objects.matching()."""
        names = ("action", "outcome", "date_from", "date_to")
        return {"keys": self.cleaned_data["key"]} | {n: self.cleaned_data[n] for n in names}


def date_presets(query: QueryDict, today: datetime.date | None = None) -> list[dict]:
    """Links that fill From and To (days in TIME_ZONE) and keep the other filters: today,
    the last 7 days (today included) and this month so far."""
    today = today or local_date()
    presets = []
    for label, start in (
        ("Today", today),
        ("Last 7 days", today - datetime.timedelta(days=6)),
        ("This month", today.replace(day=1)),
    ):
        link = query.copy()
        for name in ("before", "after"):
            link.pop(name, None)
        link["date_from"], link["date_to"] = start.isoformat(), today.isoformat()
        current = [query.get("date_from"), query.get("date_to")] == [
            link["date_from"],
            today.isoformat(),
        ]
        presets.append({"label": label, "query": link.urlencode(), "current": current})
    return presets
