"""The procedure record: an append-only, hash-chained SQLite log of everything (ARCHITECTURE.md section 9).

Why it is built this way:

- The 10 ms tick must never wait for the disk, so :meth:`ProcedureRecord.append` only puts a row on an
  in-memory queue (ordered, about a microsecond) and a writer thread does the JSON encoding, the hashing,
  the SQL and the commits. A queued payload is therefore never changed afterwards: callers hand over a
  fresh dict (or a function of frozen messages that builds one).
- State changes and alarms must survive any crash, so :meth:`ProcedureRecord.append_durable` queues the
  row *and waits* until the writer has committed it; the procedure calls it before a transition
  completes. These are rare (a few per lesion), so the wait never lands on the telemetry path.
- Telemetry is committed at least every 100 ms: the writer commits every 50 ms of wall time, and also as
  soon as the queued telemetry spans 100 ms of the record's own clock, so a run in simulated time
  (faster than real time) keeps the same bound in simulated seconds.
- Every row carries ``hash = sha256(prev_hash | id | mono | wall | kind | payload)``, so editing,
  deleting or reordering a row breaks the chain at that row; ``verify`` names the first broken row. The
  chain starts from a hash of the record's ``meta`` (plan, start time, generator), so that is covered too,
  and :meth:`ProcedureRecord.close` ends it with an ``end`` row that counts the rows before it: rows cut
  from the end (or a truncated WAL) leave a record that is intact as far as it goes but *not closed*, which
  ``verify`` reports as such. A crashed procedure's record is not closed either, rightly: nothing shows
  that it is whole. The chain is not keyed: it shows every change made without recomputing it, not a
  forger who recomputes it from the code (that needs a key kept off the cart, or the final hash written down
  elsewhere: ``rfa run`` prints it at the end, and ``rfa record verify FILE --expect HASH`` checks a record
  against it).
- WAL journal with ``synchronous=FULL``: a reader (``rfa record show``) never blocks the writer, and a
  committed row is on disk, not only in the page cache.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import io
import json
import math
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO

from firmware_bridge.clock import Clock
from firmware_bridge.errors import CartError

SCHEMA_VERSION: Final = 2
"""2: the chain starts from the meta's hash and ends with an ``end`` row; 1: from ``GENESIS_HASH``, no end row."""
GENESIS_HASH: Final = "0" * 64
END_KIND: Final = "end"
COMMIT_INTERVAL_S: Final = 0.05
TELEMETRY_SPAN_S: Final = 0.1
DURABLE_TIMEOUT_S: Final = 5.0
WRITER_STALL_S: Final = DURABLE_TIMEOUT_S
"""A writer that has taken no queued row for this long has failed (it commits every COMMIT_INTERVAL_S)."""
NOT_RECORDED: Final = 0
"""The row id of a row dropped by an abandoned record (ids start at 1)."""

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    mono REAL NOT NULL,
    wall REAL NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_kind ON events(kind);
"""


@functools.cache
def _written_structure() -> frozenset[tuple[str, str, str, str | None]]:
    """The schema objects a record is written with, as SQLite stores them (``sqlite_master``).

    ``verify`` compares a record's own with this, text for text: a change to ``_SCHEMA`` (even its layout) must
    come with a new ``SCHEMA_VERSION`` and the older structure kept for the records written before it."""
    db = sqlite3.connect(":memory:")
    try:
        db.executescript(_SCHEMA)
        return frozenset(db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"))
    finally:
        db.close()


class RecordError(CartError):
    """The record cannot be written or read; the procedure must go to the safe state."""


class RecordDamaged(RecordError):
    """The file is there but cannot be read as a whole procedure record (damaged, tampered, not a record)."""


def row_hash(prev_hash: str, row_id: int, mono: float, wall: float, kind: str, payload: str) -> str:
    """The chain link of one row: any change to it, or to any earlier row, changes this value.

    ``surrogateescape``: a payload tampered into bytes that are not UTF-8 is read back as such (see
    :meth:`RecordReader.verify`) and hashed byte for byte, so it fails its link instead of the reader."""
    text = f"{prev_hash}|{row_id}|{mono!r}|{wall!r}|{kind}|{payload}"
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def genesis_hash(meta: dict[str, str]) -> str:
    """Where the chain starts: a hash of the record's meta, so a changed plan name or start time shows."""
    if meta.get("schema_version") == "1":  # records are kept for years: every schema ever written verifies
        return GENESIS_HASH
    return hashlib.sha256(_canonical(meta).encode("utf-8", "surrogateescape")).hexdigest()


Payload = dict[str, Any] | Callable[[], dict[str, Any]]


def _canonical(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class RecordStats:
    rows_committed: int
    rows_queued: int
    commits: int


class ProcedureRecord:
    """Writes one procedure's record. ``append`` never blocks; ``append_durable`` returns once on disk."""

    def __init__(self, path: Path, clock: Clock, *, wall_clock: Callable[[], float] = time.time,
                 meta: dict[str, str] | None = None) -> None:
        self.path = Path(path)
        self._meta = dict(meta or {})
        self._clock = clock
        self._wall = wall_clock
        self._queue: deque[tuple[int, float, float, str, Payload]] = deque()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        """Waits on the queue and the commits. Every ``with`` takes ``_lock`` directly, never the condition: a
        C-level ``with`` cannot be interrupted between taking the lock and owning it, while ``Condition``'s own
        ``__enter__`` is Python code, in which a signal handler (Ctrl-C: KeyboardInterrupt) could raise after the
        lock was taken and leave it held for ever: every later append, the watchdog's OUTPUT_OFF listener among
        them, would then wait on it."""
        self._queued_since: float | None = None
        """``time.monotonic()`` when the oldest row still queued was queued: how long the writer has taken none."""
        self._next_seq = 1
        self._committed_seq = 0
        self._oldest_telemetry_mono: float | None = None
        self._commits = 0
        self._closing = False
        self._failure: BaseException | None = None
        self._abandoned = False
        self._chain_head = ""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # e.g. a file where the record directory should be
            raise RecordError(f"cannot create the record directory {self.path.parent}: {exc}") from exc
        try:  # created here, exclusively: two runs starting in the same second can never share (or delete) one file
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            raise RecordError(f"refusing to overwrite an existing record: {self.path}") from None
        except OSError as exc:
            raise RecordError(f"cannot create the record {self.path}: {exc}") from exc
        ready = threading.Event()
        self._thread = threading.Thread(target=self._writer, args=(ready,), name="record-writer", daemon=True)
        self._thread.start()
        ready.wait(DURABLE_TIMEOUT_S)
        self._raise_if_failed()

    # -- producer side (the control tick) -----------------------------------------------------------
    def append(self, kind: str, payload: Payload, mono: float | None = None) -> int:
        """Queue a row; returns its sequence number (its row id). Never touches the disk, never encodes.

        The row is queued as given and the writer thread encodes it, in order, so the caller must not change
        ``payload`` afterwards. It may also be a function that builds the row's data (from frozen messages,
        or an ultrasound frame's compression): the writer calls it, so building stays off the 10 ms path.
        """
        if self._dropping():
            return NOT_RECORDED
        t = self._clock.now() if mono is None else mono
        with self._lock:
            self._refuse_if_closed(kind)
            seq = self._next_seq
            self._next_seq += 1
            if not self._queue:
                self._queued_since = time.monotonic()
            self._queue.append((seq, t, self._wall(), kind, payload))
            if kind == "telemetry":
                self._telemetry_queued(t)
            return seq

    def append_rows(self, kind: str, payloads: Sequence[Payload], mono: float) -> int:
        """Queue several rows of one kind from one moment, in order (one telemetry frame's channels).

        As :meth:`append` for each, for one lock and one wall-clock reading: returns the last row's seq."""
        if self._dropping():
            return NOT_RECORDED
        with self._lock:  # the wall clock read under the lock, as in append: row order is wall-time order
            self._refuse_if_closed(kind)
            wall = self._wall()
            first = self._next_seq
            self._next_seq = first + len(payloads)
            if not self._queue:
                self._queued_since = time.monotonic()
            self._queue.extend([(first + i, mono, wall, kind, payload) for i, payload in enumerate(payloads)])
            if kind == "telemetry":
                self._telemetry_queued(mono)
            return self._next_seq - 1

    def _refuse_if_closed(self, kind: str) -> None:
        """After :meth:`close` queued the ``end`` row, a row would land after the end of the chain (and read as
        tampering) or, once the writer has stopped, vanish: refuse it loudly instead (call with the lock held)."""
        if self._closing:
            raise RecordError(f"record {self.path} is closed: a {kind!r} row came after its end")

    def _telemetry_queued(self, mono: float) -> None:
        """Wake the writer once queued telemetry spans ``TELEMETRY_SPAN_S`` (call with the lock held)."""
        if self._oldest_telemetry_mono is None:
            self._oldest_telemetry_mono = mono
        elif mono - self._oldest_telemetry_mono >= TELEMETRY_SPAN_S:
            self._cond.notify_all()

    def append_durable(self, kind: str, payload: Payload, mono: float | None = None) -> int:
        """Queue a row and wait until it (and everything before it) is committed to disk."""
        seq = self.append(kind, payload, mono)
        self.wait_committed(seq)
        return seq

    def wait_committed(self, seq: int, timeout_s: float = DURABLE_TIMEOUT_S) -> None:
        """Return once row ``seq`` (and everything before it) is committed; RecordError after ``timeout_s``."""
        if not self.committed_within(seq, timeout_s):
            raise RecordError(f"record {self.path} did not commit row {seq} within {timeout_s} s")

    def committed_within(self, seq: int, timeout_s: float) -> bool:
        """Wait at most ``timeout_s`` for row ``seq`` to be committed; whether it is. Raises if the writer failed,
        unless the record was :meth:`abandon`-ed: then nothing more will be committed, and it returns True at once.

        For a caller that must do something else while it waits (the control loop keeps ticking: see
        :class:`control.durable.CommitWaiter`)."""
        if self._abandoned:
            return True
        deadline = time.monotonic() + timeout_s
        with self._lock:
            self._cond.notify_all()
            while self._committed_seq < seq and self._failure is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            committed = self._committed_seq >= seq
        return self._dropping() or committed

    def flush(self) -> None:
        """Wait until everything queued so far is committed."""
        with self._lock:
            last = self._next_seq - 1
        self.wait_committed(last)

    def close(self) -> None:
        """Commit what is queued, end the chain with the ``end`` row, and stop the writer; safe to call twice."""
        with self._lock:
            if self._closing:
                return
            if self._failure is None:  # the end row counts every row queued before it: one step, under the lock
                seq = self._next_seq
                self._next_seq += 1
                self._queue.append((seq, self._clock.now(), self._wall(), END_KIND, {"rows": seq - 1}))
            self._closing = True
            self._cond.notify_all()
        self._thread.join(DURABLE_TIMEOUT_S)
        if self._thread.is_alive():  # a daemon: killed at exit, mid-batch, without the end row
            self._fail(RecordError(f"its writer did not finish within {DURABLE_TIMEOUT_S} s: the record is not "
                                   "closed (the disk is not taking rows)"))
        self._raise_if_failed()

    @property
    def chain_head(self) -> str:
        """The hash of the last committed row; once :meth:`close` has returned, the end row's: the record's final
        hash, the one ``rfa record verify`` prints. The chain is not keyed, so whoever edits a record can rebuild it
        whole; written down outside the cart (the patient's file), this hash shows that
        (``rfa record verify FILE --expect HASH``)."""
        with self._lock:
            return self._chain_head

    @property
    def stats(self) -> RecordStats:
        with self._lock:
            return RecordStats(self._committed_seq, len(self._queue), self._commits)

    def abandon(self) -> None:
        """The procedure ends on this record's failure, which it has been told (a RecordError): from now on a row is
        dropped, not raised, so that the end the failure calls for (output off, seen off, the fault) is not
        stopped by the very failure it is ending on. What was committed before is on disk, and the record reads as
        not closed. Does nothing while the record works."""
        with self._lock:
            self._abandoned = self._failure is not None

    @property
    def abandoned(self) -> bool:
        return self._abandoned

    def _dropping(self) -> bool:
        """Whether a row is dropped: the writer failed and the record was abandoned. If it failed and was not
        abandoned, the failure is raised: the first to hear of it must go to the safe state. A writer that has taken
        nothing for ``WRITER_STALL_S`` (hung in an fsync on a dead share or stick) has failed too: it never raises,
        and the rows would pile up in memory, uncommitted, for a whole lesion."""
        since = self._queued_since
        if since is not None and self._failure is None and time.monotonic() - since > WRITER_STALL_S:
            self._fail(RecordError(f"its writer has committed nothing for {time.monotonic() - since:.1f} s "
                                   "(the disk is not taking rows)"))
        if not self._abandoned:
            self._raise_if_failed()
        return self._abandoned

    def _why_not_created(self, exc: BaseException) -> BaseException:
        """The record could not be created (a full disk, a folder not writable): nothing of it is left behind, as
        a file with no rows in it would be listed as a damaged record from then on (the file is this instance's
        own: it was created exclusively); and a folder that is not writable is said so, not as SQLite's "unable to
        open database file"."""
        for leftover in (self.path, self.path.with_name(self.path.name + "-wal"),
                         self.path.with_name(self.path.name + "-shm")):
            with contextlib.suppress(OSError):
                leftover.unlink()
        if not os.access(self.path.parent, os.W_OK):
            return PermissionError(f"the record directory {self.path.parent} is not writable ({exc})")
        return exc

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise RecordError(f"record {self.path} failed: {self._failure}") from self._failure

    # -- the writer thread --------------------------------------------------------------------------
    def _writer(self, ready: threading.Event) -> None:
        meta = {"schema_version": str(SCHEMA_VERSION), "created_wall": repr(self._wall()),
                **{key: str(value) for key, value in self._meta.items()}}  # hashed as stored: TEXT
        db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(self.path, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            db.execute("BEGIN")
            db.executemany("INSERT INTO meta VALUES (?, ?)", list(meta.items()))
            db.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            if db is not None:
                db.close()
            self._fail(self._why_not_created(exc))
            ready.set()
            return
        ready.set()
        try:
            self._write_rows(db, genesis_hash(meta))
        except BaseException as exc:  # whatever it is, the writer must not die in silence: appends would vanish
            self._fail(exc)
        finally:
            db.close()

    def _write_rows(self, db: sqlite3.Connection, genesis: str) -> None:
        prev_hash, row_id = genesis, 0
        while True:
            with self._lock:
                if not self._queue and not self._closing:
                    self._cond.wait(COMMIT_INTERVAL_S)
                batch = list(self._queue)
                self._queue.clear()
                self._oldest_telemetry_mono = None
                self._queued_since = None
                closing = self._closing
            if batch:
                rows = []
                for _seq, queued_mono, queued_wall, kind, queued in batch:
                    mono, wall = float(queued_mono), float(queued_wall)  # hashed as stored: SQLite keeps REALs
                    try:
                        payload = _canonical(queued() if callable(queued) else queued)
                    except Exception as exc:  # a payload that cannot be built or encoded leaves its row, saying why
                        payload = _canonical({"payload_error": f"{type(exc).__name__}: {exc}"})
                    row_id += 1
                    prev_hash = row_hash(prev_hash, row_id, mono, wall, kind, payload)
                    rows.append((row_id, mono, wall, kind, payload, prev_hash))
                db.execute("BEGIN")
                db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", rows)
                db.execute("COMMIT")
                with self._lock:
                    self._committed_seq = batch[-1][0]
                    self._chain_head = prev_hash
                    self._commits += 1
                    self._cond.notify_all()
            if closing and not batch:
                return

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            self._failure = exc
            self._cond.notify_all()


@dataclass(frozen=True)
class RecordRow:
    id: int
    mono: float
    wall: float
    kind: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class VerifyResult:
    intact: bool
    """No row changed, missing or out of order, as far as the record goes."""
    rows: int
    first_broken_id: int | None = None
    reason: str = ""
    closed: bool = False
    """It ends with its ``end`` row, which counts every row before it: nothing is missing from its end."""
    final_hash: str = ""
    """The last link: written down elsewhere (the patient's file), it shows a record later rebuilt whole."""

    @property
    def ok(self) -> bool:
        """Intact and closed: the whole record, as written."""
        return self.intact and self.closed


class RecordReader:
    """Reads a record, read-only; safe while the writer is still appending (WAL).

    A record with no write-ahead log beside it (``<name>-wal``) has no writer: SQLite removes the log when the
    writer closes, and no writer opens an existing record again. Such a record is read as unchangeable
    (SQLite's ``immutable``), which writes nothing: a read-only reader of a WAL database otherwise creates the
    log and its shared-memory index beside the file, so verifying a record changed the folder it was kept in,
    and a record on read-only storage (an archive, a write-protected stick, another user's folder) could not
    be read at all, and was called damaged. With a log beside it (a live procedure, or a writer that died with
    rows in its log) it is read through the log, which needs the folder writable.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise RecordError(f"no record at {self.path}")
        wal = self.path.with_name(self.path.name + "-wal")
        logged = self.logged = wal.exists()
        """Whether a write-ahead log lies beside it: a writer is running, or died before closing it."""
        # As a URI (quoted: a '#' or '?' in the path is no URI syntax), so read-only is kept.
        uri = f"{self.path.resolve().as_uri()}?{'mode=ro' if logged else 'immutable=1'}"
        try:
            self._db = sqlite3.connect(uri, uri=True)
            self._db.execute("SELECT count(*) FROM events").fetchone()
        except sqlite3.Error as exc:
            if logged and not os.access(self.path.parent, os.W_OK):
                raise RecordError(
                    f"{self.path} has a write-ahead log beside it ({wal.name}: its writer is running, or died "
                    f"before closing it), and reading the rows in that log needs {self.path.parent} writable: "
                    "copy the record with its -wal file to a writable folder and read it there"
                ) from exc
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):  # nothing wrong with the record
                raise RecordError(f"{self.path} is locked by another program ({exc}): read it once that has "
                                  "finished") from exc
            raise RecordDamaged(f"{self.path} cannot be read as a procedure record: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def rows(self, kind: str | None = None) -> Iterator[RecordRow]:
        query = "SELECT id, mono, wall, kind, payload FROM events"
        args: tuple[str, ...] = ()
        if kind is not None:
            query += " WHERE kind = ?"
            args = (kind,)
        return self._read(query + " ORDER BY id", args)

    def rows_after(self, row_id: int) -> Iterator[RecordRow]:
        """Rows newer than ``row_id``, in order: what a reader following a live record has not seen yet."""
        return self._read("SELECT id, mono, wall, kind, payload FROM events WHERE id > ? ORDER BY id", (row_id,))

    def _read(self, query: str, args: tuple[object, ...]) -> Iterator[RecordRow]:
        """Rows as the query gives them; a row that cannot be read is :class:`RecordDamaged`, naming where."""
        last = 0
        try:
            for row_id, mono, wall, kind, payload in self._db.execute(query, args):
                if not (isinstance(kind, str) and isinstance(payload, str)):
                    raise ValueError(f"row {row_id} is not stored as text")
                last = row_id
                yield RecordRow(row_id, mono, wall, kind, json.loads(payload))
        except (sqlite3.Error, ValueError) as exc:  # not UTF-8, not JSON, a damaged page
            raise RecordDamaged(f"{self.path}: cannot read the row after row {last} "
                                f"(run `rfa record verify` on it): {type(exc).__name__}: {exc}") from exc

    def count(self, kind: str | None = None) -> int:
        if kind is None:
            (n,) = self._db.execute("SELECT count(*) FROM events").fetchone()
        else:
            (n,) = self._db.execute("SELECT count(*) FROM events WHERE kind = ?", (kind,)).fetchone()
        return int(n)

    def kinds(self) -> list[str]:
        """The kinds of row this record holds, sorted."""
        return [kind for (kind,) in self._db.execute("SELECT DISTINCT kind FROM events ORDER BY kind")]

    def meta(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, value FROM meta"))

    def verify(self) -> VerifyResult:
        """Walk the hash chain from the meta's hash; report the first row whose id, content or link is wrong, a
        row after the ``end`` row, and whether the record is closed (its ``end`` row counts every row before it).

        Text is read as bytes (and hashed so), so a payload tampered into bytes that are not UTF-8 fails its
        own link instead of the reader."""
        expected_id, n, ended = 1, 0, False
        try:
            altered = self._altered_structure()
            if altered:  # the chain cannot speak for rows the readers would not find
                return VerifyResult(False, 0, 1, altered)
            meta = {_text(k): _text(v) for k, v in self._db.execute("SELECT key, value FROM meta")}
            prev_hash = genesis_hash(meta)
            query = ("SELECT id, mono, wall, CAST(kind AS BLOB), CAST(payload AS BLOB), hash, typeof(kind), "
                     "typeof(payload) FROM events ORDER BY id")
            for row_id, mono, wall, kind_bytes, payload_bytes, stored, kind_type, payload_type in self._db.execute(
                query
            ):
                n += 1
                kind = _text(kind_bytes)
                if (kind_type, payload_type) != ("text", "text"):  # the hash reads bytes; the readers' filters do not
                    return VerifyResult(False, n, row_id, f"row {row_id} ({kind}): its kind is stored as {kind_type} "
                                        f"and its payload as {payload_type}, not both as text: readers asking for its "
                                        "kind would not see it")
                if row_id != expected_id:
                    return VerifyResult(False, n, row_id, f"row {expected_id} is missing (next id is {row_id})")
                if ended:
                    return VerifyResult(False, n, row_id, f"row {row_id} ({kind}) comes after the record's end row")
                computed = row_hash(prev_hash, row_id, mono, wall, kind, _text(payload_bytes))
                if computed != stored:
                    where = " (or the record's meta was changed)" if row_id == 1 else ""
                    return VerifyResult(False, n, row_id, f"row {row_id} ({kind}) does not match its hash{where}")
                if kind == END_KIND:
                    end = json.loads(_text(payload_bytes))
                    ended = isinstance(end, dict) and end.get("rows") == row_id - 1
                    if not ended:
                        return VerifyResult(False, n, row_id, f"row {row_id}: the end row's count is wrong")
                prev_hash, expected_id = stored, expected_id + 1
        except (sqlite3.Error, ValueError) as exc:  # a damaged page, or bytes that no writer wrote
            return VerifyResult(False, n, expected_id, f"row {expected_id} cannot be read: {exc}")
        legacy = meta.get("schema_version") == "1"  # written before the end row existed
        reason = "" if ended or legacy else (
            "not closed: no end row, so rows may be missing from its end (the procedure was interrupted, or rows "
            "were removed)")
        return VerifyResult(True, n, None, reason, closed=ended or legacy, final_hash=prev_hash)

    def _altered_structure(self) -> str:
        """Why the database is not built as the cart builds a record, or "": its tables and index as written
        (an index rebuilt to leave out alarms would hide them from every reader, the chain intact), and SQLite's
        own integrity check (an index that disagrees with its table)."""
        found = frozenset(self._db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"))
        if found != _written_structure():
            changed = sorted(name for _type, name, _table, _sql in found ^ _written_structure())
            return f"its structure is not the one the cart writes (changed or added: {', '.join(changed)})"
        problems = [text for (text,) in self._db.execute("PRAGMA integrity_check(5)")]
        return "" if problems == ["ok"] else f"SQLite's integrity check fails: {'; '.join(problems)}"

    def export_json(self, out: TextIO, kind: str | None = None) -> int:
        n = 0
        out.write("[\n")
        for row in self.rows(kind):
            if n:
                out.write(",\n")
            out.write(json.dumps(_strict({"id": row.id, "mono": row.mono, "wall": row.wall, "kind": row.kind,
                                          "payload": row.payload}), sort_keys=True, allow_nan=False))
            n += 1
        out.write("\n]\n")
        return n

    def export_csv(self, out: TextIO, kind: str | None = None) -> int:
        """One CSV row per record row; payload fields become columns (union over the rows exported). A payload
        field named like a row column (an operator row's ``kind``) is ``payload.<name>``, never a second one."""
        rows = list(self.rows(kind))
        keys = sorted({k for r in rows for k in r.payload})
        columns = ("id", "mono", "wall", "kind")
        writer = csv.writer(out)
        writer.writerow([*columns, *(f"payload.{k}" if k in columns else k for k in keys)])
        for r in rows:
            writer.writerow([r.id, r.mono, r.wall, r.kind, *(_cell(r.payload.get(k)) for k in keys)])
        return len(rows)


def _text(value: bytes | str) -> str:
    """Bytes from SQLite as text, byte for byte (see :func:`row_hash`)."""
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def _strict(value: Any) -> Any:
    """``value`` with every NaN or infinity as null: a record may hold them (JSON as Python writes it), strict JSON
    readers of an export do not."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strict(v) for v in value]
    return value


def _cell(value: object) -> object:
    if isinstance(value, dict | list):
        buf = io.StringIO()
        json.dump(value, buf, sort_keys=True)
        return buf.getvalue()
    return "" if value is None else value
