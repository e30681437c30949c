"""Each allowed IP entry as numbers too (first and last address), so All keys can filter keys
by the addresses they allow. Nullable columns: SQLite adds them without rebuilding the table
(which would drop its trigger, keys.guards); existing entries are filled here."""

from django.db import migrations, models

from keys.lib.networks import address_range


def fill_ranges(apps, schema_editor) -> None:
    AllowedIp = apps.get_model("keys", "AllowedIp")
    entries = list(AllowedIp.objects.filter(version=None))
    for entry in entries:
        entry.version, entry.first_address, entry.last_address = address_range(entry.network)
    AllowedIp.objects.bulk_update(
        entries, ["version", "first_address", "last_address"], batch_size=1000
    )


class Migration(migrations.Migration):
    dependencies = [
        ("keys", "0021_usage_journal"),
    ]

    operations = [
        migrations.AddField(
            model_name="allowedip",
            name="first_address",
            field=models.CharField(editable=False, max_length=39, null=True),
        ),
        migrations.AddField(
            model_name="allowedip",
            name="last_address",
            field=models.CharField(editable=False, max_length=39, null=True),
        ),
        migrations.AddField(
            model_name="allowedip",
            name="version",
            field=models.PositiveSmallIntegerField(editable=False, null=True),
        ),
        migrations.RunPython(fill_ranges, migrations.RunPython.noop),
    ]
