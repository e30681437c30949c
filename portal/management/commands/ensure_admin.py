import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction


class Command(BaseCommand):
    help = (
        "Create the first admin if no user exists yet, with a random password shown once on "
        "this terminal (for `make run`); do nothing otherwise."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument(
            "--url",
            default="http://127.0.0.1:8000/login/",
            help="The log-in page to name (make run passes its PORT).",
        )

    def handle(self, *args, username, url, **options):
        User = get_user_model()
        if User.objects.exists():
            self.stdout.write(
                "Users exist already: log in with yours (or create one with adduser)."
            )
            return
        password = secrets.token_urlsafe(12)
        user = User(username=username, is_staff=True, is_superuser=True)
        user.set_password(password)
        with transaction.atomic():
            user.save()
            user.groups.add(Group.objects.get(name="admin"))
        # Shown once, on the terminal of whoever ran `make run`, in a box that the server's
        # own output scrolling by below cannot be mistaken for; only its hash is stored.
        self.stdout.write(
            self.style.SUCCESS(
                boxed(
                    "First run: created the admin user.",
                    "",
                    f"Log in at {url}",
                    f"user name: {username}",
                    f"one-time password: {password}",
                    "",
                    "Shown only now: only its hash is stored. Change it in the Django",
                    "admin (/admin/), and create named users with adduser (README.md).",
                )
            )
        )


def boxed(*lines: str) -> str:
    """The lines in a box of plain ASCII, with a blank line above and below."""
    width = max(len(line) for line in lines)
    rule = "+" + "-" * (width + 4) + "+"
    body = [f"|  {line.ljust(width)}  |" for line in lines]
    return "\n".join(["", rule, *body, rule, ""])
