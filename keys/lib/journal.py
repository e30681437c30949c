"""Counters that outlive their process: a small memory-mapped file per process.

A process counts into named slots of its own file. The file is memory-mapped, so a count is
a memory write: no system call, no fsync. The pages belong to the kernel's page cache, not to
the process, so a process killed with SIGKILL leaves its counts behind, intact to its last
write; only the machine going down, or the directory being wiped, loses them. The owner holds
an exclusive flock on its file for as long as it lives, and the kernel drops that lock when
the process dies, however it dies: a file whose lock is free is an orphan, and `orphans()`
hands it, locked, to a process that stores what it holds and removes it. The lock, not the
pid in the file's name, tells a live owner from a dead one.

Each slot counts one name (a tuple of JSON scalars): `counted` (every count), `stored` (how
much of it the database holds) and `snapshot` (what the store in progress takes), with the
first and last time counted and a short note. Storing is a three-step protocol that brings
each count to the database exactly once, at whatever moment the process is killed:

1. `snapshot()` sets snapshot = counted in the slots it takes, then writes the snapshot's
   generation G in the header (0 while it writes, so a half-written snapshot is never taken
   for a whole one); every other slot has snapshot = stored.
2. The caller stores those counts and, in the same database transaction, that this journal
   is stored through generation G.
3. `stored()` sets stored = snapshot.

A process killed between 2 and 3 leaves a file whose header says G. Its adopter asks the
database how far the journal is stored and tells `reconcile()`: through G means the snapshot
is in the database (stored = snapshot); anything else means it never got there (stored
stands). Either way counted - stored is exactly what the database lacks.

The caller serialises all use of a journal: one lock around counting and snapshots, and one
store at a time (a snapshot is stored, or given up, before the next is taken).
"""

import contextlib
import fcntl
import json
import logging
import mmap
import os
import secrets
import stat
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

MAGIC = b"KPJRNL01"
HEADER = struct.Struct("<8sQ16s")  # magic, generation of the last snapshot, the journal's id
GENERATION_AT = 8
HEADER_SIZE = 64
# A slot: a state byte (1: in use), then five counters, then the name and the note, each as a
# two-byte length and UTF-8 text (the name JSON).
SLOT_SIZE = 512
IN_USE = 1
COUNT = struct.Struct("<qq")  # counted, last: what a count writes, together
COUNT_AT = 8
ALL = struct.Struct("<qqqqq")  # counted, last, first, stored, snapshot
FIRST_AT, STORED_AT, SNAPSHOT_AT = 24, 32, 40
INT = struct.Struct("<q")
LENGTH = struct.Struct("<H")
NAME_AT, NAME_MAX = 48, 190
NOTE_AT, NOTE_MAX = 240, 270
INITIAL_SLOTS = 64
SUFFIX = ".journal"


@dataclass
class Slot:
    """One name's counters, as this process last wrote them to the file."""

    index: int
    name: tuple
    counted: int = 0
    last: int = 0
    first: int = 0
    stored: int = 0
    snapshot: int = 0
    note: str = ""
    offset: int = field(init=False)

    def __post_init__(self) -> None:
        self.offset = HEADER_SIZE + self.index * SLOT_SIZE


@dataclass(frozen=True)
class Taken:
    """What a snapshot takes from one slot: the counts not stored yet, and when."""

    name: tuple
    count: int
    first: int
    last: int
    note: str


class Journal:
    """Named counters in a memory map: a file this process owns, or plain memory."""

    def __init__(self, mm: mmap.mmap, *, fd=None, path=None, journal_id=None, generation=0):
        self._mm = mm
        self._fd = fd
        self.path: Path | None = path
        self.id: str | None = journal_id  # None: in memory, nothing to adopt
        self.pid = os.getpid()
        self._generation = generation
        self._capacity = (len(mm) - HEADER_SIZE) // SLOT_SIZE
        self._slots: dict[tuple, Slot] = {}
        self._free: list[int] = []
        self._next = 0  # slots from here on were never used
        self._taken: list[Slot] = []  # in the last snapshot, not stored yet

    @classmethod
    def in_memory(cls) -> "Journal":
        """A journal that dies with its process (no directory to keep it in)."""
        mm = mmap.mmap(-1, HEADER_SIZE + INITIAL_SLOTS * SLOT_SIZE)
        HEADER.pack_into(mm, 0, MAGIC, 0, bytes(16))
        return cls(mm)

    @classmethod
    def create(cls, directory: Path, prefix: str) -> "Journal":
        """Make this process's journal file in `directory`, locked for its lifetime."""
        _check_directory(directory)
        raw_id = secrets.token_bytes(16)
        path = directory / f"{prefix}-{os.getpid()}-{raw_id.hex()}{SUFFIX}"
        draft = path.with_name(path.name + ".new")
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = os.open(draft, flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            size = HEADER_SIZE + INITIAL_SLOTS * SLOT_SIZE
            os.ftruncate(fd, size)
            mm = mmap.mmap(fd, size)
            HEADER.pack_into(mm, 0, MAGIC, 0, raw_id)
            # Complete and locked before it has a name an adopter looks for.
            os.rename(draft, path)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(draft)
            raise
        return cls(mm, fd=fd, path=path, journal_id=raw_id.hex())

    # --- counting -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, name: tuple) -> bool:
        return name in self._slots

    def count(self, name: tuple, at: int, note: str | None = None) -> None:
        """Count `name` once at time `at` (an integer, e.g. microseconds); note it, if given."""
        slot = self._slots.get(name)
        if slot is None:
            slot = self._allocate(name, at)
        slot.counted += 1
        slot.last = at
        COUNT.pack_into(self._mm, slot.offset + COUNT_AT, slot.counted, at)
        if note is not None and note != slot.note:
            self._write_note(slot, note)

    def pending(self, name: tuple) -> int:
        """How many counts of `name` are not stored yet."""
        slot = self._slots.get(name)
        return 0 if slot is None else slot.counted - slot.stored

    def names(self) -> list[tuple]:
        return list(self._slots)

    def _allocate(self, name: tuple, at: int) -> Slot:
        encoded = json.dumps(name, separators=(",", ":")).encode()
        if len(encoded) > NAME_MAX:
            raise ValueError(f"A journal name takes at most {NAME_MAX} bytes: {name!r}")
        if self._free:
            index = self._free.pop()
        else:
            if self._next == self._capacity:
                self._grow()
            index, self._next = self._next, self._next + 1
        slot = Slot(index, name, last=at, first=at)
        # Everything first, the state byte last: a slot half written when the process dies
        # is not in use, and it had counted nothing yet.
        ALL.pack_into(self._mm, slot.offset + COUNT_AT, 0, at, at, 0, 0)
        LENGTH.pack_into(self._mm, slot.offset + NAME_AT, len(encoded))
        self._mm[slot.offset + NAME_AT + 2 : slot.offset + NAME_AT + 2 + len(encoded)] = encoded
        LENGTH.pack_into(self._mm, slot.offset + NOTE_AT, 0)
        self._mm[slot.offset] = IN_USE
        self._slots[name] = slot
        return slot

    def _write_note(self, slot: Slot, note: str) -> None:
        encoded = note.encode()[:NOTE_MAX]
        self._mm[slot.offset + NOTE_AT + 2 : slot.offset + NOTE_AT + 2 + len(encoded)] = encoded
        LENGTH.pack_into(self._mm, slot.offset + NOTE_AT, len(encoded))
        slot.note = note

    def _grow(self) -> None:
        size = HEADER_SIZE + 2 * self._capacity * SLOT_SIZE
        if self._fd is None:
            bigger = mmap.mmap(-1, size)
            bigger[: len(self._mm)] = self._mm
        else:
            os.ftruncate(self._fd, size)
            bigger = mmap.mmap(self._fd, size)
        self._mm.close()
        self._mm = bigger
        self._capacity *= 2

    # --- storing --------------------------------------------------------------------------

    def snapshot(self, take: Callable[[tuple], bool]) -> tuple[int, list[Taken]]:
        """Take the counts not stored yet of each name `take` accepts; return the generation.

        Store them with "stored through this generation" in one transaction, then call
        `stored()`. Nothing taken: (0, []), and nothing changes.
        """
        taken = [s for s in self._slots.values() if s.counted > s.stored and take(s.name)]
        if not taken:
            return 0, []
        chosen = {slot.index for slot in taken}
        self._write_generation(0)
        for slot in self._taken:  # of a snapshot that never reached the database
            if slot.index not in chosen and slot.snapshot != slot.stored:
                self._write(slot, SNAPSHOT_AT, slot.stored)
                slot.snapshot = slot.stored
        for slot in taken:
            self._write(slot, SNAPSHOT_AT, slot.counted)
            slot.snapshot = slot.counted
        self._generation += 1
        self._write_generation(self._generation)
        self._taken = taken
        return self._generation, [
            Taken(s.name, s.snapshot - s.stored, s.first, s.last, s.note) for s in taken
        ]

    def stored(self) -> None:
        """The last snapshot is in the database, with its generation."""
        for slot in self._taken:
            self._write(slot, STORED_AT, slot.snapshot)
            slot.stored = slot.snapshot
        self._taken = []

    def release_idle(self, now: int, idle: int) -> None:
        """Let go of names all stored and not counted within `idle` of `now`."""
        for name, slot in list(self._slots.items()):
            if slot.counted == slot.stored == slot.snapshot and not 0 <= now - slot.last < idle:
                self._mm[slot.offset] = 0
                del self._slots[name]
                self._free.append(slot.index)

    def reconcile(self, stored_through: int | None) -> None:
        """The database says it holds this journal up to generation `stored_through`.

        For an adopted journal, and for the owner after a store whose outcome it does not
        know (the connection broke during the commit).
        """
        if self._generation and self._generation == stored_through:
            for slot in self._slots.values():  # idempotent: a second adopter does the same
                self._write(slot, STORED_AT, slot.snapshot)
                slot.stored = slot.snapshot
            self._taken = []
        self._generation = max(self._generation, stored_through or 0)

    def close(self, *, remove: bool) -> None:
        """Unmap; with remove, delete the file first (while it is still locked)."""
        if remove and self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        self._mm.close()
        if self._fd is not None:
            os.close(self._fd)  # drops the lock

    def _write(self, slot: Slot, at: int, value: int) -> None:
        INT.pack_into(self._mm, slot.offset + at, value)

    def _write_generation(self, generation: int) -> None:
        struct.pack_into("<Q", self._mm, GENERATION_AT, generation)

    def _load(self) -> None:
        """Read the slots of an adopted file."""
        mm = self._mm
        for index in range(self._capacity):
            offset = HEADER_SIZE + index * SLOT_SIZE
            if mm[offset] != IN_USE:
                self._free.append(index)
                continue
            counted, last, first, stored, snapshot = ALL.unpack_from(mm, offset + COUNT_AT)
            (name_length,) = LENGTH.unpack_from(mm, offset + NAME_AT)
            (note_length,) = LENGTH.unpack_from(mm, offset + NOTE_AT)
            try:
                start = offset + NAME_AT + 2
                name = tuple(json.loads(mm[start : start + min(name_length, NAME_MAX)]))
            except (ValueError, TypeError):
                logger.error("Journal %s: slot %d has no readable name; skipped", self.path, index)
                continue
            start = offset + NOTE_AT + 2
            note = mm[start : start + min(note_length, NOTE_MAX)].decode(errors="replace")
            self._slots[name] = Slot(index, name, counted, last, first, stored, snapshot, note)
        self._next = self._capacity


def orphans(directory: Path, prefix: str) -> Iterator[Journal]:
    """The journals in `directory` named with `prefix` whose owner is gone, each locked.

    Store what one holds and close it with remove=True; close one that cannot be stored now
    with remove=False, for a later try.
    """
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except FileNotFoundError:
        return
    for entry in entries:
        if not entry.name.startswith(prefix + "-"):
            continue  # another deployment's
        if entry.name.endswith(SUFFIX + ".new"):
            _remove_abandoned(Path(entry.path))
        elif entry.name.endswith(SUFFIX):
            journal = _open_orphan(Path(entry.path))
            if journal is not None:
                yield journal


def _lock_if_dead(path: Path) -> int | None:
    """An open, locked descriptor of the file, if no living process holds it; else None."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None  # gone meanwhile
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None  # its owner lives (or another process adopts it right now)
    info = os.fstat(fd)
    if info.st_nlink == 0 or not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
        os.close(fd)  # removed by whoever held it before us, or not ours to read
        return None
    return fd


def _remove_abandoned(path: Path) -> None:
    """A journal whose owner died while making it: nothing was counted there yet."""
    fd = _lock_if_dead(path)
    if fd is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def _open_orphan(path: Path) -> Journal | None:
    fd = _lock_if_dead(path)
    if fd is None:
        return None
    size = os.fstat(fd).st_size
    mm = None
    if size >= HEADER_SIZE + SLOT_SIZE and (size - HEADER_SIZE) % SLOT_SIZE == 0:
        mm = mmap.mmap(fd, size)
        magic, generation, raw_id = HEADER.unpack_from(mm, 0)
        if magic == MAGIC:
            journal = Journal(mm, fd=fd, path=path, journal_id=raw_id.hex(), generation=generation)
            journal._load()
            return journal
        mm.close()
    # Not a journal this code wrote: set it aside, once, for a person to look at.
    logger.error("%s is not a readable key use journal; renamed to .broken, not stored", path)
    with contextlib.suppress(OSError):
        os.rename(path, path.with_name(path.name + ".broken"))
    os.close(fd)
    return None


def _check_directory(directory: Path) -> None:
    """Make the directory if needed; refuse one that someone else could plant journals in."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(directory)
    if (
        not stat.S_ISDIR(info.st_mode)
        or info.st_uid != os.geteuid()
        or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    ):
        raise PermissionError(
            f"{directory} must be a directory of this user that no other user can write to"
        )
