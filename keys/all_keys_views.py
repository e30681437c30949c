"""The All keys page: every user's keys, for admins and auditors (view_all_keys)."""

from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from keys.filters import AllKeysFilterForm
from keys.models import ApiKey
from keys.paging import filter_query


@require_GET
@login_required
@permission_required("keys.view_all_keys", raise_exception=True)
def all_keys(request: HttpRequest) -> HttpResponse:
    form = AllKeysFilterForm(request.GET)
    page = count = None
    if form.is_valid():
        keys = ApiKey.objects.with_listing_data(allowed_ips=False).matching(**form.filters())
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
