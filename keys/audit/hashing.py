"""How an audit event is hashed into the chain: canonical JSON, SHA-256, the genesis hash."""

import datetime
import hashlib
import json
from dataclasses import dataclass

from keys.models import AuditEvent

GENESIS_HASH = "0" * 64


def format_at(at: datetime.datetime) -> str:
    """The one textual form of an event's time: UTC, microseconds (hashed and exported)."""
    return at.astimezone(datetime.UTC).isoformat(timespec="microseconds")


def hashed_fields(event: AuditEvent) -> dict:
    """Every column of an event but the hashes: what its hash covers."""
    return {
        "seq": event.seq,
        "at": format_at(event.at),
        "actor_id": event.actor_id,
        "actor_label": event.actor_label,
        "actor_ip": event.actor_ip,
        "key_id": event.key_id,
        "key_identifier": event.key_identifier,
        "owner_id": event.owner_id,
        "action": event.action,
        "details": event.details,
    }


def to_json(value) -> str:
    """Canonical JSON: sorted keys, no spaces, UTF-8 as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(event: AuditEvent) -> str:
    """The hashed content of an event: every column but the hashes, in a fixed form."""
    return to_json(hashed_fields(event))


def hash_fields(prev_hash: str, fields: dict) -> str:
    """SHA-256(prev_hash ‖ canonical JSON of fields); offline checks call this directly."""
    return hashlib.sha256((prev_hash + to_json(fields)).encode()).hexdigest()


def chain_hash(prev_hash: str, event: AuditEvent) -> str:
    return hash_fields(prev_hash, hashed_fields(event))


@dataclass
class Break:
    seq: int
    reason: str
