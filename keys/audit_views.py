"""The Audit history pages for auditors and admins: filter, page through, export as CSV.

Pages are cut by sequence number (keyset pagination), never by OFFSET: every page, the
first or one a million events deep, is one short walk along an index.
"""

import csv
import heapq
from collections.abc import Iterator
from dataclasses import dataclass

from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from keys import audit_csv
from keys.filters import AuditFilterForm
from keys.models import AuditEvent, AuditHead
from keys.paging import filter_query

VIEW_AUDIT = "keys.view_audit"
PAGE_SIZE = 50
EXPORT_CHUNK = 2000


@dataclass
class Page:
    events: list[AuditEvent]
    older: int | None = None  # `before=` for the next older page
    newer: int | None = None  # `after=` for the next newer page


def _first_rows(querysets, *, limit: int, ascending: bool, **bounds) -> list[AuditEvent]:
    """The first `limit` events of the union of querysets, in seq order, without repeats."""
    order = "seq" if ascending else "-seq"
    found: dict[int, AuditEvent] = {}
    for events in querysets:
        for event in events.filter(**bounds).select_related("owner").order_by(order)[:limit]:
            found[event.seq] = event
    return sorted(found.values(), key=lambda e: e.seq, reverse=not ascending)[:limit]


def _any(querysets, **bounds) -> bool:
    return any(
        events.filter(**bounds).order_by("seq").values_list("seq", flat=True)[:1]
        for events in querysets
    )


def page_of(querysets, *, before: int | None, after: int | None, size: int = PAGE_SIZE) -> Page:
    """Newest first; `before` pages towards older events, `after` towards newer ones."""
    if after is not None:
        rows = _first_rows(querysets, limit=size + 1, ascending=True, seq__gt=after)
        more_newer = len(rows) > size
        events = list(reversed(rows[:size]))
        page = Page(events)
        if events:
            page.newer = events[0].seq if more_newer else None
            page.older = events[-1].seq if _any(querysets, seq__lte=after) else None
        return page
    bounds = {"seq__lt": before} if before is not None else {}
    rows = _first_rows(querysets, limit=size + 1, ascending=False, **bounds)
    events = rows[:size]
    page = Page(events)
    if events:
        page.older = events[-1].seq if len(rows) > size else None
        if before is not None and _any(querysets, seq__gte=before):
            page.newer = events[0].seq
    return page


@never_cache
@require_GET
@login_required
@permission_required(VIEW_AUDIT, raise_exception=True)
def history(request: HttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET)
    page = None
    if form.is_valid():
        # Up to the head, as the export: a row past it is not in the chain (verify_audit).
        upto = AuditHead.objects.get(pk=1).seq
        page = page_of(
            [events.filter(seq__lte=upto) for events in form.querysets()],
            before=form.cleaned_data["before"],
            after=form.cleaned_data["after"],
        )
    context = {
        "form": form,
        "page": page,
        "filter_query": filter_query(request, "before", "after"),
        "paged": bool(request.GET.get("before") or request.GET.get("after")),
    }
    return render(request, "audit/history.html", context, status=200 if form.is_valid() else 400)


class _Echo:
    """A file-like object whose write() returns the line, for csv.writer to stream."""

    def write(self, value: str) -> str:
        return value


def _ascending(events, *, upto: int) -> Iterator[AuditEvent]:
    """Every event of one queryset up to seq `upto`, oldest first, fetched in keyset chunks."""
    last = 0
    while True:
        chunk = list(
            events.filter(seq__gt=last, seq__lte=upto)
            .select_related("owner")
            .order_by("seq")[:EXPORT_CHUNK]
        )
        yield from chunk
        if len(chunk) < EXPORT_CHUNK:
            return
        last = chunk[-1].seq


def _export_rows(querysets, upto: int) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(audit_csv.COLUMNS)
    previous = None
    merged = heapq.merge(*(_ascending(events, upto=upto) for events in querysets), key=_seq)
    for event in merged:
        if event.seq != previous:  # an event both by and about the user comes twice
            yield writer.writerow(audit_csv.event_row(event))
        previous = event.seq


def _seq(event: AuditEvent) -> int:
    return event.seq


@never_cache
@require_GET
@login_required
@permission_required(VIEW_AUDIT, raise_exception=True)
def export_csv(request: HttpRequest) -> HttpResponse:
    """Stream the filtered events oldest first, with their hashes (verify_audit --csv)."""
    form = AuditFilterForm(request.GET)
    if not form.is_valid():
        context = {
            "form": form,
            "page": None,
            "filter_query": filter_query(request, "before", "after"),
        }
        return render(request, "audit/history.html", context, status=400)
    # Fixed at the start, so the file is one consistent cut even while events are appended.
    upto = AuditHead.objects.get(pk=1).seq
    response = StreamingHttpResponse(
        _export_rows(form.querysets(), upto), content_type="text/csv; charset=utf-8"
    )
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="audit-history-{stamp}.csv"'
    return response
