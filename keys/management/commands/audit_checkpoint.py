"""python manage.py audit_checkpoint: sign the current head now (run it from cron)."""

from django.core.management.base import BaseCommand, CommandError

from keys.audit import chain


class Command(BaseCommand):
    help = (
        "Write a signed checkpoint {seq, hash, at} of the audit chain head to the log and to "
        "AUDIT_CHECKPOINT_DIR. The app writes one every AUDIT_CHECKPOINT_EVERY_EVENTS events "
        "and after quiet spells; a regular run from cron also covers a quiet history."
    )

    def handle(self, *args, **options):
        try:
            checkpoint = chain.write_checkpoint()
        except OSError as error:
            raise CommandError(
                f"Cannot write to AUDIT_CHECKPOINT_DIR: {error.strerror} ({error.filename})"
            ) from None
        self.stdout.write(checkpoint.to_line())
