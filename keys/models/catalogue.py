"""The API catalogue: the APIs a key may be granted."""

from django.db import models

from keys.validators import validate_path_prefix, validate_route_host


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
    # Set by the seed for the Audit history API (docs/design.md §11), not in the admin's form:
    # who may grant it and how is the portal's rule, not a catalogue setting.
    admins_only = models.BooleanField(
        default=False,
        editable=False,
        help_text="Only administrators may grant it, to their own keys; others are not offered it.",
    )
    read_only = models.BooleanField(
        default=False, editable=False, help_text="Granted read only, never read and write."
    )

    objects = ApiQuerySet.as_manager()

    class Meta:
        ordering = ["position", "name"]
        verbose_name = "API"
        verbose_name_plural = "API catalogue"

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        super().save(*args, **kwargs)
        RouteTable.changed()  # its slug names it in the route table

    def delete(self, *args, **kwargs):
        RouteTable.changed()  # its routes go with it
        return super().delete(*args, **kwargs)


class RouteTable(models.Model):
    """The one row whose revision rises with every change of a route or an API's slug.

    The gateway check keeps the route table in each process and reads this revision with
    the key (the same single query), so an edited route counts on the next request
    everywhere without a query for the table on every call.
    """

    revision = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(id=1), name="route_table_singleton")
        ]

    def __str__(self) -> str:
        return f"route table, revision {self.revision}"

    @classmethod
    def changed(cls) -> None:
        """Raise the revision (in the caller's transaction)."""
        if not cls.objects.filter(pk=1).update(revision=models.F("revision") + 1):
            cls.objects.get_or_create(pk=1, defaults={"revision": 1})


class ApiRouteQuerySet(models.QuerySet):
    # Every way of writing routes raises the table's revision (save() and delete() too).
    def bulk_create(self, *args, **kwargs):
        RouteTable.changed()
        return super().bulk_create(*args, **kwargs)

    def update(self, **kwargs):
        RouteTable.changed()
        return super().update(**kwargs)

    def delete(self):
        RouteTable.changed()
        return super().delete()

    def table(self) -> list[tuple[str, str, str]]:
        """Every route as (host, path prefix, API slug), most specific first: a route with a
        host before one without, a longer prefix before a shorter one (see keys.lib.routes)."""
        rows = self.values_list("host", "path_prefix", "api__slug")
        return sorted(rows, key=lambda row: (row[0] == "", -len(row[1])))


class ApiRoute(models.Model):
    """Where a catalogue API is served: requests to `host` (any, if blank) whose path starts
    with `path_prefix` belong to it. The gateway check (/gateway/verify) decides by these."""

    api = models.ForeignKey(Api, on_delete=models.CASCADE, related_name="routes")
    host = models.CharField(
        max_length=253,
        blank=True,
        validators=[validate_route_host],
        help_text="Only requests to this host name (any host if blank), e.g. api.example.org.",
    )
    path_prefix = models.CharField(
        max_length=200,
        validators=[validate_path_prefix],
        help_text="Requests whose path starts with this belong to the API, e.g. /risks/. "
        "Starts and ends with /.",
    )

    objects = ApiRouteQuerySet.as_manager()

    class Meta:
        ordering = ["host", "path_prefix"]
        verbose_name = "route"
        constraints = [
            models.UniqueConstraint(fields=["host", "path_prefix"], name="api_route_unique"),
            models.CheckConstraint(
                condition=models.Q(path_prefix__startswith="/", path_prefix__endswith="/"),
                name="api_route_prefix_slashes",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.host}{self.path_prefix}"

    def clean(self) -> None:
        self.host = (self.host or "").strip().lower().rstrip(".")
        self.path_prefix = (self.path_prefix or "").strip()

    def save(self, *args, **kwargs) -> None:
        # The shell and data migrations obey the same shape rules as the admin.
        self.clean()
        validate_route_host(self.host)
        validate_path_prefix(self.path_prefix)
        super().save(*args, **kwargs)
        RouteTable.changed()

    def delete(self, *args, **kwargs):
        RouteTable.changed()
        return super().delete(*args, **kwargs)
