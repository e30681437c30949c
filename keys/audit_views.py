"""The Audit history pages for auditors and admins: filter, page through, export as CSV.

The queries are AuditEvent.objects methods (keyset pages, never OFFSET); these views parse
the filters and render.
"""

from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from keys import audit_csv
from keys.filters import AuditFilterForm
from keys.models import AuditEvent
from keys.paging import filter_query

VIEW_AUDIT = "keys.view_audit"


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
    context = {
        "form": form,
        "page": page,
        "filter_query": filter_query(request, "before", "after"),
        "paged": bool(request.GET.get("before") or request.GET.get("after")),
    }
    return render(request, "audit/history.html", context, status=200 if form.is_valid() else 400)


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
    events = AuditEvent.objects.in_chain().matching(**form.filters())
    response = StreamingHttpResponse(
        audit_csv.stream(events, by_or_about=form.cleaned_data["user"]),
        content_type="text/csv; charset=utf-8",
    )
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="audit-history-{stamp}.csv"'
    return response
