"""The All keys page and its inventory CSV: every user's keys, for admins and auditors
(view_all_keys)."""

from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from keys import inventory_csv
from keys.filters import AllKeysFilterForm
from keys.models import ApiKey
from keys.paging import filter_query

PAGE_SIZE = 50


@require_GET
@login_required
@permission_required("keys.view_all_keys", raise_exception=True)
def all_keys(request: HttpRequest) -> HttpResponse:
    form = AllKeysFilterForm(request.GET)
    page = None
    if form.is_valid():
        page = Paginator(_keys(form), PAGE_SIZE).get_page(form.cleaned_data["page"])
    context = {"form": form, "page": page, "filter_query": filter_query(request, "page")}
    status = 200 if form.is_valid() else 400
    return render(request, "keys/all_keys.html", context, status=status)


@never_cache
@require_GET
@login_required
@permission_required("keys.view_all_keys", raise_exception=True)
def inventory(request: HttpRequest) -> HttpResponse:
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
