"""The API catalogue: the APIs a key may be granted."""

from django.db import models


class ApiQuerySet(models.QuerySet):
    def active(self):
        return self.filter(is_active=True)

    def names(self) -> dict[str, str]:
        """Each API's name by its slug (the code events and CSV files carry)."""
        return dict(self.values_list("slug", "name"))


class Api(models.Model):
    """An entry of the API catalogue: one endpoint group under /api/v1/<slug>/."""

    slug = models.SlugField(
        unique=True, help_text="The path segment under /api/v1/; never changes once in use."
    )
    name = models.CharField(max_length=100, unique=True)
    description = models.CharField(max_length=200, blank=True)
    position = models.PositiveSmallIntegerField(default=0)
    is_active = models.BooleanField(
        default=True, help_text="Inactive APIs are not offered for new keys."
    )

    objects = ApiQuerySet.as_manager()

    class Meta:
        ordering = ["position", "name"]
        verbose_name = "API"
        verbose_name_plural = "API catalogue"

    def __str__(self) -> str:
        return self.name
