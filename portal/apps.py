from django.apps import AppConfig
from django.contrib.auth.signals import user_logged_in
from django.db.models.signals import post_migrate


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self) -> None:
        from keys.lib import reauth
        from portal.roles import grant_after_migrate

        post_migrate.connect(grant_after_migrate, sender=self, dispatch_uid="portal.roles")
        # Every log-in, on whatever path, opens a new "confirm it's you" window.
        user_logged_in.connect(reauth.proved_by_log_in, dispatch_uid="keys.lib.reauth")
        # Imported for their side effects: they register the checks and connect the receivers.
        from portal import checks, confirm, mfa, user_events  # noqa: F401
