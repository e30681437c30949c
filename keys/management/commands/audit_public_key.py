"""python manage.py audit_public_key: the public key that verifies the audit history."""

from django.core.management.base import BaseCommand

from keys.audit import signing


class Command(BaseCommand):
    help = (
        "Print the PEM public key of AUDIT_SIGNING_KEY, for auditors: with it, "
        "`verify_audit --public-key FILE` checks every signature and checkpoint."
    )

    def handle(self, *args, **options):
        signer = signing.signer()
        self.stdout.write(f"# Key Portal audit signing key {signer.key_id}")
        self.stdout.write(signing.public_key_pem(signer.public_key), ending="")
