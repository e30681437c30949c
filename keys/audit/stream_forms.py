"""The forms of the Streaming pages: a destination, and a replay from a sequence number."""

import re

from django import forms
from django.core.exceptions import ValidationError

from keys.models import StreamDestination
from keys.models.streaming import new_secret

# Set by the sender itself: a custom header may not replace them.
RESERVED_HEADERS = {
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "x-keyportal-signature",
    "transfer-encoding",
    "connection",
}
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
MAX_HEADERS = 10


def parse_headers(text: str) -> dict[str, str]:
    """`Name: value` lines as a dict; ValidationError naming the first bad line."""
    headers: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        name, value = name.strip(), value.strip()
        if not colon or not _HEADER_NAME.match(name) or not value:
            raise ValidationError(f"Line {number} is not “Name: value”.")
        if name.lower() in RESERVED_HEADERS:
            raise ValidationError(f"Line {number}: the portal sets {name} itself.")
        if any(ord(char) < 32 or ord(char) == 127 for char in value):
            raise ValidationError(f"Line {number}: the value holds a control character.")
        headers[name] = value
    if len(headers) > MAX_HEADERS:
        raise ValidationError(f"At most {MAX_HEADERS} headers.")
    return headers


class DestinationForm(forms.ModelForm):
    """Add or change a destination. Secrets are never shown back: the webhook secret is
    generated (and shown once) or entered; header values are replaced only when given."""

    SECRET_CHOICES_NEW = [
        ("generate", "Generate a secret (shown once, after saving)"),
        ("enter", "Enter a secret (e.g. one the receiver gave you)"),
    ]
    SECRET_CHOICES_EDIT = [
        ("keep", "Keep the current secret"),
        *SECRET_CHOICES_NEW,
    ]

    secret_choice = forms.ChoiceField(
        label="Signing secret", widget=forms.RadioSelect, required=False
    )
    entered_secret = forms.CharField(
        label="Secret",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Only with “Enter a secret”: at least 32 characters.",
    )
    headers_text = forms.CharField(
        label="Custom headers",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text="Webhook only. One “Name: value” per line, e.g. “Authorization: Splunk "
        "<HEC token>”. Values are kept secret and never shown again.",
    )
    keep_headers = forms.BooleanField(
        label="Keep the current custom headers", required=False, initial=True
    )

    class Meta:
        model = StreamDestination
        fields = ["name", "kind", "url", "host", "port", "batch_size", "is_active"]
        widgets = {"kind": forms.RadioSelect}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        editing = self.instance.pk is not None
        choices = self.SECRET_CHOICES_EDIT if editing else self.SECRET_CHOICES_NEW
        self.fields["secret_choice"].choices = choices
        self.fields["secret_choice"].initial = choices[0][0]
        self.fields[
            "secret_choice"
        ].help_text = "Webhook only. The receiver checks X-KeyPortal-Signature with it."
        if editing and self.instance.headers:
            names = ", ".join(sorted(self.instance.headers))
            self.fields[
                "keep_headers"
            ].help_text = f"Now: {names}. Untick and fill in Custom headers to replace them all."
        else:
            del self.fields["keep_headers"]
        self.generated_secret: str | None = None

    def clean_headers_text(self) -> dict[str, str]:
        return parse_headers(self.cleaned_data["headers_text"])

    def clean(self):
        cleaned = super().clean()
        destination = self.instance
        if cleaned.get("kind") != StreamDestination.Kind.WEBHOOK:
            return cleaned
        choice = cleaned.get("secret_choice") or self.fields["secret_choice"].initial
        entered = cleaned.get("entered_secret", "")
        if choice == "enter" and len(entered) < 32:
            self.add_error("entered_secret", "Enter at least 32 characters.")
        elif choice == "keep" and not destination.secret:
            self.add_error("secret_choice", "There is no current secret: generate or enter one.")
        return cleaned

    def _post_clean(self):
        # The secret and headers are set before the model's clean() and the action's checks.
        cleaned = self.cleaned_data
        destination = self.instance
        if cleaned.get("kind") == StreamDestination.Kind.WEBHOOK and not self.errors:
            choice = cleaned.get("secret_choice") or self.fields["secret_choice"].initial
            if choice == "generate":
                self.generated_secret = destination.secret = new_secret()
            elif choice == "enter":
                destination.secret = cleaned["entered_secret"]
            if not cleaned.get("keep_headers"):
                destination.headers = cleaned.get("headers_text") or {}
        elif cleaned.get("kind") in (
            StreamDestination.Kind.SYSLOG_TCP,
            StreamDestination.Kind.SYSLOG_TLS,
        ):
            destination.secret, destination.headers = "", {}
        super()._post_clean()


class ReplayForm(forms.Form):
    from_seq = forms.IntegerField(
        label="Replay from sequence number",
        min_value=1,
        help_text="Every event from this one on is sent again (the receiver de-duplicates on seq).",
    )
