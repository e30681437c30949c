"""The All keys page and its inventory CSV: every user's keys, for admins and auditors
(view_all_keys)."""

from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from keys import inventory_csv
from keys.filters import AllKeysFilterForm
from keys.lib.paging import filter_query
from keys.models import ApiKey
from keys.permissions import VIEW_ALL_KEYS


@require_GET
@login_required
@permission_required(VIEW_ALL_KEYS, raise_exception=True)
def all_keys(request: HttpRequest) -> HttpResponse:
    form = AllKeysFilterForm(request.GET)
    page = count = None
    if form.is_valid():
        keys = ApiKey.objects.with_listing_data().matching(**form.filters())
        page, count = keys.page_and_total(**form.cursors())
    context = {
        "form": form,
        "page": page,
        "count": count,
        "filter_query": filter_query(request, *form.CURSORS),
        "paged": any(request.GET.get(name) for name in form.CURSORS),
    }
    status = 200 if form.is_valid() else 400
    return render(request, "keys/all_keys.html", context, status=status)


@never_cache
@require_GET
@login_required
@permission_required(VIEW_ALL_KEYS, raise_exception=True)
def inventory(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """Stream every key the All keys filters match, one CSV row each, for access reviews."""
    form = AllKeysFilterForm(request.GET)
    if not form.is_valid():
        return all_keys(request)  # the page, with each error next to its field
    response = StreamingHttpResponse(
        inventory_csv.stream(_keys(form)), content_type="text/csv; charset=utf-8"
    )
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="key-inventory-{stamp}.csv"'
    return response


def _keys(form: AllKeysFilterForm):
    keys = ApiKey.objects.with_listing_data().matching(**form.filters())
    return keys.order_by("-created_at", "-pk")
