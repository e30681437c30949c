"""RFC 9457 problem documents for the protected API, and the middleware that makes every
answer under /api/ one: never an HTML page, never a traceback.
"""

import json
import logging
from http import HTTPStatus

from django.core.exceptions import (
    BadRequest,
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
)
from django.http import Http404, HttpRequest, HttpResponse

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"
# Machine paths: answered with problem documents, never a page (the API, the gateway check).
MACHINE_PREFIXES = (API_PREFIX, "/gateway/")
CONTENT_TYPE = "application/problem+json"
# Headers a replaced error response keeps: they tell the client what to do next.
KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


def problem(
    status: int, detail: str = "", *, headers: dict[str, str] | None = None
) -> HttpResponse:
    """An application/problem+json response; `detail` must never contain client input."""
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status}
    if detail:
        body["detail"] = detail
    response = HttpResponse(json.dumps(body).encode(), status=status, content_type=CONTENT_TYPE)
    response["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def is_api_path(request: HttpRequest) -> bool:
    return request.path_info.startswith(MACHINE_PREFIXES)


class ApiProblemMiddleware:
    """Under /api/: ignore cookies, and turn every error (404, 405, 500, …) into a problem.

    It sits before SessionMiddleware, so a portal session cookie is never even read for the
    API: the session cannot authenticate an API call, CSRF has no cookie to check, and API
    traffic never renews or saves a session.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not is_api_path(request):
            return self.get_response(request)
        request.META.pop("HTTP_COOKIE", None)
        response = self.get_response(request)
        if response.status_code >= 400 and response.get("Content-Type") != CONTENT_TYPE:
            replacement = problem(response.status_code)
            for name in KEPT_HEADERS:
                if name in response:
                    replacement[name] = response[name]
            replacement["Content-Length"] = str(len(replacement.content))
            response = replacement
        return response

    def process_exception(self, request: HttpRequest, exception: Exception):
        if not is_api_path(request):
            return None
        if isinstance(exception, Http404):
            return problem(404)
        if isinstance(exception, PermissionDenied):
            return problem(403)
        if isinstance(exception, RequestDataTooBig):
            return problem(413)
        if isinstance(exception, BadRequest | SuspiciousOperation):
            return problem(400)
        # The message names the path only: never the headers, which hold credentials.
        logger.exception("Unhandled error on API path %s", request.path_info[:200])
        return problem(500)
