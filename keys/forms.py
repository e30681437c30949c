import datetime
import re

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import dateformat

from keys.actions import REGENERATE_OVERLAPS, candidate_policy
from keys.lib.networks import display_network
from keys.models import (
    MAX_LIFETIME_DAYS,
    ROLE_LABELS,
    Api,
    ApiKey,
    KeyGrant,
    KeyPolicy,
    admins_only_message,
    latest_expiry_for,
    local_date,
)
from keys.permissions import GRANT_ADMINS_ONLY_APIS


class IpListWidget(forms.Widget):
    """One text input per entry, all under the same name, each with its own Remove button.

    KeyForm sets `current_ip` (offered by "Use my current IP") and `focus_row` (the row a
    row button leaves the focus on).
    """

    template_name = "keys/_ip_list.html"
    use_fieldset = True
    current_ip: str | None = None
    focus_row: int | None = None

    def value_from_datadict(self, data, files, name):
        if hasattr(data, "getlist"):
            return data.getlist(name)
        value = data.get(name)
        return value if isinstance(value, list) else ([] if value is None else [value])

    def value_omitted_from_data(self, data, files, name):
        return name not in data

    def format_value(self, value):
        return list(value or [])

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        context["widget"]["rows"] = context["widget"]["value"] or [""]
        context["widget"]["current_ip"] = self.current_ip
        context["widget"]["focus_row"] = self.focus_row
        context["widget"]["invalid"] = context["widget"]["attrs"].get("aria-invalid") == "true"
        return context


class AllowedIpsField(forms.Field):
    """A list of IPv4/IPv6 addresses or CIDR ranges; blank rows are ignored."""

    widget = IpListWidget

    def to_python(self, value):
        return [entry.strip() for entry in (value or []) if entry and entry.strip()]

    # Every allowlist rule is the model's (keys.validators.allowlist), checked in KeyForm.clean.


class ApiCheckboxes(forms.CheckboxSelectMultiple):
    """One checkbox per API, labelled with its name and description, each with its access:
    a select named access-<slug> (Read and write, Read only) that works without JavaScript."""

    template_name = "keys/_api_choices.html"
    option_template_name = "keys/_api_choice.html"
    read_only: frozenset[str] = frozenset()  # slugs shown as Read only

    def create_option(self, name, value, label, selected, index, subindex=None, attrs=None):
        option = super().create_option(name, value, label, selected, index, subindex, attrs)
        option["access_name"] = access_field_name(label)
        option["read_only"] = label.slug in self.read_only
        # An API granted read only or not at all (the Audit history) offers no other access.
        option["access_choices"] = (
            [(KeyGrant.Access.READ, KeyGrant.Access.READ.label)]
            if label.read_only
            else KeyGrant.Access.choices
        )
        option["read_only"] = option["read_only"] or label.read_only
        return option


def access_field_name(api: Api) -> str:
    """The name of the select that says how a key holds `api`."""
    return f"access-{api.slug}"


class ApiChoiceField(forms.ModelMultipleChoiceField):
    widget = ApiCheckboxes

    def label_from_instance(self, api):
        return api  # the option template shows its name and description

    def _check_values(self, value):
        """Refuse a value that names no API before it reaches the database, where an id past
        its integer range (2**63) is an error rather than a miss: a short catalogue, read once."""
        try:
            values = {str(choice) for choice in value}
        except TypeError:
            message = self.error_messages["invalid_list"]
            raise ValidationError(message, code="invalid_list") from None
        known = {str(pk) for pk in self.queryset.values_list("pk", flat=True)}
        if unknown := sorted(values - known):
            # Not offered because only administrators may grant it: say so, not "not a choice".
            ids = [value for value in unknown if value.isdigit() and len(value) < 18]
            if api := Api.objects.filter(pk__in=ids, admins_only=True).first():
                raise ValidationError(admins_only_message(api), code="admins_only")
            raise ValidationError(
                self.error_messages["invalid_choice"],
                code="invalid_choice",
                params={"value": unknown[0]},
            )
        return super()._check_values(value)


class ExpiryDateInput(forms.DateInput):
    """A date input with preset buttons, which static/forms.js shows and makes work."""

    template_name = "keys/_expiry_input.html"
    input_type = "date"
    presets: list[tuple[str, datetime.date]] = []

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        context["widget"]["presets"] = [
            (label, day.isoformat(), dateformat.format(day, "j F Y")) for label, day in self.presets
        ]
        return context


def expiry_presets(today: datetime.date, latest: datetime.date) -> list[tuple[str, datetime.date]]:
    """The preset expiration dates that lie between today and the latest allowed date."""
    presets = [(f"{days} days", today + datetime.timedelta(days=days)) for days in (30, 90, 180)]
    presets.append(("Latest allowed date", latest))
    return [(label, day) for label, day in presets if today <= day <= latest]


class KeyForm(forms.Form):
    """The Add and edit form; its rules come from the model through keys.actions."""

    name = forms.CharField(label="Name", max_length=100)
    expires_on = forms.DateField(label="Expiration date", widget=ExpiryDateInput(format="%Y-%m-%d"))
    allowed_ips = AllowedIpsField(
        label="Allowed IPs",
        required=False,
        help_text="The IPv4 or IPv6 address, or CIDR range, of each system that will use "
        "this key. A CIDR range is an address and how many of its leading bits must match: "
        "192.0.2.0/24 is every address from 192.0.2.0 to 192.0.2.255. Empty rows are ignored.",
    )
    apis = ApiChoiceField(
        label="APIs",
        queryset=Api.objects.active(),
        required=False,
        help_text="Only the selected APIs can be called with this key. Read only allows GET, "
        "HEAD and OPTIONS; Read and write every method.",
    )
    justification = forms.CharField(
        label="Justification",
        required=False,
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Allowed IPs outside the approved networks need an administrator's approval: "
        "say which system uses them and why. Until approved, a new key is refused and an "
        "edited key keeps its current allowed IPs.",
    )
    description = ApiKey._meta.get_field("description").formfield(
        widget=forms.Textarea(attrs={"rows": 3})
    )
    may_rotate_itself = forms.BooleanField(
        label="This key may rotate itself",
        required=False,
        help_text="Automation may get a new password with this key's own credentials "
        "(POST /api/v1/self/rotate); the old one keeps working for up to 24 hours.",
    )

    def __init__(
        self,
        *args,
        owner=None,
        key: ApiKey | None = None,
        current_ip: str | None = None,
        **kwargs,
    ):
        self.key = key
        self.owner = key.owner if key is not None else owner
        today = local_date()
        if key is None:
            latest = latest_expiry_for(today)
            kwargs.setdefault("initial", {"expires_on": latest})
        else:
            latest = key.expires_on
            kwargs.setdefault(
                "initial",
                {
                    "name": key.name,
                    "description": key.description,
                    "expires_on": key.expires_on,
                    "allowed_ips": [display_network(e.network) for e in key.allowed_ips.all()],
                    "apis": list(key.apis.all()),
                    "may_rotate_itself": key.may_rotate_itself,
                },
            )
        super().__init__(*args, **kwargs)
        if self.is_bound:
            read_only = {
                name.removeprefix("access-")
                for name, value in self.data.items()
                if name.startswith("access-") and value == KeyGrant.Access.READ
            }
        else:
            read_only = set(key.read_only_slugs()) if key is not None else set()
        self.fields["apis"].widget.read_only = frozenset(read_only)
        self.latest_expires_on = latest
        expiry = self.fields["expires_on"]
        expiry.widget.attrs.update({"min": today.isoformat(), "max": latest.isoformat()})
        expiry.widget.presets = expiry_presets(today, latest)
        # The date in words: a browser shows its picker's value in its own locale's format,
        # which an ISO date here would contradict.
        limit = (
            f"At most one year after creation: {dateformat.format(latest, 'j F Y')} at the latest."
            if key is None
            else f"May only be shortened: {dateformat.format(latest, 'j F Y')} at the latest."
        )
        expiry.help_text = f"Valid through the end of this day, {settings.TIME_ZONE}. {limit}"
        self.fields["allowed_ips"].widget.current_ip = current_ip
        apis = self.fields["apis"]
        assert isinstance(apis, ApiChoiceField)  # self.fields is typed as plain Fields
        offered = Api.objects.active()
        if self.owner is None or not self.owner.has_perm(GRANT_ADMINS_ONLY_APIS):
            offered = offered.filter(admins_only=False)  # not even offered (the key rule)
        apis.queryset = offered
        if key is not None:
            # A key keeps an API it holds even if the catalogue entry was later deactivated.
            apis.queryset = Api.objects.filter(
                pk__in=[
                    *offered.values_list("pk", flat=True),
                    *key.apis.values_list("pk", flat=True),
                ]
            )

    def clean(self):
        """Check every key rule through the model, and place each error next to its field."""
        cleaned = super().clean()
        try:
            self.validated = ApiKey.validated(
                owner=self.owner,
                name=cleaned.get("name", ""),
                description=cleaned.get("description", ""),
                expires_on=cleaned.get("expires_on"),
                networks=cleaned.get("allowed_ips", []),
                apis=cleaned.get("apis", []),
                read_only=self._read_only(cleaned.get("apis", [])),
                key=self.key,
                justification=cleaned.get("justification", ""),
            )
        except ValidationError as error:
            for field, messages in error.message_dict.items():
                if field == "__all__" or field not in self._errors:
                    self.add_error(None if field == "__all__" else field, messages)
        return cleaned

    def _read_only(self, apis) -> list[str]:
        """The slugs of the chosen APIs whose access select says Read only."""
        choices = {value for value, _label in KeyGrant.Access.choices}
        read_only = []
        for api in apis:
            value = self.data.get(access_field_name(api), KeyGrant.Access.WRITE)
            if value not in choices:
                self.add_error("apis", f"Choose the access to {api.name}.")
            elif value == KeyGrant.Access.READ:
                read_only.append(api.slug)
        return read_only

    @property
    def asks_justification(self) -> bool:
        """Whether to show the Justification field: the allowed IPs need one, or one was given."""
        return "justification" in self.errors or bool(self.data.get("justification"))

    def key_fields(self) -> dict:
        """The checked values, named as keys.actions.create_key and edit_key take them."""
        fields = {k: v for k, v in self.validated.items() if k != "needs_approval"}
        return {**fields, "may_rotate_itself": self.cleaned_data["may_rotate_itself"]}


class RevokeForm(forms.Form):
    # When the reason is required, its label says so (templates/_field.html).
    required_css_class = "required"

    reason = forms.CharField(
        label="Reason",
        max_length=500,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Shown to the key's owner and recorded in the audit history.",
    )

    def __init__(self, *args, reason_required: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["reason"].required = reason_required


class BulkRevokeForm(forms.Form):
    required_css_class = "required"

    reason = forms.CharField(
        label="Reason",
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Shown to every key's owner and recorded in the audit history.",
        error_messages={"required": "Give a reason: it is shown to every key's owner."},
    )
    # keys.actions.snapshot() of the keys the page showed: the revocation takes exactly them.
    shown = forms.CharField(max_length=64, widget=forms.HiddenInput)


class RegenerateForm(forms.Form):
    overlap = forms.ChoiceField(
        label="Keep the old password working for",
        choices=[(name, name.capitalize()) for name in REGENERATE_OVERLAPS],
        initial="1 hour",
        widget=forms.RadioSelect,
        help_text="Time to put the new password in place; then the old one stops everywhere.",
    )

    def overlap_delta(self) -> datetime.timedelta:
        return REGENERATE_OVERLAPS[self.cleaned_data["overlap"]]


class RenewForm(forms.Form):
    expires_on = forms.DateField(
        label="Expiration date of the new key",
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    overlap_days = forms.IntegerField(
        label="Keep the old key working for (days)",
        min_value=0,
        max_value=30,
        initial=7,
        help_text="At most 30 days, and never past the old key's own expiration date; then "
        "it is revoked automatically.",
    )

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("initial", {"expires_on": latest_expiry_for(local_date())})
        super().__init__(*args, **kwargs)
        self.fields["expires_on"].help_text = (
            f"At most one year from today: {latest_expiry_for(local_date()).isoformat()} "
            "at the latest."
        )


class PolicyForm(forms.Form):
    """The key policy page: approved networks, maximum lifetime, which roles grant which API.

    Its values are checked by keys.actions.candidate_policy (the allowlist rules of
    keys.validators for the networks, the model's 1..365 for the lifetime)."""

    approved_networks = forms.CharField(
        label="Approved networks",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        help_text="One IPv4 or IPv6 address or CIDR range per line, e.g. 192.0.2.0/24. A key's "
        "allowed IPs outside them need an administrator's approval. Empty: any allowed IP.",
    )
    max_lifetime_days = forms.IntegerField(
        label="Maximum lifetime (days)",
        min_value=1,
        max_value=MAX_LIFETIME_DAYS,
        initial=MAX_LIFETIME_DAYS,
        help_text=f"A key expires at most this many days after today; 1 to {MAX_LIFETIME_DAYS}.",
    )

    def __init__(self, *args, policy: KeyPolicy, **kwargs):
        # An API only admins may grant (the Audit history) is fixed by the model's rule; a
        # Staff box here would offer a choice that changes nothing.
        self.apis = list(Api.objects.active().filter(admins_only=False))
        kwargs.setdefault(
            "initial",
            {
                "approved_networks": "\n".join(
                    display_network(n) for n in policy.approved_networks
                ),
                "max_lifetime_days": policy.max_lifetime_days,
                **{f"roles-{api.slug}": policy.roles_granting(api.slug) for api in self.apis},
            },
        )
        super().__init__(*args, **kwargs)
        for api in self.apis:
            self.fields[f"roles-{api.slug}"] = forms.MultipleChoiceField(
                label=api.name,
                required=False,
                choices=list(ROLE_LABELS.items()),
                widget=forms.CheckboxSelectMultiple,
            )

    def role_fields(self):
        return [self[f"roles-{api.slug}"] for api in self.apis]

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        try:
            self.candidate = candidate_policy(
                approved_networks=self.networks(),
                max_lifetime_days=cleaned["max_lifetime_days"],
                api_roles=self.api_roles(),
            )
        except ValidationError as error:
            for field, messages in error.message_dict.items():
                self.add_error(field if field in self.fields else None, messages)
        return cleaned

    def networks(self) -> list[str]:
        """The entries typed, split on lines, spaces or commas."""
        text = self.cleaned_data.get("approved_networks", "")
        return [entry for entry in re.split(r"[\s,]+", text) if entry]

    def api_roles(self) -> dict[str, list[str]]:
        """The APIs some role may not grant, with the roles that may: one every role grants
        is no restriction, and is not stored as one."""
        chosen = {api.slug: self.cleaned_data.get(f"roles-{api.slug}", []) for api in self.apis}
        return {slug: roles for slug, roles in chosen.items() if set(roles) != set(ROLE_LABELS)}

    def policy_fields(self) -> dict:
        """The values, named as keys.actions.change_policy takes them."""
        return {
            "approved_networks": self.candidate.approved_networks,
            "max_lifetime_days": self.candidate.max_lifetime_days,
            "api_roles": self.candidate.api_roles,
        }


class DecisionForm(forms.Form):
    """Approve or deny a request; a denial needs a reason (keys.actions.deny_request)."""

    reason = forms.CharField(
        label="Reason",
        max_length=500,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Mailed to the key's owner and recorded in the audit history; required to deny.",
    )
