import getpass
import sys

from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.db import transaction

from portal.roles import ROLES


class Command(BaseCommand):
    help = (
        "Create a user with a role; the password is read from standard input, never argv. "
        "On a terminal it asks for the e-mail address if --email is missing, and for the "
        "password without showing it."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", choices=ROLES, required=True)
        parser.add_argument(
            "--email", default="", help="Where expiry reminders go (asked on a terminal)."
        )
        parser.add_argument(
            "--password-stdin",
            action="store_true",
            required=True,
            help="Read the password from the first line of standard input.",
        )

    def handle(self, *args, username, role, email, password_stdin, **options):
        User = get_user_model()
        if User.objects.filter(username=username).exists():
            raise CommandError(f"User {username!r} already exists.")
        on_terminal = sys.stdin.isatty()
        if not email and on_terminal:
            email = self.ask_email()
        user = User(username=username, email=email, is_staff=(role == "admin"))
        try:
            user.full_clean(exclude=["password"])
        except ValidationError as error:
            raise CommandError("User refused: " + " ".join(error.messages)) from None
        password = self.read_password(on_terminal)
        if not password:
            raise CommandError("No password on standard input.")
        try:
            password_validation.validate_password(password, user)
        except ValidationError as error:
            raise CommandError("Password refused: " + " ".join(error.messages)) from None
        user.set_password(password)
        with transaction.atomic():
            user.save()
            user.groups.add(Group.objects.get(name=role))
        self.stdout.write(f"Created {role} {username!r}.")
        if not email:
            self.stderr.write(
                f"{username!r} has no e-mail address, so no expiry reminder reaches them: "
                "they can set one on their profile (/profile/), or give --email."
            )

    def ask_email(self) -> str:
        """Ask on the terminal until a valid address comes, or nothing (Enter, end of input)."""
        while True:
            self.stdout.write("E-mail address (expiry reminders go there): ", ending="")
            self.stdout.flush()
            answer = sys.stdin.readline().strip()
            if not answer:
                return ""
            try:
                validate_email(answer)
            except ValidationError:
                self.stderr.write("Enter a valid e-mail address, or nothing to skip it.")
                continue
            return answer

    def read_password(self, on_terminal: bool) -> str:
        if on_terminal:  # typed: not echoed
            return getpass.getpass("Password (not shown): ")
        return sys.stdin.readline().rstrip("\r\n")
