"""The offline check of what a receiver stored: JSON lines of event documents.

Each line is one keys.audit.export.event_document() (what the pull API serves and the streams
send): `seq`, `hashed` (exactly the fields the hash covers), `owner`, `prev_hash`, `hash` and
`signature`. `verify_audit --jsonl FILE --public-key PEM` checks, without the database:

- each line is such a document (else: its line number);
- each event's hash re-computes from `prev_hash` and `hashed` (else: edited), and its
  signature verifies with the public keys given (else: forged, or the wrong key);
- the chain: an event right after another names that one's hash (else: a broken link), the
  first event of the history starts from the genesis hash;
- gaps: missing sequence numbers between the first and the last, as ranges;
- duplicates: delivery is at least once, so the same event may arrive twice; an identical
  copy is a notice, a different document under the same seq is an error (an edit or a
  forgery, whichever copy verifies);
- order: receivers may store out of order (a retry, a replay); the events are checked in seq
  order, and the file's order is only mentioned.

It keeps a small record per event (its line, hashes and the digest of its document), not the
documents, so a file of millions of events fits in memory. Anything but notices makes the
check fail. The file may start after seq 1 (a receiver added
later) and end before the portal's head (the portal's own `verify_audit` checks the end).
"""

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from keys.audit.chain import GENESIS_HASH, Proofs, hash_fields

DOCUMENT_FIELDS = {"seq", "hashed", "owner", "prev_hash", "hash", "signature"}
HASHED_FIELDS = {
    "seq",
    "at",
    "actor_id",
    "actor_label",
    "actor_ip",
    "key_id",
    "key_identifier",
    "owner_id",
    "action",
    "details",
}


@dataclass(slots=True)
class Copy:
    """One distinct document of a sequence number, checked as it was read: what the walk in
    seq order needs of it, not the document (a receiver's file may hold millions)."""

    line: int
    digest: str  # of what makes two verified copies the same delivery ("" if it does not verify)
    prev_hash: str
    hash: str
    problem: str | None  # why its hash or signature does not hold, None if they do


@dataclass
class JsonlReport:
    """What the check found: `errors` fail it, `notices` do not."""

    lines: int = 0
    events: int = 0  # distinct sequence numbers
    first_seq: int | None = None
    last_seq: int | None = None
    last_hash: str = ""
    errors: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    gaps: list[tuple[int, int]] = field(default_factory=list)  # missing (first, last) seqs
    duplicates: list[int] = field(default_factory=list)  # seqs delivered more than once, same
    conflicts: list[int] = field(default_factory=list)  # seqs with different documents

    @property
    def intact(self) -> bool:
        return not self.errors


def verify_lines(lines: Iterable[str], proofs: Proofs) -> JsonlReport:
    """Check JSON lines of event documents (in any order); see the module docstring."""
    report = JsonlReport()
    report.errors.extend(f"seq {b.seq}: {b.reason}" for b in proofs.problems)
    by_seq: dict[int, list[Copy]] = {}
    highest = 0
    out_of_order_at = None
    for number, text in enumerate(lines, start=1):
        report.lines = number
        if not text.strip():
            continue
        document = _document(text)
        if isinstance(document, str):
            report.errors.append(f"line {number} is not an event document: {document}")
            continue
        seq = document["seq"]
        if seq < highest and seq not in by_seq and out_of_order_at is None:
            out_of_order_at = number
        highest = max(highest, seq)
        copies = by_seq.setdefault(seq, [])
        hashed = hash_fields(document["prev_hash"], document["hashed"]) == document["hash"]
        # Two copies whose hashes both re-compute from the same prev_hash hold the same hashed
        # fields; the rest of the document is compared as it is. A copy whose hash does not
        # re-compute is never "the same" as another: it is reported whatever it resembles.
        same = (document["prev_hash"], document["hash"], document["signature"], document["owner"])
        digest = hashlib.sha256(repr(same).encode()).hexdigest() if hashed else ""
        if digest and any(copy.digest == digest for copy in copies):
            if seq not in report.duplicates:
                report.duplicates.append(seq)
            continue
        problem = (
            proofs.check(seq, document["hash"], document["signature"])
            if hashed
            else "its content does not match its hash (edited)"
        )
        copies.append(Copy(number, digest, document["prev_hash"], document["hash"], problem))
    if out_of_order_at is not None:
        report.notices.append(
            f"the lines are not in seq order (from line {out_of_order_at}); checked in seq order"
        )
    previous: Copy | None = None
    previous_seq = 0
    for seq in sorted(by_seq):
        copy = _chained_copy(seq, by_seq[seq], report)
        report.events += 1
        if previous is None:
            report.first_seq = seq
            if seq == 1 and copy.prev_hash != GENESIS_HASH:
                report.errors.append("seq 1: does not start from the genesis hash")
        elif seq == previous_seq + 1:
            if copy.prev_hash != previous.hash:
                report.errors.append(f"seq {seq}: does not chain onto seq {previous_seq}")
        else:
            report.gaps.append((previous_seq + 1, seq - 1))
            report.errors.append(f"{_events(previous_seq + 1, seq - 1)} missing")
        previous, previous_seq = copy, seq
        report.last_seq, report.last_hash = seq, copy.hash
    if report.duplicates:
        report.duplicates.sort()
        report.notices.append(
            f"{len(report.duplicates)} event(s) delivered more than once, identical (at least "
            f"once delivery): seq {_ranges(report.duplicates)}"
        )
    if report.first_seq not in (None, 1):
        report.notices.append(f"the file starts at seq {report.first_seq}, not at the first event")
    return report


def _chained_copy(seq: int, copies: list[Copy], report: JsonlReport) -> Copy:
    """The copy of `seq` to chain on (one that verifies, if any), each copy's problem and a
    second, different copy reported."""
    for copy in copies:
        if copy.problem:
            report.errors.append(f"seq {seq} (line {copy.line}): {copy.problem}")
    if len(copies) > 1:
        report.conflicts.append(seq)
        lines = ", ".join(str(copy.line) for copy in copies)
        report.errors.append(f"seq {seq}: different documents on lines {lines}")
    return next((copy for copy in copies if copy.problem is None), copies[0])


def _document(text: str) -> dict | str:
    """The event document on a line, or why it is not one."""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return "not JSON (truncated?)"
    if not isinstance(document, dict):
        return "not a JSON object"
    if missing := sorted(DOCUMENT_FIELDS - set(document)):
        return f"no {', '.join(missing)}"
    seq, hashed = document["seq"], document["hashed"]
    if type(seq) is not int or seq < 1:
        return "seq is not a positive whole number"
    if not isinstance(hashed, dict) or set(hashed) != HASHED_FIELDS:
        return "hashed does not hold exactly the hashed fields"
    if hashed["seq"] != seq:
        return "its seq and hashed.seq differ"
    if not all(isinstance(document[name], str) for name in ("prev_hash", "hash", "signature")):
        return "prev_hash, hash and signature must be strings"
    return document


def _events(first: int, last: int) -> str:
    return f"event {first} is" if first == last else f"events {first}-{last} are"


def _ranges(seqs: list[int]) -> str:
    """1, 2, 3, 7 as "1-3, 7"."""
    parts: list[str] = []
    start = end = seqs[0]
    for seq in seqs[1:]:
        if seq == end + 1:
            end = seq
            continue
        parts.append(str(start) if start == end else f"{start}-{end}")
        start = end = seq
    parts.append(str(start) if start == end else f"{start}-{end}")
    return ", ".join(parts)
