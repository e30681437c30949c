"""Confirm it's you (docs/design.md §10): protected acts ask for a fresh proof of identity.

A person proves who they are by logging in (any path that calls django.contrib.auth.login:
password, second factor, passkey, single sign-on) or by confirming on the confirmation page
(settings.REAUTH_URL). For REAUTH_SECONDS after that, protected pages act at once; later they
first send the person to confirm.

What was typed survives the detour: a protected POST that arrives too late is held in the
session (without the CSRF token and without any field named like a secret) under a one-time
id, and after the confirmation the page comes back with the form filled in from it
(`form_data`); the person presses the button again. The held POST is never replayed on its
own: the confirmation proves who is at the keyboard, not what they meant to send, and a link
carrying someone else's held id (sent by whoever stole the session) then only fills a form the
person sees before anything is done.

A helper without model imports: keys' views and portal's pages and middleware both use it.
"""

import re
import secrets
import time
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.shortcuts import resolve_url

PROVED_AT = "reauth_proved_at"
PENDING = "reauth_pending"
RESUME = "resume"
# Never kept: the CSRF token (a fresh one comes with the page) and anything named like a secret.
# Custom headers carry credentials too (a SIEM's "Authorization: Splunk …").
NOT_KEPT = re.compile(r"csrfmiddlewaretoken|password|secret|token|otp|headers", re.IGNORECASE)
# Held POSTs per session; the oldest goes first (a person holds one at a time in practice).
MAX_PENDING = 5
# A held POST is given back within this many seconds of being held.
PENDING_SECONDS = 3600


def proved_at(request: HttpRequest) -> float | None:
    """When this session's person last proved who they are (seconds since the epoch)."""
    value = request.session.get(PROVED_AT)
    return value if isinstance(value, int | float) else None


def proved_recently(request: HttpRequest) -> bool:
    """True if the signed-in person proved who they are within REAUTH_SECONDS."""
    at = proved_at(request)
    return at is not None and time.time() - at < settings.REAUTH_SECONDS


def mark_proved(request: HttpRequest) -> None:
    """Start a new REAUTH_SECONDS window: the person just proved who they are."""
    request.session[PROVED_AT] = time.time()


def proved_by_log_in(sender, request: HttpRequest | None, user, **kwargs) -> None:
    """user_logged_in receiver: a log-in, on whatever path, is a proof."""
    if request is not None and hasattr(request, "session"):
        mark_proved(request)


def hold(request: HttpRequest) -> str:
    """Keep this POST's fields (but the CSRF token and secrets) under a new one-time id."""
    fields = {
        name: request.POST.getlist(name) for name in request.POST if not NOT_KEPT.search(name)
    }
    pending = dict(request.session.get(PENDING, {}))
    while len(pending) >= MAX_PENDING:
        pending.pop(min(pending, key=lambda held: pending[held]["at"]))
    held = secrets.token_urlsafe(16)
    pending[held] = {"path": request.path, "fields": fields, "at": time.time()}
    request.session[PENDING] = pending
    return held


def take(request: HttpRequest, held: str) -> dict[str, list[str]] | None:
    """The fields held under `held` for this page, forgotten once taken; None if none."""
    pending = dict(request.session.get(PENDING, {}))
    entry = pending.get(held)
    if entry is None or entry["path"] != request.path:
        return None
    del pending[held]
    request.session[PENDING] = pending
    if time.time() - entry["at"] > PENDING_SECONDS:
        return None
    return entry["fields"]


def form_data(request: HttpRequest) -> QueryDict | None:
    """The data to bind this page's form to: the POST, or after a confirmation what had been
    typed before it (held by `hold`, given back once); None for an empty form."""
    if request.method == "POST":
        return request.POST
    held = request.GET.get(RESUME)
    if not held or not proved_recently(request):
        return None
    fields = take(request, held)
    if fields is None:
        return None
    data = QueryDict(mutable=True)
    for name, values in fields.items():
        data.setlist(name, values)
    return data


def confirm_url(next_url: str) -> str:
    return f"{resolve_url(settings.REAUTH_URL)}?{urlencode({'next': next_url})}"


def ask_to_confirm(request: HttpRequest) -> HttpResponse:
    """Send the person to confirm, holding what a POST carried; then back to this page."""
    if request.method == "POST":
        # The page's own query string stays (All keys' filters say which keys a bulk
        # revocation takes); the held id joins it.
        query = request.GET.copy()
        query[RESUME] = hold(request)
        back = f"{request.path}?{query.urlencode()}"
    else:
        back = request.get_full_path()
    if getattr(request, "htmx", False):
        # htmx would put the confirmation page inside a fragment: load it as a whole page.
        response = HttpResponse(status=204)
        response["HX-Redirect"] = confirm_url(back)
        return response
    return HttpResponseRedirect(confirm_url(back))


def confirmation_required(
    view: Callable[..., HttpResponse] | None = None,
    *,
    when: Callable[..., bool] | None = None,
) -> Any:
    """Decorate a protected page: past REAUTH_SECONDS, ask the person to confirm first.

    Put it under login_required (an anonymous person logs in, which is a proof). `when`
    narrows it: `when(request, *args, **kwargs)` True if this request is a protected act
    (editing a key is protected only when it turns self-rotation on).
    """

    def decorator(view_func: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view_func)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if (
                request.user.is_authenticated
                and not proved_recently(request)
                and (when is None or when(request, *args, **kwargs))
            ):
                return ask_to_confirm(request)
            return view_func(request, *args, **kwargs)

        return wrapped

    return decorator(view) if view is not None else decorator
