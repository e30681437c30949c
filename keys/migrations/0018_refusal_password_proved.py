"""Whether a refused address's caller proved the key's password (KeyCaller.password_proved).

Addresses refused before this migration are not proved: nothing recorded whether their caller
knew the password, and the key page offers one-click allow only for proved ones.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("keys", "0017_routes_and_read_only_grants"),
    ]

    operations = [
        migrations.AddField(
            model_name="keycaller",
            name="password_proved",
            field=models.BooleanField(
                default=False,
                help_text="A caller from this address proved the key's current password. Only "
                "then does the key page offer to allow a refused address with one click: the "
                "identifier is public, so anyone can be refused from an address of their "
                "choosing.",
            ),
        ),
    ]
