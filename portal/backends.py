"""Every active user is staff (DESIGN §2): they manage their own keys, unless their only
role is auditor, which is read-only by definition."""

from django.contrib.auth.backends import BaseBackend

from portal.roles import AUDITOR, MANAGE_OWN_KEYS


class EveryActiveUserIsStaff(BaseBackend):
    """Grants keys.manage_own_keys to every active user who is not only an auditor.

    Authenticates nobody (ModelBackend does that); only adds this one permission, so a user
    created in the Django admin without a group can still create keys.
    """

    def get_all_permissions(self, user_obj, obj=None) -> set[str]:
        if obj is not None or not user_obj.is_active or user_obj.is_anonymous:
            return set()
        if not hasattr(user_obj, "_every_user_perm_cache"):
            roles = set(user_obj.groups.values_list("name", flat=True))
            only_auditor = AUDITOR in roles and not (roles - {AUDITOR})
            user_obj._every_user_perm_cache = set() if only_auditor else {MANAGE_OWN_KEYS}
        return user_obj._every_user_perm_cache

    def has_perm(self, user_obj, perm, obj=None) -> bool:
        return perm in self.get_all_permissions(user_obj, obj)
