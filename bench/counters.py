"""Per-request counters for the benchmark only (bench/settings.py installs this).

Each response carries X-Bench-Queries (database queries made) and X-Bench-Argon2 (Argon2
verifications made) for its request. Never installed by portal/settings.py: the product
path counts nothing for the benchmark; this middleware wraps keys.tokens.verify_password
once per process, when Django loads it.
"""

import functools
import threading

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


class CounterMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        if not getattr(tokens.verify_password, "bench_counted", False):
            tokens.verify_password = _counting_argon2(tokens.verify_password)

    def __call__(self, request):
        queries = 0

        def count(execute, sql, params, many, context):
            nonlocal queries
            queries += 1
            return execute(sql, params, many, context)

        _counts.argon2 = 0
        with connection.execute_wrapper(count):
            response = self.get_response(request)
        response["X-Bench-Queries"] = str(queries)
        response["X-Bench-Argon2"] = str(_counts.argon2)
        return response
