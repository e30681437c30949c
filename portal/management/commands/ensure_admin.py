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

    def handle(self, *args, username, **options):
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
        # Shown once, on the terminal of whoever ran `make run`; only its hash is stored.
        # Change it under the Django admin (/admin/), or create named users with adduser.
        self.stdout.write(
            self.style.SUCCESS(
                "\n  First run: created the admin user.\n"
                f"  Log in at http://127.0.0.1:8000/login/ as {username!r} with the one-time "
                f"password:  {password}\n  (shown only now; it is not stored anywhere)\n"
            )
        )
