"""The GET filters of the All keys and Audit history pages.

Every query parameter goes through one of these forms: bad input becomes an error next to
its field, never a 500 and never a silently ignored filter.
"""

import datetime

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.http import QueryDict

from keys.models import Api, ApiKey, AuditEvent, local_date

# A filter naming more keys or people than this asks for more letters: each match is a
# parameter of the page's queries.
MATCHES_AT_MOST = 100


def _user_named(username: str):
    User = get_user_model()
    user = User.objects.filter(username=username).first()
    if user is None:
        user = User.objects.filter(username__iexact=username).first()
    if user is None:
        # A former name: the history records each rename (user_changed, username before).
        renamed = AuditEvent.objects.filter(
            action=AuditEvent.Action.USER_CHANGED, details__username__before=username
        )
        user = User.objects.filter(pk__in=renamed.values("owner_id")).first()
    if user is None:
        raise ValidationError("No user with this name.")
    return user


def _users_matching(text: str) -> list:
    """Users whose name contains `text` (any case), or who were once named exactly that."""
    renamed = AuditEvent.objects.filter(
        action=AuditEvent.Action.USER_CHANGED, details__username__before=text
    )
    users = get_user_model().objects.filter(
        Q(username__icontains=text) | Q(pk__in=renamed.values("owner_id"))
    )
    found = list(users.order_by("pk")[: MATCHES_AT_MOST + 1])
    if not found:
        raise ValidationError("No user with this name.")
    if len(found) > MATCHES_AT_MOST:
        raise ValidationError(f"More than {MATCHES_AT_MOST} users match: type more of the name.")
    return found


def _keys_known_as(text: str) -> list[ApiKey]:
    found = list(ApiKey.objects.known_as(text).order_by("pk")[: MATCHES_AT_MOST + 1])
    if not found:
        raise ValidationError("No key with this name or identifier.")
    if len(found) > MATCHES_AT_MOST:
        raise ValidationError(f"More than {MATCHES_AT_MOST} keys match: type more of it.")
    return found


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
    # Page cursors (ApiKeyQuerySet.page): the identifier of the key a page starts after.
    before = forms.CharField(required=False, max_length=100, widget=forms.HiddenInput)
    after = forms.CharField(required=False, max_length=100, widget=forms.HiddenInput)

    CURSORS = ("before", "after")

    def clean_owner(self):
        username = self.cleaned_data["owner"].strip()
        return _user_named(username) if username else None

    def clean(self):
        cleaned = super().clean()
        identifiers = {name: cleaned.get(name) for name in self.CURSORS if cleaned.get(name)}
        if len(identifiers) > 1:
            raise ValidationError("Ask for older or newer keys, not both.")
        for name, identifier in identifiers.items():
            cleaned[name] = ApiKey.objects.only("created_at").filter(identifier=identifier).first()
            if cleaned[name] is None:
                raise ValidationError(
                    "This link to a page of the list is broken: start again from the first page."
                )
        return cleaned

    def filters(self) -> dict:
        """The arguments of ApiKey.objects.matching()."""
        return {k: v for k, v in self.cleaned_data.items() if k not in self.CURSORS}

    def cursors(self) -> dict:
        """The arguments of ApiKey.objects.page(): at most one key to start from."""
        return {name: self.cleaned_data.get(name) or None for name in self.CURSORS}


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
        return _keys_known_as(text) if text else None

    def clean_user(self):
        text = self.cleaned_data["user"].strip()
        return _users_matching(text) if text else None

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
