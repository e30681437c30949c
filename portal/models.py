import unicodedata
import uuid

from django.contrib.auth.models import AbstractUser
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.db import models

from keys.validators import validate_no_control_characters

# Scripts that one language writes together (Japanese mixes all three with Han).
_ONE_SCRIPT = {"HIRAGANA": "CJK", "KATAKANA": "CJK", "HANGUL": "CJK", "BOPOMOFO": "CJK"}


def validate_single_script(value: str) -> None:
    """Refuse a user name whose letters mix scripts: alice spelt with a Cyrillic a is not alice."""
    scripts = {
        _ONE_SCRIPT.get(script, script)
        for char in value or ""
        if unicodedata.category(char).startswith("L")
        for script in [unicodedata.name(char, "UNKNOWN").split(" ")[0]]
    }
    if len(scripts) > 1:
        raise ValidationError(
            "A user name may not mix alphabets (%(scripts)s): it would look like another "
            "person's name.",
            code="mixed_scripts",
            params={"scripts": ", ".join(sorted(s.title() for s in scripts))},
        )


class User(AbstractUser):
    """A person who signs in to the portal; roles are the groups staff, admin, auditor."""

    username = models.CharField(
        "username",
        max_length=150,
        unique=True,
        help_text="150 characters or fewer; letters of one alphabet, digits and @/./+/-/_ only.",
        validators=[UnicodeUsernameValidator(), validate_single_script],
        error_messages={"unique": "A user with that username already exists."},
    )
    first_name = models.CharField(
        "first name", max_length=150, blank=True, validators=[validate_no_control_characters]
    )
    last_name = models.CharField(
        "last name", max_length=150, blank=True, validators=[validate_no_control_characters]
    )

    class Meta:
        db_table = "portal_user"

    @property
    def display_name(self) -> str:
        return self.get_full_name() or self.username


class ScimIdentity(models.Model):
    """How a SCIM client (Entra ID, Okta) knows a user: the id it was given, its own externalId.

    Made the first time SCIM shows the user (created through SCIM, or found by a filter on a
    user name that already existed). Users are never deleted (their history refers to them):
    a SCIM DELETE deactivates the user and marks this identity deleted, after which the id
    answers 404 as RFC 7644 §3.6 asks.
    """

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="scim_identity")
    scim_id = models.UUIDField(
        unique=True, default=uuid.uuid4, editable=False, help_text="The SCIM resource id."
    )
    external_id = models.CharField(
        max_length=255,
        blank=True,
        validators=[validate_no_control_characters],
        help_text="The provider's own id for the person (SCIM externalId), kept as sent.",
    )
    deleted_at = models.DateTimeField(
        null=True, blank=True, help_text="When a SCIM DELETE removed the user from SCIM's view."
    )

    class Meta:
        verbose_name = "SCIM identity"
        verbose_name_plural = "SCIM identities"

    def __str__(self) -> str:
        return f"SCIM {self.scim_id}"
