"""The All keys page: every user's keys, for admins and auditors (view_all_keys)."""

from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

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
        keys = ApiKey.objects.with_listing_data().matching(**form.filters())
        keys = keys.order_by("-created_at", "-pk")
        page = Paginator(keys, PAGE_SIZE).get_page(form.cleaned_data["page"])
    context = {"form": form, "page": page, "filter_query": filter_query(request, "page")}
    status = 200 if form.is_valid() else 400
    return render(request, "keys/all_keys.html", context, status=status)
