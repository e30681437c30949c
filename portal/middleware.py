"""Response headers the portal adds for every signed-in person."""

from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from django.utils.cache import add_never_cache_headers, patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django_htmx.middleware import HtmxDetails

from keys.api.problems import is_api_path
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
