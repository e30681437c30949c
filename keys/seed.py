"""The data every installation starts with: the API catalogue and the audit chain's head.

Used by the data migration and, idempotently, after every migrate or flush (post_migrate).
The roles and their permissions are portal.roles.
"""

CATALOGUE = [
    ("risks", "Risks", "Read the risk register: risks, scores and owners."),
    ("controls", "Controls", "Read controls and their test results."),
    ("events", "Events", "Read loss events and near misses."),
    ("incidents", "Incidents", "Read incidents and their follow-up."),
    ("mois", "Measures of improvement", "Read measures of improvement and their progress."),
    ("findings", "Findings", "Read audit findings and their status."),
    ("kris", "Key risk indicators", "Read key risk indicators and their measurements."),
    ("third-parties", "Third party management", "Read third parties and their assessments."),
]


def seed(apps) -> None:
    """Create what is missing; never undo an admin's change to an existing entry."""
    Api = apps.get_model("keys", "Api")
    for position, (slug, name, description) in enumerate(CATALOGUE):
        Api.objects.get_or_create(
            slug=slug, defaults={"name": name, "description": description, "position": position}
        )
    AuditHead = apps.get_model("keys", "AuditHead")
    AuditHead.objects.get_or_create(pk=1, defaults={"seq": 0, "hash": "0" * 64})


def seed_in_migration(apps, schema_editor) -> None:
    seed(apps)


def seed_after_migrate(sender, using="default", **kwargs) -> None:
    """post_migrate handler for the keys app (also runs after a test database flush)."""
    from django.apps import apps
    from django.db import connections

    tables = connections[using].introspection.table_names()
    if {"keys_api", "keys_audithead"} <= set(tables):  # not when half-migrated
        seed(apps)
