"""Every active user is staff (portal.roles): an authorisation backend grants it."""

from django.contrib.auth.backends import BaseBackend

from portal.roles import permissions_of_every_active_user


class EveryActiveUserIsStaff(BaseBackend):
    """Grants every active user the permissions portal.roles gives them beyond their groups.

    Authenticates nobody (ModelBackend does that); only adds these permissions, so a user
    created in the Django admin without a group can still create keys.
    """

    def get_all_permissions(self, user_obj, obj=None) -> set[str]:
        if obj is not None or not user_obj.is_active or user_obj.is_anonymous:
            return set()
        if not hasattr(user_obj, "_every_user_perm_cache"):
            roles = set(user_obj.groups.values_list("name", flat=True))
            user_obj._every_user_perm_cache = permissions_of_every_active_user(roles)
        return user_obj._every_user_perm_cache

    def has_perm(self, user_obj, perm, obj=None) -> bool:
        return perm in self.get_all_permissions(user_obj, obj)
