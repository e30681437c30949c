"""The CSV form of the audit history: safe to open in a spreadsheet, verifiable offline.

Each row holds every hashed column of its event plus prev_hash, hash and the hash's Ed25519
signature, so anyone with the public key can re-compute SHA-256(prev_hash ‖ canonical JSON)
and check the signature without the database (`verify_audit --csv FILE --public-key PEM`).

Spreadsheets run a cell that begins with = + - @ (or tab, carriage return) as a formula, so
such cells get a leading apostrophe. A cell that already begins with an apostrophe gets one
too, which makes the escape reversible: reading strips exactly one leading apostrophe.
"""

import csv
import heapq
import json
from collections.abc import Iterable, Iterator

from keys.audit.chain import (
    GENESIS_HASH,
    Break,
    Proofs,
    format_at,
    hash_fields,
    hashed_fields,
    to_json,
)
from keys.lib.csv_safety import Echo, neutralise, restore
from keys.models import AuditEvent

COLUMNS = [
    "seq",
    "at_utc",
    "action",
    "actor_label",
    "actor_ip",
    "key_identifier",
    "owner",
    "details",
    "actor_id",
    "key_id",
    "owner_id",
    "prev_hash",
    "hash",
    "signature",
]
# Exports made before the header said UTC name that column `at`; its values are the same.
OLDER_COLUMNS = ["at" if name == "at_utc" else name for name in COLUMNS]


def _text(value) -> str:
    return "" if value is None else str(value)


def event_row(event: AuditEvent) -> list[str]:
    """One CSV row; `event.owner` should be select_related."""
    row = [
        str(event.seq),
        format_at(event.at),
        event.action,
        event.actor_label,
        _text(event.actor_ip),
        event.key_identifier,
        event.owner.get_username() if event.owner else "",
        to_json(event.details),
        _text(event.actor_id),
        _text(event.key_id),
        _text(event.owner_id),
        event.prev_hash,
        event.hash,
        event.signature,
    ]
    return [neutralise(cell) for cell in row]


def event_document(event: AuditEvent) -> dict:
    """One event as the JSON object streamed to SIEMs and served by the pull API.

    Its `hashed` fields are exactly what the hash covers (hashing.hashed_fields), so a receiver
    re-computes SHA-256(prev_hash ‖ canonical JSON of `hashed`) and checks `signature` offline;
    `owner` (the user name) is a convenience outside the hash. `event.owner` should be
    select_related.
    """
    return {
        "seq": event.seq,
        "hashed": hashed_fields(event),
        "owner": event.owner.get_username() if event.owner else "",
        "prev_hash": event.prev_hash,
        "hash": event.hash,
        "signature": event.signature,
    }


EXPORT_CHUNK = 2000


def _ascending(events) -> Iterator[AuditEvent]:
    """Every event of one queryset, oldest first, fetched in keyset chunks."""
    last = 0
    while True:
        chunk = list(
            events.filter(seq__gt=last).select_related("owner").order_by("seq")[:EXPORT_CHUNK]
        )
        yield from chunk
        if len(chunk) < EXPORT_CHUNK:
            return
        last = chunk[-1].seq


def _seq(event: AuditEvent) -> int:
    return event.seq


def stream(events, *, by_or_about=None) -> Iterator[str]:
    """The CSV lines of `events` (an AuditEvent queryset), header first, oldest event first.

    Bound `events` with in_chain() first: the export is then one cut while events are appended.
    """
    writer = csv.writer(Echo())
    yield writer.writerow(COLUMNS)
    previous = None
    walks = events.walks(by_or_about)
    for event in heapq.merge(*(_ascending(walk) for walk in walks), key=_seq):
        if event.seq != previous:  # an event both by and about the user comes twice
            yield writer.writerow(event_row(event))
        previous = event.seq


def _optional_int(cell: str) -> int | None:
    return int(cell) if cell else None


def hashed_fields_from_row(row: dict[str, str]) -> dict:
    """The fields keys.audit.hashing.hashed_fields() gave, rebuilt from a (restored) CSV row."""
    return {
        "seq": int(row["seq"]),
        "at": row["at_utc"],
        "actor_id": _optional_int(row["actor_id"]),
        "actor_label": row["actor_label"],
        "actor_ip": row["actor_ip"] or None,
        "key_id": _optional_int(row["key_id"]),
        "key_identifier": row["key_identifier"],
        "owner_id": _optional_int(row["owner_id"]),
        "action": row["action"],
        "details": json.loads(row["details"]),
    }


class CsvSummary:
    rows = 0
    gaps = 0
    first_seq: int | None = None
    last_hash: str = ""

    @property
    def complete(self) -> bool:
        """The export starts at the genesis event and has no gap (an unfiltered export)."""
        return self.rows > 0 and self.first_seq == 1 and self.gaps == 0


def verify_rows(lines: Iterable[str], summary: CsvSummary, proofs: Proofs) -> Iterator[Break]:
    """Check an exported CSV (rows in ascending seq): each row's hash, signature and link.

    A filtered export has gaps, and an export ends where the history stood when it was made,
    so a checkpoint past its last row proves nothing missing here; the ones inside are checked.
    """
    yield from proofs.problems
    reader = csv.DictReader(lines)
    if reader.fieldnames not in (COLUMNS, OLDER_COLUMNS):
        yield Break(0, f"the columns are not {', '.join(COLUMNS)}")
        return
    previous: dict[str, str] | None = None
    for raw in reader:
        row = {("at_utc" if name == "at" else name): restore(cell) for name, cell in raw.items()}
        try:
            fields = hashed_fields_from_row(row)
        except (ValueError, TypeError):
            yield Break(summary.rows + 1, f"row {reader.line_num} is not well formed")
            return
        seq = fields["seq"]
        summary.rows += 1
        if summary.first_seq is None:
            summary.first_seq = seq
        if previous is None:
            if seq == 1 and row["prev_hash"] != GENESIS_HASH:
                yield Break(seq, "the first event does not start from the genesis hash")
        elif seq <= int(previous["seq"]):
            yield Break(seq, "rows are not in ascending sequence order")
        elif seq == int(previous["seq"]) + 1:
            if row["prev_hash"] != previous["hash"]:
                yield Break(seq, "does not chain onto the previous event")
        else:
            summary.gaps += 1
        if hash_fields(row["prev_hash"], fields) != row["hash"]:
            yield Break(seq, "its content does not match its hash")
        elif reason := proofs.check(seq, row["hash"], row["signature"]):
            yield Break(seq, reason)
        previous = row
        summary.last_hash = row["hash"]
