"""The permissions keys/ declares, named as has_perm() and permission_required take them.

ApiKey.Meta declares them from DECLARED; the views, the admin, the key rules and the roles
(portal/roles.py) name them through these constants, so a mistyped name fails at import
instead of silently refusing everyone. Templates read them as `perms.keys.<codename>`.
"""

MANAGE_OWN_KEYS = "keys.manage_own_keys"
VIEW_ALL_KEYS = "keys.view_all_keys"
REVOKE_ANY_KEY = "keys.revoke_any_key"
VIEW_AUDIT = "keys.view_audit"
GRANT_ADMINS_ONLY_APIS = "keys.grant_admins_only_apis"
MANAGE_STREAMING = "keys.manage_streaming"
MANAGE_KEY_POLICY = "keys.manage_key_policy"

# (codename, description) of each name above, as a model's Meta.permissions lists them.
DECLARED = tuple(
    (name.removeprefix("keys."), description)
    for name, description in (
        (MANAGE_OWN_KEYS, "Can create, edit and revoke their own keys"),
        (VIEW_ALL_KEYS, "Can see every user's keys"),
        (REVOKE_ANY_KEY, "Can revoke any user's key"),
        (VIEW_AUDIT, "Can read and export the audit history"),
        (GRANT_ADMINS_ONLY_APIS, "Can grant their keys the APIs only administrators may grant"),
        (MANAGE_STREAMING, "Can add, change and replay audit stream destinations"),
        (MANAGE_KEY_POLICY, "Can set the key policy and decide key requests"),
    )
)
