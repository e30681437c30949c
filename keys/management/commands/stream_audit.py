"""Stream the audit history to its destinations (docs/deploy.md "Streaming the audit history").

Runs until stopped (SIGTERM or Ctrl-C finish the batches in flight, then exit); run it as a
service beside gunicorn, on one app server or several (they never send the same batch at
once). --once delivers what is waiting and exits.
"""

import signal

from django.core.management.base import BaseCommand

from keys.audit.delivery import Sender


class Command(BaseCommand):
    help = "Send audit events to the stream destinations, at least once and in order."

    def add_arguments(self, parser):
        parser.add_argument(
            "--once",
            action="store_true",
            help="Deliver every destination until caught up (or failed once), then exit.",
        )

    def handle(self, *args, once: bool = False, **options) -> None:
        sender = Sender()
        if once:
            sender.run_once()
            return

        def stop(signum, frame):
            sender.stop.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write(f"Streaming the audit history as {sender.owner}; SIGTERM stops.")
        self.stdout.flush()
        sender.run_forever()
