"""The GET filters of the All keys and Audit history pages.

Every query parameter goes through one of these forms: bad input becomes an error next to
its field, never a 500 and never a silently ignored filter.
"""

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import Q

from keys.models import Api, ApiKey, AuditEvent
from keys.validators import network_of

# A filter naming more keys or people than this asks for more letters: each match is a
# parameter of the page's queries.
MATCHES_AT_MOST = 100


def user_named(username: str):
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


def users_matching(text: str) -> list:
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


def keys_known_as(text: str) -> list[ApiKey]:
    found = list(ApiKey.objects.known_as(text).order_by("pk")[: MATCHES_AT_MOST + 1])
    if not found:
        raise ValidationError("No key with this name or identifier.")
    if len(found) > MATCHES_AT_MOST:
        raise ValidationError(f"More than {MATCHES_AT_MOST} keys match: type more of it.")
    return found


IPS_MATCH = {"in": "allow an address in", "outside": "allow addresses outside"}


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
    ips_match = forms.ChoiceField(
        label="Allowed IPs",
        required=False,
        choices=IPS_MATCH.items(),
    )
    ips = forms.CharField(
        label="Address or network",
        required=False,
        max_length=100,
        help_text="An IPv4 or IPv6 address or CIDR range, e.g. 10.0.0.0/8.",
        widget=forms.TextInput(attrs={"spellcheck": "false", "autocomplete": "off"}),
    )
    created_before = forms.DateField(
        label="Created before",
        required=False,
        help_text="Keys created before this date.",
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    # Page cursors (ApiKeyQuerySet.page): the identifier of the key a page starts after.
    before = forms.CharField(required=False, max_length=100, widget=forms.HiddenInput)
    after = forms.CharField(required=False, max_length=100, widget=forms.HiddenInput)

    CURSORS = ("before", "after")

    def clean_owner(self):
        username = self.cleaned_data["owner"].strip()
        return user_named(username) if username else None

    def clean_ips(self):
        text = self.cleaned_data["ips"].strip()
        return network_of(text) if text else None

    def clean_ips_match(self):
        return self.cleaned_data["ips_match"] or "in"

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

    # The filters that narrow a bulk revocation: without one of them it would take every
    # key of the portal, which the page refuses (the status filter does not count: a bulk
    # revocation only ever takes active keys).
    NARROWING = ("q", "owner", "api", "expiring_within", "ips", "created_before")

    def narrowing(self) -> dict:
        """The narrowing filters set, as text for the audit history (the owner by name)."""
        data = self.cleaned_data
        described: dict = {}
        if data.get("q"):
            described["q"] = data["q"]
        if (owner := data.get("owner")) is not None:
            described["owner"] = owner.get_username()
        if (api := data.get("api")) is not None:
            described["api"] = api.slug
        if (days := data.get("expiring_within")) is not None:
            described["expiring_within"] = days
        if (network := data.get("ips")) is not None:
            described["ips"] = str(network)
            described["ips_match"] = data["ips_match"]
        if (day := data.get("created_before")) is not None:
            described["created_before"] = day.isoformat()
        return described

    def chosen(self) -> list[tuple[str, str]]:
        """The narrowing filters set, as (label, words) for a person to read."""
        words = []
        for name, value in self.narrowing().items():
            if name == "ips_match":
                continue
            if name == "ips":
                how = IPS_MATCH[self.cleaned_data["ips_match"]]
                words.append(("Network", f"keys that {how} {value}"))
            elif name == "api":
                words.append(("API", self.cleaned_data["api"].name))
            else:
                words.append((str(self.fields[name].label), str(value)))
        return words

    def bulk_filters(self) -> dict:
        """The arguments of ApiKey.objects.matching() for a bulk revocation: the narrowing
        filters alone (it takes the active keys among them, whatever the status filter)."""
        names = (*self.NARROWING, "ips_match")
        return {name: self.cleaned_data[name] for name in names if name in self.cleaned_data}

    def cursors(self) -> dict:
        """The arguments of ApiKey.objects.page(): at most one key to start from."""
        return {name: self.cleaned_data.get(name) or None for name in self.CURSORS}
