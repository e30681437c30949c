"""The Audit history pages for auditors and admins: filter, page through, export as CSV.

The queries are AuditEvent.objects methods (keyset pages, never OFFSET); these views parse
the filters and render.
"""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from keys.audit import chain, export
from keys.audit.forms import AuditFilterForm, date_presets
from keys.lib.cache_counters import cache_add, cache_delete_many
from keys.lib.paging import filter_query
from keys.models import Api, AuditEvent, AuditHead
from keys.permissions import VIEW_AUDIT

# Held while Verify now runs; it lapses by itself if the worker dies mid-check.
VERIFYING = "kp:audit-verifying"
VERIFYING_AT_MOST_SECONDS = 120


@never_cache
@require_GET
@login_required
@permission_required(VIEW_AUDIT, raise_exception=True)
def history(request: HttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET)
    page = None
    if form.is_valid():
        page = (
            AuditEvent.objects.in_chain()
            .matching(**form.filters())
            .page(
                before=form.cleaned_data["before"],
                after=form.cleaned_data["after"],
                by_or_about=form.cleaned_data["user"],
            )
        )
    return _history_page(request, form, page)


def _history_page(request: HttpRequest, form: AuditFilterForm, page) -> HttpResponse:
    verification, verification_signed = chain.last_verification()
    context = {
        "form": form,
        "page": page,
        "filter_query": filter_query(request, "before", "after"),
        "paged": bool(request.GET.get("before") or request.GET.get("after")),
        "presets": date_presets(request.GET),
        "time_zone": settings.TIME_ZONE,
        "verification": verification,
        "verification_signed": verification_signed,
        "api_names": Api.objects.names(),
    }
    return render(request, "audit/history.html", context, status=200 if form.is_valid() else 400)


@never_cache
@require_GET
@login_required
@permission_required(VIEW_AUDIT, raise_exception=True)
def export_csv(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """Stream the filtered events oldest first, with their hashes (verify_audit --csv)."""
    form = AuditFilterForm(request.GET)
    if not form.is_valid():
        return _history_page(request, form, None)
    events = AuditEvent.objects.in_chain().matching(**form.filters())
    response = StreamingHttpResponse(
        export.stream(events, by_or_about=form.cleaned_data["user"]),
        content_type="text/csv; charset=utf-8",
    )
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="audit-history-{stamp}.csv"'
    return response


@login_required
@permission_required(VIEW_AUDIT, raise_exception=True)
@require_POST
def verify_chain(request: HttpRequest) -> HttpResponse:
    """Re-walk the whole chain now (what verify_audit does) and show the result on the page.

    It reads every event, so it is slow on a long history but harmless: the result is kept
    outside the chain and nothing is appended to it. One check runs at a time (across app
    servers, through the shared cache), and none on a history longer than
    AUDIT_VERIFY_NOW_MAX_EVENTS, so repeated clicks cannot tie up the workers.
    """
    events = AuditHead.objects.get(pk=1).seq  # events are numbered from 1, without gaps
    if events > settings.AUDIT_VERIFY_NOW_MAX_EVENTS:
        messages.info(
            request,
            f"The history holds {events:,} events, too many to check while you wait: "
            "the scheduled manage.py verify_audit checks it and its result shows here.",
        )
        return redirect("audit:history")
    if not cache_add(VERIFYING, VERIFYING_AT_MOST_SECONDS):
        messages.info(request, "A check of the chain is running already; its result shows here.")
        return redirect("audit:history")
    try:
        checked = chain.check_chain(by=request.user.get_username())
    finally:
        cache_delete_many([VERIFYING])
    if checked.intact:
        messages.success(request, f"The chain is intact: {checked.events:,} events checked.")
    else:
        messages.error(request, f"The chain is broken at event {checked.broken_at}.")
    return redirect("audit:history")
