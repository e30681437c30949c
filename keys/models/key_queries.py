"""What lists of keys ask: status, visibility, search, and keyset pages (ApiKey.objects).

The rules these filters name (what "usable" or "revoked" means) are the key model's; the
model's file holds the rules of one key, this one the questions asked of many.
"""

import datetime
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models
from django.db.models import Exists, OuterRef, Q
from django.db.models.functions import Substr
from django.utils import timezone

from keys import permissions
from keys.lib.dates import local_date

if TYPE_CHECKING:
    from keys.models.key import ApiKey


KEY_PAGE_SIZE = 50


@dataclass
class KeyPage:
    keys: list["ApiKey"]
    older: str | None = None  # `before=` (a key's identifier) for the next older page
    newer: str | None = None  # `after=` for the next newer page


def _revoked(at: datetime.datetime | None = None) -> Q:
    return ~Q(revoked_at=None) | Q(revoke_at__lte=at or timezone.now())


class ApiKeyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        if frozen := self.model.columns_only_save_writes().intersection(kwargs):
            raise ValueError(f"Keys change {sorted(frozen)} only through keys.actions.")
        return super().update(**kwargs)

    def live(self, at: datetime.datetime | None = None):
        """Not revoked (possibly expired), counting a replaced key revoked once its overlap ends."""
        return self.exclude(_revoked(at))

    def usable(self, at: datetime.datetime | None = None):
        """Neither revoked nor past the end of their expiration date."""
        return self.live(at).filter(expires_on__gte=local_date(at))

    def expired(self, at: datetime.datetime | None = None):
        return self.live(at).filter(expires_on__lt=local_date(at))

    def revoked(self, at: datetime.datetime | None = None):
        return self.filter(_revoked(at))

    def overlap_over(self, at: datetime.datetime | None = None):
        """Replaced keys whose overlap has ended but whose revocation is not written yet."""
        return self.filter(revoked_at=None, revoke_at__lte=at or timezone.now())

    def with_status(self, status: str, at: datetime.datetime | None = None):
        """Keys whose ApiKey.status() is `status` (the one status filter of every list)."""
        statuses = self.model.Status
        if status == statuses.ACTIVE:
            return self.usable(at)
        if status == statuses.EXPIRED:
            return self.expired(at)
        if status == statuses.REVOKED:
            return self.revoked(at)
        raise ValueError(f"Unknown key status {status!r}.")

    def name_taken(self, owner, name: str, *, exclude=None) -> bool:
        """True if `owner` has another key with this name that is neither revoked nor
        being replaced (a renewed key passes its name on to its successor)."""
        keys = self.filter(owner=owner, name=name, revoked_at=None, revoke_at=None)
        return keys.exclude(pk=exclude).exists()

    def visible_to(self, user):
        """Keys `user` may see: their own, or all with the view_all_keys permission."""
        if user.has_perm(permissions.VIEW_ALL_KEYS):
            return self
        return self.filter(owner=user)

    def with_listing_data(self, *, allowed_ips: bool = True):
        """What a list row shows: owner, revoker, APIs and (unless the list omits them) the
        allowed IPs, in a fixed number of queries whatever the number of rows."""
        from keys.models.key import KeyGrant  # defined after ApiKey, which uses this class

        grants = KeyGrant.objects.select_related("api").order_by("api__position", "api__name")
        keys = self.select_related("owner", "revoked_by").prefetch_related(
            models.Prefetch("grants", queryset=grants)
        )
        return keys.prefetch_related("allowed_ips") if allowed_ips else keys

    def allowing_an_address_in(self, network: str):
        """Keys that accept calls from at least one address of `network`."""
        from keys.models.key import AllowedIp  # defined after ApiKey, which uses this class

        return self.filter(self._allowing(AllowedIp.objects.overlapping(network)))

    def allowing_addresses_outside(self, network: str):
        """Keys that accept calls from at least one address outside `network`."""
        from keys.models.key import AllowedIp

        return self.filter(self._allowing(AllowedIp.objects.reaching_outside(network)))

    def _allowing(self, entries) -> Q:
        """Keys with one of `entries`, or with no entry where that means any address."""
        from keys.models.key import AllowedIp

        found = Q(Exists(entries.filter(key=OuterRef("pk"))))
        if settings.KEYS_REQUIRE_ALLOWED_IPS:
            return found
        # Keys without entries, possible only in this set-up, accept any address
        # (keys.api.check._ip_allowed).
        return found | ~Q(Exists(AllowedIp.objects.filter(key=OuterRef("pk"))))

    def expiring_within(self, days: int, at: datetime.datetime | None = None):
        """Usable keys whose last valid day is at most `days` days after today."""
        today = local_date(at)
        return self.usable(at).filter(expires_on__lte=today + datetime.timedelta(days=days))

    def matching(
        self,
        *,
        q="",
        owner=None,
        status="",
        api=None,
        expiring_within=None,
        ips=None,
        ips_match="in",
        created_before=None,
    ):
        """Keys whose name, identifier or owner contains `q`, of this owner, status (ApiKey.Status),
        API, expiring within so many days, allowing an address in the network `ips` (or, with
        ips_match="outside", addresses outside it), created before the date `created_before`
        (in the portal's time zone); each optional."""
        keys = self
        if q := q.strip():
            # The owners are looked up first (people are few next to keys), so each part of the
            # OR is an index on the keys table: the trigram indexes of migration 0016 on
            # PostgreSQL, the owner index; not a join that scans every key for its owner.
            users = self.model._meta.get_field("owner").related_model._default_manager
            owners = list(users.filter(username__icontains=q).values_list("pk", flat=True))
            keys = keys.filter(
                Q(name__icontains=q) | Q(identifier__icontains=q) | Q(owner__in=owners)
            )
        if owner is not None:
            keys = keys.filter(owner=owner)
        if status:
            keys = keys.with_status(status)
        if api is not None:
            keys = keys.filter(apis=api)
        if expiring_within is not None:
            keys = keys.expiring_within(expiring_within)
        if ips:
            if ips_match == "outside":
                keys = keys.allowing_addresses_outside(ips)
            else:
                keys = keys.allowing_an_address_in(ips)
        if created_before is not None:
            keys = keys.filter(created_on__lt=created_before)
        return keys

    def page(self, *, before=None, after=None, size: int = KEY_PAGE_SIZE) -> "KeyPage":
        """Newest first, cut at a key (its identifier is the cursor), never by OFFSET: a page
        10,000 keys deep is one short walk along the key_newest_first index, like the first.

        `before` is a key: the page holds the keys created before it (older); `after`, the
        keys created after it (newer). A cursor key need not match this queryset's filters.
        """
        if after is not None:
            rows = list(self.newer_than(after).order_by("created_at", "pk")[: size + 1])
            keys = rows[:size][::-1]
            page = KeyPage(keys)
            if keys:
                page.newer = keys[0].identifier if len(rows) > size else None
                page.older = keys[-1].identifier if self.older_than(keys[-1]).exists() else None
            return page
        older = self.older_than(before) if before is not None else self
        rows = list(older.order_by("-created_at", "-pk")[: size + 1])
        keys = rows[:size]
        page = KeyPage(keys)
        if keys:
            page.older = keys[-1].identifier if len(rows) > size else None
            if before is not None and self.newer_than(keys[0]).exists():
                page.newer = keys[0].identifier
        return page

    def page_and_total(self, **cursors) -> tuple["KeyPage", int | None]:
        """page(), and on the first page how many keys this queryset holds. Counted only when
        they fill more than that page (a narrow search costs no second walk of its index); a
        deeper page is not counted again (a count reads every key: 3 ms at 100,000)."""
        page = self.page(**cursors)
        if any(cursors.values()):
            return page, None
        if page.older is None:
            return page, len(page.keys)
        return page, self.count()

    def older_than(self, key: "ApiKey"):
        """Keys after `key` in the newest-first order (created_at, then pk, descending)."""
        # The first bound lets the index walk start at `key`; the exclusion settles ties.
        keys = self.filter(created_at__lte=key.created_at)
        return keys.exclude(created_at=key.created_at, pk__gte=key.pk)

    def newer_than(self, key: "ApiKey"):
        """Keys before `key` in the newest-first order."""
        keys = self.filter(created_at__gte=key.created_at)
        return keys.exclude(created_at=key.created_at, pk__lte=key.pk)

    def known_as(self, text: str):
        """Keys whose name is `text` (any case) or whose identifier starts with it.

        On PostgreSQL the identifier's pattern index serves the prefix (LIKE 'text%') and the
        trigram index on UPPER(name) the name. SQLite's LIKE ignores case, so the prefix is
        also compared with `=` on a substring: ckid_abc must not find ckid_ABC; SQLite scans.
        """
        keys = self.annotate(identifier_prefix=Substr("identifier", 1, len(text)))
        prefix = Q(identifier__startswith=text, identifier_prefix=text)
        return keys.filter(prefix | Q(name__iexact=text))
