"""Per-request counters for the benchmark only (bench/settings.py installs this).

Each response carries X-Bench-Queries (database queries made) and X-Bench-Argon2 (Argon2
verifications made) for its request. Never installed by portal/settings.py.
"""

from django.db import connection

from keys import auth


class CounterMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        queries = 0

        def count(execute, sql, params, many, context):
            nonlocal queries
            queries += 1
            return execute(sql, params, many, context)

        argon2_before = auth.argon2_verifications
        with connection.execute_wrapper(count):
            response = self.get_response(request)
        response["X-Bench-Queries"] = str(queries)
        response["X-Bench-Argon2"] = str(auth.argon2_verifications - argon2_before)
        return response
