"""Every change to a key or the catalogue goes through one of these functions.

Each changes the data and appends its audit event in one transaction: if the event cannot be
written, nothing changes. Rules are checked by the model (`ApiKey.validated`, `save()`);
these functions call them, so views, the admin and the shell obey the same rules.
"""

from keys.actions.bulk_revocation import SetChanged, revoke_keys, snapshot
from keys.actions.catalogue import delete_api, route_snapshot, routes_changed, save_api
from keys.actions.keys import (
    MAX_RENEWAL_OVERLAP,
    MAX_SELF_ROTATION_OVERLAP,
    REGENERATE_OVERLAPS,
    SELF_ROTATION_EVERY,
    RotatedTooSoon,
    create_key,
    edit_key,
    end_of_validity,
    end_password_overlaps,
    keep_policy_marks_of,
    regenerate_password,
    renew_key,
    revoke_key,
    revoke_replaced_keys,
)
from keys.actions.policy import (
    LeftOut,
    approve_request,
    candidate_policy,
    change_policy,
    deny_request,
    keys_out_of,
    newly_out,
)
from keys.actions.reminders import (
    portal_url,
    reminder_threshold,
    send_expiry_reminder,
)

__all__ = [
    "MAX_RENEWAL_OVERLAP",
    "MAX_SELF_ROTATION_OVERLAP",
    "REGENERATE_OVERLAPS",
    "SELF_ROTATION_EVERY",
    "LeftOut",
    "RotatedTooSoon",
    "SetChanged",
    "approve_request",
    "candidate_policy",
    "change_policy",
    "create_key",
    "delete_api",
    "deny_request",
    "edit_key",
    "end_of_validity",
    "end_password_overlaps",
    "keep_policy_marks_of",
    "keys_out_of",
    "newly_out",
    "portal_url",
    "regenerate_password",
    "reminder_threshold",
    "renew_key",
    "revoke_key",
    "revoke_keys",
    "revoke_replaced_keys",
    "route_snapshot",
    "routes_changed",
    "save_api",
    "send_expiry_reminder",
    "snapshot",
]
