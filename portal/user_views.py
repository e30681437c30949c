"""Users, for admins: find a user, deactivate them (their keys are revoked, sessions end)."""

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.db import DatabaseError
from django.db.models import Count, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from keys.lib.client_ip import client_ip
from keys.lib.paging import filter_query
from keys.lib.reauth import confirmation_required, form_data
from keys.models import ApiKey
from portal.forms import DeactivateForm, UserFilterForm
from portal.people import deactivate_user

MANAGE_USERS = "portal.change_user"
PAGE_SIZE = 50


@require_GET
@login_required
@permission_required(MANAGE_USERS, raise_exception=True)
def user_list(request: HttpRequest) -> HttpResponse:
    form = UserFilterForm(request.GET)
    page = None
    if form.is_valid():
        # Live keys counted per listed user (a subquery after the page is cut), not grouped
        # over every key of every user before paging.
        live_keys = ApiKey.objects.filter(owner=OuterRef("pk"), revoked_at=None)
        live_keys = live_keys.order_by().values("owner").annotate(n=Count("pk")).values("n")
        users = (
            get_user_model()
            .objects.annotate(live_keys=Coalesce(Subquery(live_keys), 0))
            .prefetch_related("groups")
            .order_by("username")
        )
        if q := form.cleaned_data["q"].strip():
            users = users.filter(Q(username__icontains=q) | Q(email__icontains=q))
        page = Paginator(users, PAGE_SIZE).get_page(form.cleaned_data["page"])
    context = {"form": form, "page": page, "filter_query": filter_query(request, "page")}
    status = 200 if form.is_valid() else 400
    return render(request, "portal/users.html", context, status=status)


@require_http_methods(["GET", "POST"])
@login_required
@permission_required(MANAGE_USERS, raise_exception=True)
@confirmation_required
def user_deactivate(request: HttpRequest, username: str) -> HttpResponse:
    person = get_object_or_404(get_user_model(), username=username)
    if not person.is_active:
        messages.info(request, f"{person.get_username()} is already deactivated.")
        return redirect("users")
    live_keys = person.api_keys.live().count()
    form = DeactivateForm(form_data(request))
    if request.method == "POST" and form.is_valid():
        if person.pk == request.user.pk:
            form.add_error(None, "You cannot deactivate yourself.")
        elif person.is_superuser and not request.user.is_superuser:
            # As in the Django admin: only a superuser may act on a superuser.
            form.add_error(None, "Only a superuser can deactivate a superuser.")
        else:
            try:
                revoked = deactivate_user(
                    person,
                    actor=request.user,
                    ip=client_ip(request),
                    reason=form.cleaned_data["reason"].strip(),
                )
            except DatabaseError:
                form.add_error(None, "The user could not be deactivated; nothing was changed.")
            else:
                messages.success(
                    request,
                    f"{person.get_username()} was deactivated; "
                    f"{revoked} key{'s' if revoked != 1 else ''} revoked.",
                )
                return redirect("users")
    context = {"person": person, "form": form, "live_keys": live_keys}
    return render(request, "portal/user_deactivate.html", context)
