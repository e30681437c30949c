from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from portal.roles import home_page


def home(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect(home_page(request.user))
    return redirect("login")


@login_required
def profile(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/profile.html", {"section": "profile"})
