"""python manage.py verify_audit [--csv FILE]"""

import sys

from django.core.management.base import BaseCommand, CommandError

from keys import audit, audit_csv


class Command(BaseCommand):
    help = (
        "Re-walk the hash chain of the audit history; print the first broken sequence number "
        "and exit 1 on any edit, deletion, reordering or row past the head. With --csv, "
        "check an exported file instead, without the database."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--csv",
            metavar="FILE",
            help="Verify an export of /audit/export.csv offline ('-' reads standard input).",
        )

    def handle(self, *args, csv=None, **options):
        if csv:
            return self._verify_csv(csv)
        breaks = audit.verify_chain()
        try:
            first = next(breaks, None)
        finally:
            breaks.close()
        if first is not None:
            raise CommandError(f"BROKEN at seq {first.seq}: {first.reason}")
        seq, head_hash = audit.count_and_head()
        # Keep the head hash somewhere else: it also detects a rewritten tail.
        self.stdout.write(f"OK: {seq} events, head {head_hash}")

    def _verify_csv(self, path: str) -> None:
        summary = audit_csv.CsvSummary()
        try:
            stream = sys.stdin if path == "-" else open(path, newline="", encoding="utf-8")  # noqa: SIM115
        except OSError as error:
            raise CommandError(f"Cannot read {path}: {error.strerror}") from None
        with stream:
            first = next(audit_csv.verify_rows(stream, summary), None)
        if first is not None:
            raise CommandError(f"BROKEN at seq {first.seq}: {first.reason}")
        if summary.complete:
            self.stdout.write(f"OK: {summary.rows} events, head {summary.last_hash}")
        else:
            self.stdout.write(
                f"OK: {summary.rows} rows each match their hash; {summary.gaps} gap(s) "
                f"between them (a filtered export), starting at seq {summary.first_seq}"
            )
