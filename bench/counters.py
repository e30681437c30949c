"""Per-request counters for the benchmark only (bench/settings.py installs this).

Each response carries X-Bench-Queries (database queries made), X-Bench-Cache (calls to the
default cache: each one Redis round trip with CACHE_URL=redis://…) and X-Bench-Argon2 (Argon2
verifications made) for its request. Never installed by portal/settings.py: the product
path counts nothing for the benchmark; this middleware wraps keys.tokens.verify_password
once per process, when Django loads it.
"""

import functools
import threading

from django.core.cache import caches
from django.db import connection

from keys import tokens

_counts = threading.local()


def _counting_argon2(verify):
    @functools.wraps(verify)
    def counted(stored_hash: str, password: str) -> bool:
        _counts.argon2 = getattr(_counts, "argon2", 0) + 1
        return verify(stored_hash, password)

    counted.bench_counted = True
    return counted


# The cache operations the product uses; each is one round trip to Redis.
CACHE_CALLS = ("get", "get_many", "set", "add", "incr", "touch", "delete", "delete_many",
               "count_in_window")  # fmt: skip


def _counting_cache_calls(cache) -> None:
    for name in CACHE_CALLS:
        if (method := getattr(cache, name, None)) is None:
            continue

        @functools.wraps(method)
        def counted(*args, _method=method, **kwargs):
            if getattr(_counts, "in_cache", False):  # e.g. LocMem's get_many calls get
                return _method(*args, **kwargs)
            _counts.cache = getattr(_counts, "cache", 0) + 1
            _counts.in_cache = True
            try:
                return _method(*args, **kwargs)
            finally:
                _counts.in_cache = False

        setattr(cache, name, counted)


class CounterMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        if not getattr(tokens.verify_password, "bench_counted", False):
            tokens.verify_password = _counting_argon2(tokens.verify_password)
            _counting_cache_calls(caches["default"])

    def __call__(self, request):
        queries = 0

        def count(execute, sql, params, many, context):
            nonlocal queries
            queries += 1
            return execute(sql, params, many, context)

        _counts.argon2 = _counts.cache = 0
        with connection.execute_wrapper(count):
            response = self.get_response(request)
        response["X-Bench-Queries"] = str(queries)
        response["X-Bench-Argon2"] = str(_counts.argon2)
        response["X-Bench-Cache"] = str(_counts.cache)
        return response
