"""python manage.py send_expiry_reminders (run daily, e.g. from cron)."""

import smtplib

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from keys import actions
from keys.models import ApiKey, local_date


class Command(BaseCommand):
    help = (
        "Mail the owners of keys that expire within KEYS_EXPIRY_REMINDER_DAYS days, once per "
        "threshold, through Django's email backend; each mail is an audit event."
    )

    def handle(self, *args, **options):
        thresholds = sorted(set(settings.KEYS_EXPIRY_REMINDER_DAYS))
        if not thresholds:
            self.stdout.write("KEYS_EXPIRY_REMINDER_DAYS is empty: no reminders.")
            return
        today = local_date()
        due = (
            ApiKey.objects.expiring_within(max(thresholds))
            .filter(owner__is_active=True)
            .select_related("owner")
            .order_by("expires_on", "pk")
        )
        sent = skipped = failed = 0
        for key in list(due):  # few rows; each is then written in its own transaction
            threshold = actions.reminder_threshold(key, thresholds, today)
            if threshold is None:
                continue
            if not key.owner.email:
                self.stderr.write(f"{key.identifier}: owner {key.owner} has no email address.")
                skipped += 1
                continue
            try:
                if actions.send_expiry_reminder(key, threshold=threshold, today=today):
                    sent += 1
            except (smtplib.SMTPException, OSError) as error:
                # One refused address or a hiccup must not cost every other owner their
                # reminder; nothing was recorded for this key, so the next run tries again.
                self.stderr.write(f"{key.identifier}: could not mail {key.owner}: {error}")
                failed += 1
        self.stdout.write(
            f"Sent {sent} reminder(s); {skipped} owner(s) without email; {failed} failed."
        )
        if failed:
            raise CommandError(f"{failed} reminder(s) could not be mailed; see above.")
