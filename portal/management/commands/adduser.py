import sys

from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from portal.roles import ROLES


class Command(BaseCommand):
    help = "Create a user with a role; the password is read from standard input, never argv."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", choices=ROLES, required=True)
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--password-stdin",
            action="store_true",
            required=True,
            help="Read the password from the first line of standard input.",
        )

    def handle(self, *args, username, role, email, password_stdin, **options):
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise CommandError("No password on standard input.")
        User = get_user_model()
        if User.objects.filter(username=username).exists():
            raise CommandError(f"User {username!r} already exists.")
        user = User(username=username, email=email, is_staff=(role == "admin"))
        try:
            user.full_clean(exclude=["password"])
        except ValidationError as error:
            raise CommandError("User refused: " + " ".join(error.messages)) from None
        try:
            password_validation.validate_password(password, user)
        except ValidationError as error:
            raise CommandError("Password refused: " + " ".join(error.messages)) from None
        user.set_password(password)
        with transaction.atomic():
            user.save()
            user.groups.add(Group.objects.get(name=role))
        self.stdout.write(f"Created {role} {username!r}.")
