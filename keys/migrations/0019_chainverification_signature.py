"""Records of chain checks are signed (ChainVerification.signature).

Records from before this migration carry none: the Audit history page says the newest one is
not signed until the next check (Verify now, or the scheduled verify_audit) records a signed one.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("keys", "0018_refusal_password_proved"),
    ]

    operations = [
        migrations.AddField(
            model_name="chainverification",
            name="signature",
            field=models.CharField(
                blank=True,
                default="",
                editable=False,
                help_text="'<key id>:<base64 Ed25519 signature>' of the other fields, by the "
                "audit signing key: the history page trusts no record of a check without it.",
                max_length=128,
            ),
        ),
    ]
