"""python manage.py verify_audit [--csv FILE | --jsonl FILE] [--public-key PEM ...]
[--checkpoints PATH ...]"""

import sys

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from keys.audit import chain, export, jsonl, signing
from keys.audit.checkpoints import Checkpoint
from keys.audit.hashing import Break

# A wrong public key fails every event: show the first ones, count the rest.
MAX_ERRORS_SHOWN = 50


class Command(BaseCommand):
    help = (
        "Re-walk the hash chain of the audit history and check each event's signature and the "
        "signed checkpoints; print the first broken sequence number and exit 1 on any edit, "
        "insertion, deletion, reordering, truncation or row past the head. With --csv, check "
        "an exported file instead, without the database; with --jsonl, what a SIEM received "
        "(the pull API's or a stream's event documents, one a line)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--csv",
            metavar="FILE",
            help="Verify an export of /audit/export.csv offline ('-' reads standard input).",
        )
        parser.add_argument(
            "--jsonl",
            metavar="FILE",
            help="Verify JSON lines of event documents offline, as a receiver stored them "
            "('-' reads standard input): hashes, signatures, links, gaps and duplicates.",
        )
        parser.add_argument(
            "--public-key",
            metavar="PEM",
            action="append",
            default=[],
            help="A file of Ed25519 public key(s) to trust, old and new after a rotation "
            "(repeatable). Default: this installation's key.",
        )
        parser.add_argument(
            "--checkpoints",
            metavar="PATH",
            action="append",
            default=[],
            help="A directory of signed checkpoints (*.jsonl), or one file (a log file works); "
            "repeatable, one per app server. Default: AUDIT_CHECKPOINT_DIR.",
        )

    def handle(self, *args, csv=None, jsonl=None, public_key=(), checkpoints=(), **options):
        if csv and jsonl:
            raise CommandError("Give --csv or --jsonl, not both.")
        proofs = self._proofs(public_key, checkpoints)
        if csv:
            return self._verify_csv(csv, proofs)
        if jsonl:
            return self._verify_jsonl(jsonl, proofs)
        # Each run is shown on the Audit history page ("Chain last verified ...").
        checked = chain.check_chain(proofs, by="manage.py verify_audit")
        if not checked.intact:
            raise CommandError(f"BROKEN at seq {checked.broken_at}: {checked.reason}")
        seq, head_hash = chain.count_and_head()
        # Keep the head hash somewhere else: it also detects a rewritten tail.
        self.stdout.write(f"OK: {seq} events, head {head_hash}")
        self.stdout.write(proofs.summary())

    def _proofs(self, key_files: list[str], checkpoints: list[str]) -> chain.Proofs:
        if key_files:
            keys: signing.PublicKeys = {}
            for path in key_files:
                try:
                    with open(path, encoding="utf-8") as file:
                        keys.update(signing.load_public_keys(file.read()))
                except (OSError, ValueError) as error:
                    raise CommandError(f"--public-key {path}: {error}") from None
        else:
            signer = signing.signer()
            keys = {signer.key_id: signer.public_key}
        found: list[Checkpoint | Break] = []
        for path in checkpoints or filter(None, [settings.AUDIT_CHECKPOINT_DIR]):
            try:
                found.extend(chain.read_checkpoints(path))
            except OSError as error:
                raise CommandError(f"--checkpoints {path}: {error.strerror}") from None
        return chain.Proofs(keys, found)

    def _verify_csv(self, path: str, proofs: chain.Proofs) -> None:
        summary = export.CsvSummary()
        try:
            stream = sys.stdin if path == "-" else open(path, newline="", encoding="utf-8")  # noqa: SIM115
        except OSError as error:
            raise CommandError(f"Cannot read {path}: {error.strerror}") from None
        with stream:
            first = next(export.verify_rows(stream, summary, proofs), None)
        if first is not None:
            raise CommandError(f"BROKEN at seq {first.seq}: {first.reason}")
        if summary.complete:
            self.stdout.write(f"OK: {summary.rows} events, head {summary.last_hash}")
        else:
            self.stdout.write(
                f"OK: {summary.rows} rows each match their hash; {summary.gaps} gap(s) "
                f"between them (a filtered export), starting at seq {summary.first_seq}"
            )
        self.stdout.write(proofs.summary())

    def _verify_jsonl(self, path: str, proofs: chain.Proofs) -> None:
        try:
            # utf-8-sig: a file saved by a Windows tool may begin with a byte order mark.
            stream = sys.stdin if path == "-" else open(path, encoding="utf-8-sig")  # noqa: SIM115
        except OSError as error:
            raise CommandError(f"Cannot read {path}: {error.strerror}") from None
        try:
            with stream:
                report = jsonl.verify_lines(stream, proofs)
        except UnicodeDecodeError:
            raise CommandError(f"{path} is not UTF-8 text.") from None
        for notice in report.notices:
            self.stdout.write(f"Notice: {notice}")
        if not report.intact:
            for problem in report.errors[:MAX_ERRORS_SHOWN]:
                self.stderr.write(f"BROKEN: {problem}")
            if (more := len(report.errors) - MAX_ERRORS_SHOWN) > 0:
                self.stderr.write(f"BROKEN: ... and {more} more")
            raise CommandError(
                f"{len(report.errors)} problem(s) in {report.lines} line(s): see above"
            )
        if report.events:
            self.stdout.write(
                f"OK: {report.events} events, seq {report.first_seq} to {report.last_seq}, "
                f"head {report.last_hash}"
            )
        else:
            self.stdout.write("OK: no events")
        self.stdout.write(proofs.summary())
