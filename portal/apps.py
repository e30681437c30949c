from django.apps import AppConfig
from django.db.models.signals import post_migrate


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self) -> None:
        from portal.roles import grant_after_migrate

        post_migrate.connect(grant_after_migrate, sender=self, dispatch_uid="portal.roles")
        # Imported for their side effects: they register the checks and connect the receivers.
        from portal import checks, mfa, user_events  # noqa: F401
