"""Response headers the portal adds for every signed-in person."""

import re
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers, patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django_htmx.middleware import HtmxDetails

from keys.api.problems import is_api_path
from keys.lib import reauth
from keys.lib.client_ip import client_ip
from portal.user_events import acting


class NoStoreWhenSignedInMiddleware:
    """Signed-in pages show key metadata (names, identifiers, allowlists): never cached.

    A shared computer's browser cache or a caching proxy must not keep them after log-out.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # The API never reads the session (keys.api.problems): asking who is signed in would.
        if not is_api_path(request) and request.user.is_authenticated:
            add_never_cache_headers(response)
            patch_vary_headers(response, ["Cookie"])
        return response


class ActingUserMiddleware:
    """Changes to users made during a request are attributed to its signed-in person and IP."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if is_api_path(request):
            return self.get_response(request)
        with acting(request.user, client_ip(request)):
            return self.get_response(request)


class HtmxLoginRedirectMiddleware:
    """An htmx request from an ended session is sent to the log-in page as a whole page.

    Without this, htmx would put the log-in page inside the fragment it asked for (the IP
    list). `HX-Redirect` makes htmx load the log-in page instead, and `next` brings the
    person back to the page they were on (HX-Current-URL), not to the fragment's URL.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # Set by django-htmx's middleware, before this one (django-stubs' HttpRequest has no htmx).
        htmx: HtmxDetails | None = getattr(request, "htmx", None)
        if response.status_code != 302 or not htmx:
            return response
        login = resolve_url(settings.LOGIN_URL)
        if response.get("Location", "").startswith(login):
            current = urlsplit(htmx.current_url or "")
            back = current.path + (f"?{current.query}" if current.query else "")
            if not url_has_allowed_host_and_scheme(
                htmx.current_url or "", allowed_hosts={request.get_host()}
            ):
                back = "/"
            redirect = HttpResponse(status=204)
            redirect["HX-Redirect"] = f"{login}?{urlencode({'next': back or '/'})}"
            return redirect
        return response


class AdminConfirmationMiddleware:
    """Every change made in the Django admin first asks the person to confirm it's them
    (docs/design.md §10, keys/lib/reauth.py), past REAUTH_SECONDS since they last did.

    In process_view, after CsrfViewMiddleware's: a forged POST is refused before anything of
    it is held. The admin's pages cannot be filled in from a held POST, so after the
    confirmation the person sees what they were sending and sends it again with one button
    (or goes back to the page): nothing is sent without them seeing it.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs):
        match = request.resolver_match
        if match is None or match.namespace != "admin" or not request.user.is_authenticated:
            return None
        if match.url_name in {"login", "logout"}:
            return None
        if request.method not in {"GET", "HEAD", "OPTIONS", "TRACE"}:
            if not reauth.proved_recently(request):
                return reauth.ask_to_confirm(request)
            return None
        if (held := request.GET.get(reauth.RESUME)) and reauth.proved_recently(request):
            fields = reauth.take(request, held)
            if fields is not None:
                return _send_again(request, fields)
        return None


_ADMIN_BOOKKEEPING = re.compile(r"^_|__prefix__|_FORMS$")


def _send_again(request: HttpRequest, fields: dict[str, list[str]]) -> HttpResponse:
    from django.contrib import admin

    sent = [(name, value) for name, values in fields.items() for value in values]
    context = {
        **admin.site.each_context(request),
        "title": "Send your change again",
        "fields": sent,
        # Shown: what the person typed, not the admin's form bookkeeping (sent all the same).
        "shown": [(name, value) for name, value in sent if not _ADMIN_BOOKKEEPING.search(name)],
        "action": request.path,
    }
    return TemplateResponse(request, "admin/send_again.html", context)
