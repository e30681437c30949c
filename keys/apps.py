from django.apps import AppConfig
from django.db.models.signals import post_migrate


class KeysConfig(AppConfig):
    name = "keys"
    verbose_name = "API keys"

    def ready(self) -> None:
        from keys.audit import signing
        from keys.audit.checkpoints import checkpoint_after_migrate
        from keys.seed import seed_after_migrate

        # A malformed AUDIT_SIGNING_KEY stops start-up here, not at the first audit event.
        signing.signer()
        # Runs after auth's own post_migrate handler (apps are ordered), once permissions exist.
        post_migrate.connect(seed_after_migrate, sender=self, dispatch_uid="keys.seed")
        post_migrate.connect(
            checkpoint_after_migrate, sender=self, dispatch_uid="keys.audit.checkpoint"
        )
