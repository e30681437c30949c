"""The data every installation starts with: the API catalogue and the three roles.

Used by the data migration and, idempotently, after every migrate or flush (post_migrate), so
roles keep their permissions as the code adds new ones.
"""

from django.contrib.auth.management import create_permissions

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

ROLE_PERMISSIONS = {
    "staff": ["keys.manage_own_keys"],
    "admin": [
        "keys.manage_own_keys",
        "keys.view_all_keys",
        "keys.revoke_any_key",
        "keys.view_audit",
        "keys.view_apikey",
        "keys.view_api",
        "keys.add_api",
        "keys.change_api",
        "keys.view_auditevent",
        "portal.view_user",
        "portal.add_user",
        "portal.change_user",
    ],
    "auditor": ["keys.view_all_keys", "keys.view_audit"],
}


def seed(apps) -> None:
    """Create what is missing; never undo an admin's change to an existing entry."""
    Api = apps.get_model("keys", "Api")
    for position, (slug, name, description) in enumerate(CATALOGUE):
        Api.objects.get_or_create(
            slug=slug, defaults={"name": name, "description": description, "position": position}
        )
    AuditHead = apps.get_model("keys", "AuditHead")
    AuditHead.objects.get_or_create(pk=1, defaults={"seq": 0, "hash": "0" * 64})

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        for perm in perms:
            app_label, codename = perm.split(".")
            group.permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )


def seed_in_migration(apps, schema_editor) -> None:
    # Permissions are normally created after migrate; the roles need them now.
    for app_label in ("keys", "portal", "auth"):
        app_config = apps.get_app_config(app_label)
        app_config.models_module = True  # the historical app registry's stub lacks it
        create_permissions(app_config, apps=apps, verbosity=0)
    seed(apps)


def seed_after_migrate(sender, using="default", **kwargs) -> None:
    """post_migrate handler for the keys app (also runs after a test database flush)."""
    from django.apps import apps
    from django.db import connections

    tables = connections[using].introspection.table_names()
    if {"keys_api", "keys_audithead", "auth_group"} <= set(tables):  # not when half-migrated
        seed(apps)
