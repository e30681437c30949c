"""Dates in the portal's time zone. No models here."""

import datetime

from django.utils import timezone


def local_date(at: datetime.datetime | None = None) -> datetime.date:
    """The calendar date of `at` (default: now) in the portal's TIME_ZONE."""
    return timezone.localtime(at or timezone.now()).date()
