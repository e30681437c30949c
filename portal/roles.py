"""Roles are Django groups; what each may do is a permission, checked with has_perm()."""

STAFF = "staff"
ADMIN = "admin"
AUDITOR = "auditor"
ROLES = (STAFF, ADMIN, AUDITOR)

MANAGE_OWN_KEYS = "keys.manage_own_keys"
# What each role may do is set by keys/migrations/0002 (groups with permissions); admins
# change it in the Django admin like any group.
