"""The All keys page and its inventory CSV: every user's keys, for admins and auditors
(view_all_keys); and the revocation of the keys it filters, for admins (revoke_any_key)."""

import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import ValidationError
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from keys import actions, inventory_csv
from keys.actions import bulk_revocation
from keys.filters import AllKeysFilterForm
from keys.forms import BulkRevokeForm
from keys.lib import reauth
from keys.lib.client_ip import client_ip
from keys.lib.paging import filter_query
from keys.lib.reauth import confirmation_required, form_data
from keys.models import ApiKey
from keys.permissions import REVOKE_ANY_KEY, VIEW_ALL_KEYS

logger = logging.getLogger(__name__)


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


NO_FILTER = (
    "Choose at least one filter (owner, API, network, created before, search or expiring "
    "within): a bulk revocation never takes every key."
)
SET_CHANGED = (
    "The keys these filters match changed since the list was shown: nothing was revoked. "
    "Check the list below and confirm again."
)
NOT_REVOKED = "The keys could not be revoked; nothing was changed. Try again."


@never_cache
@require_http_methods(["GET", "POST"])
@login_required
@permission_required(VIEW_ALL_KEYS, raise_exception=True)
@permission_required(REVOKE_ANY_KEY, raise_exception=True)
@confirmation_required
def revoke_matching(request: HttpRequest) -> HttpResponse:
    """Show the active keys the All keys filters (in the query string) match, then revoke
    exactly those with one reason (keys.actions.revoke_keys)."""
    filters = AllKeysFilterForm(request.GET)
    form = BulkRevokeForm(form_data(request))
    query = filter_query(request, *filters.CURSORS, "status", reauth.RESUME)
    context = {
        "filters": filters,
        "form": form,
        "filter_query": query,
        "keys": None,
        # Gateways that cache the check's yes (docs/gateways.md) let a key pass that long.
        "gateway_cache_seconds": settings.KEYS_GATEWAY_CACHE_SECONDS,
    }
    if not filters.is_valid():
        return render(request, "keys/revoke_matching.html", context, status=400)
    narrowing = filters.narrowing()
    if not narrowing:
        filters.add_error(None, NO_FILTER)
        return render(request, "keys/revoke_matching.html", context, status=400)
    keys = ApiKey.objects.usable().matching(**filters.bulk_filters())
    if request.method == "POST" and form.is_valid():
        try:
            revoked = actions.revoke_keys(
                keys,
                shown=form.cleaned_data["shown"],
                actor=request.user,
                reason=form.cleaned_data["reason"],
                filters=narrowing,
                owner=filters.cleaned_data["owner"],
                ip=client_ip(request),
            )
        except actions.SetChanged:
            form.add_error(None, SET_CHANGED)
        except ValidationError as error:  # more keys than one act takes
            form.add_error(None, error.messages)
        except DatabaseError:
            logger.exception("Revoking in bulk the keys of %s failed; rolled back.", query)
            form.add_error(None, NOT_REVOKED)
        else:
            count = len(revoked)
            messages.success(request, f"{count} key{'s' if count != 1 else ''} revoked.")
            return redirect(f"{reverse('all_keys')}?{query}")
    most = bulk_revocation.MAX_KEYS
    shown = list(keys.with_listing_data().order_by("-created_at", "-pk")[: most + 1])
    if len(shown) > most:  # not offered: one act takes at most `most` keys
        context.update(keys=[], too_many=keys.count(), most=most)
    else:
        context.update(keys=shown, shown=actions.snapshot(shown))
    status = 400 if form.errors else 200
    return render(request, "keys/revoke_matching.html", context, status=status)
