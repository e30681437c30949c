"""python manage.py revoke_replaced_keys: write down the revocations renewals scheduled.

Nothing waits for it: the API refuses a replaced key from the end of its overlap on, on
every server. This makes the record say so (revoked at the end of the overlap, "replaced by
<identifier>"); the usage flusher also does it once a minute.
"""

from django.core.management.base import BaseCommand

from keys import actions


class Command(BaseCommand):
    help = (
        "Record the revocation of renewed keys whose overlap has ended, and forget previous "
        "passwords whose overlap has ended."
    )

    def handle(self, *args, **options):
        self.stdout.write(f"Revoked {actions.revoke_replaced_keys()} replaced key(s).")
        self.stdout.write(f"Ended {actions.end_password_overlaps()} password overlap(s).")
