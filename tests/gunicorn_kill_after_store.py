"""gunicorn.conf.py with one fault, for tests/test_usage_faults.py: a worker is killed
(SIGKILL) right after a flush commits, before it marks those counts stored in its journal.

Only while the file that KEYS_TEST_KILL_AFTER_STORE names exists, and once: it goes first.
"""

import os
import runpy
import signal
from pathlib import Path

_config = runpy.run_path(str(Path(__file__).resolve().parent.parent / "gunicorn.conf.py"))
globals().update({name: value for name, value in _config.items() if not name.startswith("__")})


def post_worker_init(worker):
    from keys.lib import journal

    stored = journal.Journal.stored

    def killed_before_marking_stored(self):
        trigger = os.environ["KEYS_TEST_KILL_AFTER_STORE"]
        if os.path.exists(trigger):
            os.unlink(trigger)
            os.kill(os.getpid(), signal.SIGKILL)
        stored(self)

    journal.Journal.stored = killed_before_marking_stored
    _config["post_worker_init"](worker)
