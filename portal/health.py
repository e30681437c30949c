"""Probes for the proxy, the load balancer and the operator (docs/deploy.md).

/healthz: the process answers. /readyz: it can also reach the database and the cache, so it
can serve; 503 otherwise, so a load balancer sends traffic to another app server.
Both are plain JSON, need no log-in, and say nothing about the failure beyond its place.

/readyz also details each audit stream destination (sent, failed, lag, last error: short
transport words such as "connection refused", never a secret). A lagging SIEM does not make
the app server unready: it can still serve; the operator's monitoring alerts on the lag.
"""

import logging

from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from keys.models import StreamDestination

logger = logging.getLogger(__name__)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:
        logger.warning("Readiness: database unreachable", exc_info=True)
        return False


def _cache_ok() -> bool:
    try:
        cache.set("readyz", 1, timeout=10)
        return cache.get("readyz") == 1
    except Exception:
        logger.warning("Readiness: cache unreachable", exc_info=True)
        return False


def _streaming() -> dict[str, dict]:
    """Each stream destination's delivery, by name."""
    now = timezone.now()
    return {
        destination.name: destination.status(now) for destination in StreamDestination.objects.all()
    }


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {
        "database": "ok" if _database_ok() else "unavailable",
        "cache": "ok" if _cache_ok() else "unavailable",
    }
    ready = all(value == "ok" for value in checks.values())
    body: dict = {"status": "ok" if ready else "unavailable", **checks}
    if checks["database"] == "ok":
        try:
            if streaming := _streaming():
                body["streaming"] = streaming
        except Exception:
            logger.warning("Readiness: audit streaming status unreadable", exc_info=True)
    return JsonResponse(body, status=200 if ready else 503)
