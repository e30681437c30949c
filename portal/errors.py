"""An unreachable database is a temporary condition, not a bug: answer 503, never a traceback.

The API gets an RFC 9457 problem document (it never answers 200 without its checks, and
the checks need the database); portal pages get a short HTML page. Both carry Retry-After,
so a load balancer or a client knows to come back. Other errors stay 500s.

Two hooks, because the database can fail in two places: in a view (the middleware's
process_exception sees it before keys.api.problems turns it into a 500), or in a middleware
such as the session's (only the 500 handler sees that one).
"""

import logging
import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

from keys.api.problems import is_api_path, problem

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
DETAIL = "The service is temporarily unavailable; retry shortly."
UNAVAILABLE = OperationalError | InterfaceError


def unavailable(request: HttpRequest) -> HttpResponse:
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if is_api_path(request):
        return problem(503, DETAIL, headers=headers)
    response = HttpResponse(
        render_to_string("503.html", {"detail": DETAIL}), status=503, headers=headers
    )
    response["Cache-Control"] = "no-store"
    return response


class DatabaseUnavailableMiddleware:
    """Turn OperationalError/InterfaceError raised by a view into a 503."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception):
        if not isinstance(exception, UNAVAILABLE):
            return None
        # The path only: the request's headers may hold credentials.
        logger.error("Database unavailable on %s", request.path_info[:200], exc_info=exception)
        return unavailable(request)


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: 503 when the error in flight is an unreachable database, else 500."""
    error = sys.exception()
    while error is not None and not isinstance(error, UNAVAILABLE):
        error = error.__cause__ or error.__context__
    if error is not None:
        return unavailable(request)
    if is_api_path(request):
        return problem(500)
    return HttpResponse(render_to_string("500.html"), status=500)
