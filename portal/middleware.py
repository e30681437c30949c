"""Response headers the portal adds for every signed-in person."""

from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers, patch_vary_headers

from keys.client_ip import client_ip
from keys.problems import is_api_path
from portal.user_events import acting


class NoStoreWhenSignedInMiddleware:
    """Signed-in pages show key metadata (names, identifiers, allowlists): never cached.

    A shared computer's browser cache or a caching proxy must not keep them after log-out.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # The API never reads the session (keys.problems): asking who is signed in would.
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
