"""Settings for bench/api_auth.py: the production settings plus per-request counters."""

from portal.settings import *  # noqa: F403

# Outermost, so it counts every query of the request, whichever layer makes it.
MIDDLEWARE = ["bench.counters.CounterMiddleware", *MIDDLEWARE]  # noqa: F405
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
