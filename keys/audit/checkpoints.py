"""Signed checkpoints of the chain's head {seq, hash, at}, kept outside the database.

Removing the newest events leaves a valid, shorter chain; a checkpoint newer than the newest
event shows that. They are written to the log and to AUDIT_CHECKPOINT_DIR.
"""

import datetime
import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from keys.audit import signing
from keys.audit.hashing import Break, format_at, to_json
from keys.models import AuditHead

GENESIS_HASH = "0" * 64
CHECKPOINT_MARKER = "audit checkpoint "

logger = logging.getLogger("keys.audit")


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    hash: str
    at: str
    signature: str
    source: str = ""  # file:line it was read from

    def payload(self) -> str:
        """What the signature covers."""
        return to_json({"seq": self.seq, "hash": self.hash, "at": self.at})

    def to_line(self) -> str:
        return to_json({"seq": self.seq, "hash": self.hash, "at": self.at, "sig": self.signature})


def sign_checkpoint(seq: int, head_hash: str, at: datetime.datetime | None = None) -> Checkpoint:
    at_text = format_at(at or timezone.now())
    unsigned = Checkpoint(seq, head_hash, at_text, "")
    return Checkpoint(
        seq, head_hash, at_text, signing.signer().sign(signing.CHECKPOINT, unsigned.payload())
    )


def write_checkpoint(seq: int | None = None, head_hash: str | None = None) -> Checkpoint:
    """Sign a checkpoint of the head (the current one by default); log it and file it.

    Raises OSError if AUDIT_CHECKPOINT_DIR cannot be written (the log line is out by then).
    """
    if seq is None or head_hash is None:
        seq, head_hash = count_and_head()
    checkpoint = sign_checkpoint(seq, head_hash)
    _last_checkpoint[0] = time.monotonic()
    line = checkpoint.to_line()
    logger.info("%s%s", CHECKPOINT_MARKER, line)
    if settings.AUDIT_CHECKPOINT_DIR:
        # One file per UTC day, appended to by every process: one short write per line.
        path = Path(settings.AUDIT_CHECKPOINT_DIR) / f"audit-checkpoints-{checkpoint.at[:10]}.jsonl"
        with path.open("a", encoding="utf-8") as file:
            file.write(line + "\n")
    return checkpoint


_last_checkpoint = [-math.inf]  # this process's last checkpoint, time.monotonic()


def checkpoint_due(before: int, after: int) -> bool:
    """Every AUDIT_CHECKPOINT_EVERY_EVENTS events, and on the first append after a quiet spell
    of AUDIT_CHECKPOINT_EVERY_SECONDS (so also on each process's first append)."""
    every = settings.AUDIT_CHECKPOINT_EVERY_EVENTS
    if every > 0 and after // every > before // every:
        return True
    return time.monotonic() - _last_checkpoint[0] >= settings.AUDIT_CHECKPOINT_EVERY_SECONDS


def checkpoint_quietly(seq: int, head_hash: str) -> None:
    # The change the event records is committed already: a full disk must not turn it into
    # an error page. The log says what failed; `audit_checkpoint` writes the next one.
    try:
        write_checkpoint(seq, head_hash)
    except OSError:
        logger.exception("audit checkpoint #%s could not be written to AUDIT_CHECKPOINT_DIR", seq)


def checkpoint_after_migrate(sender, using="default", **kwargs) -> None:
    """post_migrate: seal the history as it stands, in particular events from before signing.

    Events recorded before migration 0007 carry no signature; this first checkpoint is what
    proves them from then on, so it must be kept (docs/deploy.md).
    """
    from django.db import connections

    if "keys_audithead" not in connections[using].introspection.table_names():
        return
    head = AuditHead.objects.using(using).filter(pk=1).first()
    if head is None or head.seq == 0:
        return
    try:
        write_checkpoint(head.seq, head.hash)
    except OSError:
        logger.exception("the audit history could not be sealed: run manage.py audit_checkpoint")


def read_checkpoints(path: str | Path) -> Iterator[Checkpoint | Break]:
    """The checkpoints in a file, or in every *.jsonl file of a directory, in name order.

    A line is a checkpoint if it starts with "{", or holds one after CHECKPOINT_MARKER (so a
    log file can be read as is); other lines are skipped. A malformed checkpoint is a Break.
    """
    path = Path(path)
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    for file in files:
        with file.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                source = f"{file.name}:{number}"
                if line.startswith("{"):
                    text = line
                elif CHECKPOINT_MARKER + "{" in line:
                    text = line.split(CHECKPOINT_MARKER, 1)[1]
                else:
                    continue
                try:
                    data = json.loads(text)
                    yield Checkpoint(
                        int(data["seq"]),
                        str(data["hash"]),
                        str(data["at"]),
                        str(data["sig"]),
                        source,
                    )
                except (ValueError, KeyError, TypeError):
                    yield Break(0, f"checkpoint {source} is not well formed")


def count_and_head() -> tuple[int, str]:
    head = AuditHead.objects.get(pk=1)
    return head.seq, head.hash
