from django import forms


class UserFilterForm(forms.Form):
    q = forms.CharField(
        label="Search", required=False, max_length=150, help_text="Part of a user name or email."
    )
    page = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)


class DeactivateForm(forms.Form):
    reason = forms.CharField(
        label="Reason",
        max_length=500,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Recorded with each revoked key and shown to the user; a default is used "
        "when left empty.",
    )


class EmailForm(forms.Form):
    email = forms.EmailField(
        label="E-mail address",
        max_length=254,
        help_text="Expiry reminders and notices about your keys go here.",
        error_messages={"required": "Enter your e-mail address: reminders go there."},
    )
