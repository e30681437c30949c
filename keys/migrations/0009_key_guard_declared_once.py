"""The key trigger, rebuilt from ApiKey.NEVER_CHANGES and FINAL_ONCE_REVOKED (keys.guards).

Adds what 0006 missed: the owner and creation date never change, a revoked key's name and
expiry are final, the expiration date only moves earlier, and a key holds at most 50
allowed IPs. Key names refuse control characters.
"""

from django.db import migrations, models

import keys.validators
from keys import guards


class Migration(migrations.Migration):
    dependencies = [("keys", "0008_key_description")]

    operations = [
        migrations.AlterField(
            model_name="apikey",
            name="name",
            field=models.CharField(
                help_text="Descriptive; unique among your keys that are not revoked.",
                max_length=100,
                validators=[keys.validators.validate_no_control_characters],
            ),
        ),
        migrations.RunPython(guards.reinstall, migrations.RunPython.noop),
    ]
