"""Routes in the catalogue, and read-only or read-and-write grants (docs/design.md §9).

The key's `apis` table (keys_apikey_apis, made by Django for the many-to-many field) becomes
the KeyGrant model without touching the database, then gains `access`: every existing grant
is read and write, as before. Each seeded API gets its demo route /api/v1/<slug>/.
"""

import django.db.models.deletion
from django.db import migrations, models

import keys.validators


def seed_demo_routes(apps, schema_editor) -> None:
    from keys.seed import seed_routes

    seed_routes(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("keys", "0016_search_indexes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="KeyGrant",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        (
                            "api",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="grants",
                                to="keys.api",
                            ),
                        ),
                        (
                            "apikey",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="grants",
                                to="keys.apikey",
                            ),
                        ),
                    ],
                    options={
                        "verbose_name": "granted API",
                        "db_table": "keys_apikey_apis",
                        "unique_together": {("apikey", "api")},
                    },
                ),
                migrations.AlterField(
                    model_name="apikey",
                    name="apis",
                    field=models.ManyToManyField(
                        related_name="keys",
                        through="keys.KeyGrant",
                        to="keys.api",
                        verbose_name="APIs",
                    ),
                ),
            ],
            database_operations=[],
        ),
        migrations.AddField(
            model_name="keygrant",
            name="access",
            field=models.CharField(
                choices=[("write", "Read and write"), ("read", "Read only")],
                default="write",
                help_text="Read only allows GET, HEAD and OPTIONS; read and write every method.",
                max_length=5,
            ),
        ),
        migrations.AddConstraint(
            model_name="keygrant",
            constraint=models.CheckConstraint(
                condition=models.Q(("access__in", ["read", "write"])), name="key_grant_access_known"
            ),
        ),
        migrations.CreateModel(
            name="ApiRoute",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "host",
                    models.CharField(
                        blank=True,
                        help_text="Only requests to this host name (any host if blank), e.g. api.example.org.",
                        max_length=253,
                        validators=[keys.validators.validate_route_host],
                    ),
                ),
                (
                    "path_prefix",
                    models.CharField(
                        help_text="Requests whose path starts with this belong to the API, e.g. /risks/. Starts and ends with /.",
                        max_length=200,
                        validators=[keys.validators.validate_path_prefix],
                    ),
                ),
                (
                    "api",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="routes",
                        to="keys.api",
                    ),
                ),
            ],
            options={
                "verbose_name": "route",
                "ordering": ["host", "path_prefix"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("host", "path_prefix"), name="api_route_unique"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            ("path_prefix__endswith", "/"), ("path_prefix__startswith", "/")
                        ),
                        name="api_route_prefix_slashes",
                    ),
                ],
            },
        ),
        migrations.CreateModel(
            name="RouteTable",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("revision", models.PositiveBigIntegerField(default=0)),
            ],
            options={
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("id", 1)), name="route_table_singleton"
                    )
                ],
            },
        ),
        migrations.RunPython(seed_demo_routes, migrations.RunPython.noop),
    ]
