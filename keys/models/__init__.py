"""The keys app's models, one subject per file: the catalogue, keys, their use, the history.

Every key rule lives on the key model (keys/models/key.py): `clean()` explains a broken rule
to a person, `save()` refuses it from any code path, and constraints refuse it in the database.
"""

from keys.models.audit import (
    AUDIT_PAGE_SIZE,
    AuditEvent,
    AuditEventQuerySet,
    AuditHead,
    AuditPage,
    ChainVerification,
)
from keys.models.catalogue import Api, ApiQuerySet, ApiRoute, RouteTable
from keys.models.key import (
    MAX_DESCRIPTION,
    REFUSAL_REASONS,
    REFUSED_ADDRESSES_SHOWN,
    UNUSED_AFTER,
    AllowedIp,
    ApiKey,
    KeyGrant,
    admins_only_message,
    key_status,
    latest_expiry_for,
    local_date,
    previous_password_works_at,
)
from keys.models.key_queries import KEY_PAGE_SIZE, ApiKeyQuerySet, KeyPage
from keys.models.policy import (
    GRANTING_ROLES,
    MAX_LIFETIME_DAYS,
    ROLE_LABELS,
    KeyPolicy,
    KeyRequest,
    roles_of,
    users_with_perm,
)
from keys.models.streaming import StreamDestination, StreamDestinationQuerySet
from keys.models.usage import KeyApiUse, KeyCaller, KeyUsageDay, UsageJournal

__all__ = [
    "AUDIT_PAGE_SIZE",
    "GRANTING_ROLES",
    "KEY_PAGE_SIZE",
    "MAX_DESCRIPTION",
    "MAX_LIFETIME_DAYS",
    "REFUSAL_REASONS",
    "REFUSED_ADDRESSES_SHOWN",
    "ROLE_LABELS",
    "UNUSED_AFTER",
    "AllowedIp",
    "Api",
    "ApiKey",
    "ApiKeyQuerySet",
    "ApiQuerySet",
    "ApiRoute",
    "AuditEvent",
    "AuditEventQuerySet",
    "AuditHead",
    "AuditPage",
    "ChainVerification",
    "KeyApiUse",
    "KeyCaller",
    "KeyGrant",
    "KeyPage",
    "KeyPolicy",
    "KeyRequest",
    "KeyUsageDay",
    "RouteTable",
    "StreamDestination",
    "StreamDestinationQuerySet",
    "UsageJournal",
    "admins_only_message",
    "key_status",
    "latest_expiry_for",
    "local_date",
    "previous_password_works_at",
    "roles_of",
    "users_with_perm",
]
