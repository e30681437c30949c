"""Leak-report tokens judged after their report was answered: a queue and one thread per process.

Each reported token that is a password of a stored key costs one Argon2 verification (about
10 ms), so a report of 3,000 wrong passwords would hold its request for half a minute.
keys.api.leaks judges the first few in the request and hands the rest to `later()`; one
thread per process judges them one at a time, in the order received.

The tokens may be live passwords, so they stay in this process's memory: never the database,
the cache or a log, which rules out a queue that other processes share. The cost of that: a
worker killed (SIGKILL, gunicorn's timeout) before its queue is empty drops what is left
(logged when it exits normally with tokens still queued, after waiting up to
EXIT_WAIT_SECONDS). At most MAX_PENDING tokens wait per process; `later()` refuses more, and
the report is then answered 503 so that the scanner sends it again.
"""

import atexit
import logging
import os
import queue
import threading
import time
from collections.abc import Callable

from django.db import connections

logger = logging.getLogger(__name__)

# Three full reports' worth of passwords of stored keys (about 3,000 each fit in 256 KiB).
MAX_PENDING = 10_000
EXIT_WAIT_SECONDS = 10

_queue: "queue.Queue[tuple[Callable, tuple]]" = queue.Queue(maxsize=MAX_PENDING)
_room = threading.Lock()  # makes later()'s check for room and its puts one step
_worker: tuple[int, threading.Thread] | None = None


def later(judge: Callable, jobs: list[tuple]) -> bool:
    """Queue judge(*job) for every job, all or none; False if there is no room for them."""
    with _room:
        if _queue.qsize() + len(jobs) > MAX_PENDING:
            return False
        for job in jobs:
            _queue.put_nowait((judge, job))
    if jobs:
        _ensure_worker()
    return True


def wait(timeout: float) -> bool:
    """Wait until every queued token is judged, at most `timeout` seconds; True if so."""
    deadline = time.monotonic() + timeout
    with _queue.all_tasks_done:
        while _queue.unfinished_tasks:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            _queue.all_tasks_done.wait(left)
    return True


def _ensure_worker() -> None:
    global _worker
    pid = os.getpid()
    with _room:
        if _worker is not None and _worker[0] == pid and _worker[1].is_alive():
            return
        thread = threading.Thread(target=_judge_forever, name="leak-report-judge", daemon=True)
        _worker = (pid, thread)  # a forked child sees another pid and starts its own
        thread.start()


def _judge_forever() -> None:
    while True:
        judge, job = _queue.get()
        try:
            judge(*job)
        except Exception:  # never let the worker die: the next token is judged all the same
            logger.exception("Judging a reported token after its report failed")
        finally:
            if _queue.empty():
                connections.close_all()  # this thread's own; none held while idle
            _queue.task_done()


@atexit.register
def _wait_at_exit() -> None:
    if _worker is None or _worker[0] != os.getpid():
        return
    if not wait(EXIT_WAIT_SECONDS):
        logger.error("Exiting with %d reported tokens not judged yet", _queue.unfinished_tasks)
