import datetime

from django import forms
from django.core.exceptions import ValidationError

from keys.actions import REGENERATE_OVERLAPS
from keys.models import Api, ApiKey, display_network, latest_expiry_for, local_date


class IpListWidget(forms.Widget):
    """One text input per entry, all under the same name; rendered by _ip_row.html."""

    template_name = "keys/_ip_list.html"

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
        rows = [v for v in context["widget"]["value"]] or [""]
        context["widget"]["rows"] = rows
        return context


class AllowedIpsField(forms.Field):
    """A list of IPv4/IPv6 addresses or CIDR ranges; blank rows are ignored."""

    widget = IpListWidget

    def to_python(self, value):
        return [entry.strip() for entry in (value or []) if entry and entry.strip()]

    def validate(self, value):
        pass  # every allowlist rule is the model's (keys.models.allowlist)


class ApiChoiceField(forms.ModelMultipleChoiceField):
    widget = forms.CheckboxSelectMultiple

    def label_from_instance(self, api):
        return api


class KeyForm(forms.Form):
    """The Add and edit form; its rules come from the model through keys.actions."""

    name = forms.CharField(label="Name", max_length=100)
    expires_on = forms.DateField(
        label="Expiration date", widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
    )
    allowed_ips = AllowedIpsField(label="Allowed IPs", required=False)
    apis = ApiChoiceField(label="APIs", queryset=Api.objects.active(), required=False)
    may_rotate_itself = forms.BooleanField(
        label="This key may rotate itself",
        required=False,
        help_text="Automation may get a new password with this key's own credentials "
        "(POST /api/v1/self/rotate); the old one keeps working for up to 24 hours.",
    )

    def __init__(self, *args, owner=None, key: ApiKey | None = None, **kwargs):
        self.key = key
        self.owner = key.owner if key is not None else owner
        if key is None:
            latest = latest_expiry_for(local_date())
            kwargs.setdefault("initial", {"expires_on": latest})
        else:
            latest = key.expires_on
            kwargs.setdefault(
                "initial",
                {
                    "name": key.name,
                    "expires_on": key.expires_on,
                    "allowed_ips": [display_network(e.network) for e in key.allowed_ips.all()],
                    "apis": list(key.apis.all()),
                    "may_rotate_itself": key.may_rotate_itself,
                },
            )
        super().__init__(*args, **kwargs)
        self.latest_expires_on = latest
        self.fields["expires_on"].widget.attrs.update(
            {"min": local_date().isoformat(), "max": latest.isoformat()}
        )
        self.fields["expires_on"].help_text = (
            f"At most one year after creation: {latest.isoformat()} at the latest."
            if key is None
            else f"May only be shortened: {latest.isoformat()} at the latest."
        )
        if key is not None:
            # A key keeps an API it holds even if the catalogue entry was later deactivated.
            self.fields["apis"].queryset = Api.objects.filter(
                pk__in=[
                    *Api.objects.active().values_list("pk", flat=True),
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
                expires_on=cleaned.get("expires_on"),
                networks=cleaned.get("allowed_ips", []),
                apis=cleaned.get("apis", []),
                key=self.key,
            )
        except ValidationError as error:
            for field, messages in error.message_dict.items():
                if field == "__all__" or field not in self._errors:
                    self.add_error(None if field == "__all__" else field, messages)
        return cleaned

    def key_fields(self) -> dict:
        """The checked values, named as keys.actions.create_key and edit_key take them."""
        return {**self.validated, "may_rotate_itself": self.cleaned_data["may_rotate_itself"]}

    def add_model_errors(self, error: ValidationError) -> None:
        """Place errors raised by the model or an action next to the fields they concern."""
        for field, messages in error.message_dict.items():
            self.add_error(None if field == "__all__" else field, messages)


class RevokeForm(forms.Form):
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
