"""gunicorn settings for `make serve` and the systemd unit in docs/deploy.md.

Everything comes from the environment: BIND (default 127.0.0.1:8000), WORKERS (default
2 x cores + 1, at most 8), GUNICORN_TIMEOUT. The access log leaves out query strings: API
credentials are refused there, but a client may still send them, and they must not be
written down.
"""

import os

from gunicorn.glogging import Logger

bind = os.environ.get("BIND", "127.0.0.1:8000").split(",")
workers = int(os.environ.get("WORKERS") or min(2 * (os.cpu_count() or 1) + 1, 8))
# sync, chosen from `make bench-flood` (docs/performance.md, "Floods and slow clients"; 2 cores,
# sync 5 workers against gthread 2 x 8, 200 flooding connections). Under the flood that costs the
# server most, wrong passwords from many addresses, a valid caller's p95 was about 0.6 s with sync
# workers against 1.4 s with gthread (Argon2's CPU is the bottleneck either way, and more requests
# in flight only lengthen the wait). gthread did better only on cheap refusals (bad checksums,
# directly: p95 0.17-0.19 s against 0.23-0.28 s). Slow clients (slowloris) stopped both classes
# alike: nginx in front, which reads whole requests before passing them on, is what protects,
# whatever the worker class (docs/deploy.md). sync also keeps one database connection per process
# and no thread-safety question in the request path.
worker_class = "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
# Recycle workers now and then so a slow leak can never take a server down.
max_requests = 5000
max_requests_jitter = 500
accesslog = "-"
errorlog = "-"
# %(U)s: the path without the query string. No %(u)s: the log has no credentials at all.
access_log_format = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s"'


class EscapingLogger(Logger):
    """Access log fields with control characters escaped.

    gunicorn decodes the path: a request for /x%0A1.2.3.4 - "GET /admin/" 200 would
    otherwise write a second, forged line into the log.
    """

    def atoms(self, resp, req, environ, request_time):
        return {
            name: value.encode("unicode_escape").decode("ascii").replace('"', "\\x22")
            if isinstance(value, str)
            else value
            for name, value in super().atoms(resp, req, environ, request_time).items()
        }


logger_class = EscapingLogger
# No gunicornc control socket: nothing uses it, and several instances on one host (or a
# read-only home under systemd) would fight over its default path in $HOME.
control_socket_disable = True


def post_worker_init(worker):
    """Start the key use flusher, which first stores what a killed worker left (keys.api.usage)."""
    from keys.api import usage

    usage.start()


def worker_exit(server, worker):
    """Store what this worker counted, then remove its journal (keys.api.usage)."""
    from keys.api import usage

    usage.close()
