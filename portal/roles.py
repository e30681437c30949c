"""The roles, what each may do, and the rule that every active user is staff (docs/design.md §2).

Roles are Django groups and what they may do are permissions, checked with has_perm(). After
every migrate (or test database flush) each group gets the permissions listed here, so new
ones reach it; an admin's own additions to a group in the Django admin are kept.
"""

from django.contrib.auth.management import create_permissions

from keys.permissions import (
    GRANT_ADMINS_ONLY_APIS,
    MANAGE_KEY_POLICY,
    MANAGE_OWN_KEYS,
    MANAGE_STREAMING,
    REVOKE_ANY_KEY,
    VIEW_ALL_KEYS,
    VIEW_AUDIT,
)

STAFF = "staff"
ADMIN = "admin"
AUDITOR = "auditor"
ROLES = (STAFF, ADMIN, AUDITOR)

ROLE_PERMISSIONS = {
    STAFF: [MANAGE_OWN_KEYS],
    ADMIN: [
        MANAGE_OWN_KEYS,
        VIEW_ALL_KEYS,
        REVOKE_ANY_KEY,
        VIEW_AUDIT,
        GRANT_ADMINS_ONLY_APIS,  # the Audit history API (docs/design.md §11)
        MANAGE_STREAMING,
        MANAGE_KEY_POLICY,
        "keys.view_apikey",
        "keys.view_api",
        "keys.add_api",
        "keys.change_api",
        # an API's routes, edited with it (the gateway check)
        "keys.view_apiroute",
        "keys.add_apiroute",
        "keys.change_apiroute",
        "keys.delete_apiroute",
        "keys.view_auditevent",
        "portal.view_user",
        "portal.add_user",
        "portal.change_user",
    ],
    AUDITOR: [VIEW_ALL_KEYS, VIEW_AUDIT],
}


def home_page(user) -> str:
    """The URL name where `user` starts (`/`, after log-in): Audit history for someone who
    may read it but has no keys of their own to manage (an auditor), else their API Keys."""
    if user.has_perm(VIEW_AUDIT) and not user.has_perm(MANAGE_OWN_KEYS):
        return "audit:history"
    return "keys:list"


def roles_of(user) -> set[str]:
    """The roles `user` has (groups that are no role do not count)."""
    return set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))


def set_roles(user, roles: set[str]) -> None:
    """Give `user` exactly these roles: add the missing, remove the others (other groups stay).

    Each change reaches the audit history through portal.user_events (roles_changed).
    """
    from django.contrib.auth.models import Group

    if unknown := set(roles) - set(ROLES):
        raise ValueError(f"Not a role: {', '.join(sorted(unknown))}")
    current = roles_of(user)
    if extra := current - set(roles):
        user.groups.remove(*Group.objects.filter(name__in=extra))
    if missing := set(roles) - current:
        user.groups.add(*Group.objects.filter(name__in=missing))


def permissions_of_every_active_user(roles: set[str]) -> set[str]:
    """Staff's permissions, for anyone whose only role is not auditor (read-only by definition).

    So a user created in the Django admin without a group can still manage their own keys.
    """
    return set() if roles == {AUDITOR} else set(ROLE_PERMISSIONS[STAFF])


def grant_role_permissions(apps) -> None:
    """Give each role's group its permissions: add what is missing, remove nothing."""
    # Permissions are made by a post_migrate handler per app, possibly after this one runs.
    for app_label in {perm.split(".")[0] for perms in ROLE_PERMISSIONS.values() for perm in perms}:
        create_permissions(apps.get_app_config(app_label), apps=apps, verbosity=0)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        for perm in perms:
            app_label, codename = perm.split(".")
            group.permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )


def grant_after_migrate(sender, using="default", **kwargs) -> None:
    """post_migrate handler for the portal app (also runs after a test database flush)."""
    from django.apps import apps
    from django.db import connections

    tables = connections[using].introspection.table_names()
    if {"auth_group", "auth_permission", "django_content_type"} <= set(tables):
        grant_role_permissions(apps)
