from typing import cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from keys.lib.client_ip import client_ip
from keys.permissions import MANAGE_OWN_KEYS
from portal.forms import EmailForm
from portal.models import User
from portal.people import change_email
from portal.roles import home_page


def home(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect(home_page(request.user))
    return redirect("login")


@login_required
def profile(request: HttpRequest) -> HttpResponse:
    return _profile_page(request, EmailForm(initial={"email": _person(request).email}))


@login_required
@permission_required(MANAGE_OWN_KEYS, raise_exception=True)
@require_POST
def profile_email(request: HttpRequest) -> HttpResponse:
    """Set one's own e-mail address (where reminders about one's keys go)."""
    form = EmailForm(request.POST)
    if not form.is_valid():
        return _profile_page(request, form)
    email, person = form.cleaned_data["email"], _person(request)
    if email != person.email:
        change_email(person, email, actor=person, ip=client_ip(request))
    messages.success(request, f"Your e-mail address is now {email}.")
    return redirect("profile")


def _person(request: HttpRequest) -> User:
    return cast(User, request.user)  # behind login_required: a signed-in person


def _profile_page(request: HttpRequest, form: EmailForm) -> HttpResponse:
    # Auditors read and change nothing in the portal, their address included (an admin can).
    may_change = request.user.has_perm(MANAGE_OWN_KEYS)
    context = {"section": "profile", "form": form if may_change else None}
    return render(request, "portal/profile.html", context)
