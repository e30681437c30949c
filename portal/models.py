import unicodedata

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
