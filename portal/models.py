from django.contrib.auth.models import AbstractUser


class User(AbstractUser):
    """A person who signs in to the portal; roles are the groups staff, admin, auditor."""

    class Meta:
        db_table = "portal_user"

    @property
    def display_name(self) -> str:
        return self.get_full_name() or self.username
