"""The data every installation starts with: the API catalogue and the audit chain's head.

Used by the data migration and, idempotently, after every migrate or flush (post_migrate).
The roles and their permissions are portal.roles.
"""

from django.db import models

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

# The API of the pull (GET /api/v1/audit/events): granted read only, by administrators only.
AUDIT_API = (
    "audit",
    "Audit history",
    "Pull the signed audit history, for a SIEM (read only; only administrators may grant it).",
)
AUDIT_API_POSITION = 100  # after the CERRIX modules


def seed(apps, *, with_routes: bool = True) -> None:
    """Create what is missing; never undo an admin's change to an existing entry."""
    Api = apps.get_model("keys", "Api")
    for position, (slug, name, description) in enumerate(CATALOGUE):
        api, created = Api.objects.get_or_create(
            slug=slug, defaults={"name": name, "description": description, "position": position}
        )
        if created and with_routes:
            api.routes.create(host="", path_prefix=demo_prefix(slug))
    if with_routes:
        apps.get_model("keys", "RouteTable").objects.get_or_create(pk=1)
    AuditHead = apps.get_model("keys", "AuditHead")
    AuditHead.objects.get_or_create(pk=1, defaults={"seq": 0, "hash": "0" * 64})


def demo_prefix(slug: str) -> str:
    """The path prefix of a seeded API's demo endpoints, its first route."""
    return f"/api/v1/{slug}/"


def seed_routes(apps) -> None:
    """Give each seeded API without a route its demo route (migration 0017)."""
    Api = apps.get_model("keys", "Api")
    apps.get_model("keys", "RouteTable").objects.get_or_create(pk=1)
    for api in Api.objects.filter(slug__in=[slug for slug, _name, _text in CATALOGUE]):
        if not api.routes.exists():
            api.routes.create(host="", path_prefix=demo_prefix(api.slug))


def seed_audit_api(apps) -> None:
    """Add the Audit history API and its route /api/v1/audit/ if missing (migration 0024)."""
    Api = apps.get_model("keys", "Api")
    slug, name, description = AUDIT_API
    if Api.objects.filter(name=name).exclude(slug=slug).exists():
        name = f"{name} (portal)"  # names are unique: an admin's own entry keeps its name
    api, created = Api.objects.get_or_create(
        slug=slug,
        defaults={
            "name": name,
            "description": description,
            "position": AUDIT_API_POSITION,
            "admins_only": True,
            "read_only": True,
        },
    )
    if not (api.admins_only and api.read_only):
        # An entry an admin made with this slug before: the pull serves the whole history to
        # its keys, so it becomes what the pull requires (keys.api.audit_pull also refuses a
        # key whose owner is not an administrator, whoever granted it).
        Api.objects.filter(pk=api.pk).update(admins_only=True, read_only=True)
    if created:
        api.routes.create(host="", path_prefix=demo_prefix(slug))
        RouteTable = apps.get_model("keys", "RouteTable")
        RouteTable.objects.get_or_create(pk=1)
        # Historical models skip RouteTable.changed(): raise the revision here, so running
        # processes read the new route on their next gateway check.
        RouteTable.objects.filter(pk=1).update(revision=models.F("revision") + 1)


def seed_in_migration(apps, schema_editor) -> None:
    # Migration 0003 seeds the catalogue before routes exist; 0017 gives them theirs.
    seed(apps, with_routes=False)


def seed_after_migrate(sender, using="default", **kwargs) -> None:
    """post_migrate handler for the keys app (also runs after a test database flush)."""
    from django.apps import apps
    from django.db import connections

    introspection = connections[using].introspection
    tables = set(introspection.table_names())
    if not {"keys_api", "keys_audithead"} <= tables:  # not when half-migrated
        return
    with connections[using].cursor() as cursor:
        columns = {c.name for c in introspection.get_table_description(cursor, "keys_api")}
    fields = apps.get_model("keys", "Api")._meta.concrete_fields
    if not {field.column for field in fields} <= columns:
        return  # migrated back before a column of the catalogue: its migrations seeded it
    seed(apps, with_routes="keys_apiroute" in tables)
    seed_audit_api(apps)
