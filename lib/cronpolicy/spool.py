"""Run records waiting for the database.

When a run's record cannot be written (the database is down at the start,
or lost before the end), it goes to a file in this host's spool directory
instead, written atomically, with the run's real times: the database clock
as the last successful read gave it, carried forward by a clock that no
step of the host's wall clock moves (Gate.database_time; the host's own
clock only when no read gave one).  The next run on the host, or
`cronpolicy flush`, writes the entries and removes them.  A whole run carries the key the host chose for it before
writing anything (``script_run.spool_id`` is unique), so it makes one row,
even with its own start had that reached the database late; and a late
finish only completes a run that is still open, so a flush interrupted
half-way can simply be repeated: nothing is recorded twice.

A Spool provides IRunRecorder: a start it is given is held in memory and
written whole, with its end, by ``record_finish``.
"""

import datetime
import os

from cronpolicy.rows import RunEnd, RunHandle, RunRecord, from_mapping, to_mapping
from cronpolicy.shapes import shape

FORMAT = 2

#: The most a spool entry may hold (characters): a run's record is some
#: hundred bytes, its texts at most what the database took; a larger file
#: (a log copied here by mistake) is no entry, set aside unread.
ENTRY_LIMIT = 16 << 20

#: One spooled record: a whole run (``record``, with its key ``spool_id``), or the
#: ``end`` of the recorded run ``run_id``.
SpoolEntry = shape("SpoolEntry", "record run_id end")


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


class Spool:
    """IRunRecorder: records kept in ``directory`` until the database takes them."""

    def __init__(self, directory, clock=_now):
        self.directory = directory
        self.clock = clock
        #: [(path in rejected/, why)] of the last flush.
        self.rejected = []
        #: [(path, why)]: the files the last look could not read (no
        #: permission, an I/O error): they stay, and are not called damaged.
        self.unread = []

    # IRunRecorder --------------------------------------------------------------

    def record_skip(self, record):
        now = self.clock()
        self._write({"kind": "run", "record": record._replace(
            status="skipped", started_at=now, finished_at=now)})
        return RunHandle(None, record)

    def record_start(self, record):
        return RunHandle(None, record._replace(started_at=self.clock()))

    def record_finish(self, run, end):
        end = end._replace(finished_at=self.clock())
        if run.id is not None:
            self._write({"kind": "finish", "run_id": run.id, "end": end})
        else:
            started_at = run.record.started_at or end.finished_at
            self._write({"kind": "run", "record": run.record._replace(
                started_at=started_at, **end._asdict())})

    # The files ---------------------------------------------------------------------

    def keep_refused(self, why, record=None, run=None, end=None):
        """Keep a record the database refused for its data (``why``: its
        one-line refusal) in ``rejected/``, where no flush reads it, for
        someone to look at; the path of its file.  ``record``: a skip or a
        whole run; ``run`` (a RunHandle with an id) and ``end``: the end of
        a recorded run."""
        if record is not None:
            entry = {"kind": "run", "record": record}
        else:
            entry = {"kind": "finish", "run_id": run.id,
                     "end": end._replace(finished_at=end.finished_at or self.clock())}
        entry["refused"] = why
        return self._write(entry, self._rejected_directory())

    def _write(self, entry, directory=None):
        from cronpolicy.safety import checked_directory, write_atomically
        if directory is None:
            checked_directory(self.directory, "spool directory", 0o700)
            directory = self.directory
        file_id = os.urandom(16).hex()
        data = {"format": FORMAT, "kind": entry["kind"], "run_id": entry.get("run_id")}
        if "refused" in entry:
            data["refused"] = entry["refused"]
        if "record" in entry:
            record = entry["record"]
            data["record"] = to_mapping(record._replace(spool_id=record.spool_id or file_id))
        if "end" in entry:
            data["end"] = to_mapping(entry["end"])
        # Sortable by time of writing, so entries are flushed in order.
        import time
        path = os.path.join(directory, "%020d-%s.json" % (time.time_ns(), file_id))
        import json     # only when a record is spooled
        write_atomically(path, lambda handle: json.dump(data, handle), durable=True)
        return path

    def _names(self):
        try:
            return sorted(name for name in os.listdir(self.directory) if name.endswith(".json"))
        except FileNotFoundError:
            return []
        except OSError as error:        # not a directory, no permission
            from cronpolicy.errors import ConfigError
            raise ConfigError("cannot read the spool directory %s: %s"
                              % (self.directory, error.strerror)) from None

    def __len__(self):
        return len(self._names())

    def entries(self):
        """[(path, SpoolEntry or None)], oldest first; None for a file that is
        not a spool entry (damaged, of an unknown shape, or no plain file:
        a FIFO would block the flush)."""
        from cronpolicy.errors import NotAPlainFile
        from cronpolicy.safety import open_plain_file
        found = []
        self.unread = []
        for name in self._names():
            path = os.path.join(self.directory, name)
            try:
                with open(open_plain_file(path), encoding="utf-8") as handle:
                    text = handle.read(ENTRY_LIMIT + 1)
                if len(text) > ENTRY_LIMIT:
                    raise ValueError("larger than any spool entry")
                import json
                found.append((path, parse_entry(json.loads(text))))
            except FileNotFoundError:
                continue    # another flush took it
            except OSError as error:
                if isinstance(error, NotAPlainFile):
                    found.append((path, None))
                else:       # not damaged: unreadable for now (a file root copied here)
                    self.unread.append((path, error.strerror))
            except (ValueError, KeyError, TypeError, AttributeError, OverflowError,
                    RecursionError):    # (JSON nested deeper than Python recurses)
                found.append((path, None))
        return found

    def flush(self, store, limit=None, timeout=None):
        """Write pending entries through ``store``; return how many were written
        (at most ``limit``, and only while ``timeout`` seconds have not passed).

        An entry the database refuses for its data (a constraint, an
        impossible value, a value too long: DatabaseError.refused), or a file
        that is not an entry, is moved to ``rejected/`` so it never blocks
        the others nor is sent again; ``rejected`` then lists each such
        (path it was moved to, why), for the caller to say once.  An entry this login may not write (a script
        that belongs to other database roles, a missing grant) stays for when
        an administrator allows it, and the flush goes on with the others;
        the last such error is raised at the end.  Any other database error
        (an outage) stops the flush (raised), keeping that entry and the rest
        for next time.  Two flushes at once are harmless:
        entries are written once, and a file another flush removed first is
        simply skipped.
        """
        import time
        from cronpolicy.errors import DatabaseError
        give_up = None if timeout is None else time.monotonic() + timeout
        written = 0
        denied = None
        self.rejected = []
        for path, entry in self.entries():
            if limit is not None and written >= limit:
                break
            if give_up is not None and time.monotonic() >= give_up:
                break
            if entry is None:
                self._set_aside(path, "not a spool entry (damaged, or of an unknown shape)")
                continue
            try:
                store.apply_spooled(entry)
            except DatabaseError as error:
                if error.denied:
                    denied = error
                    continue
                if not error.refused:
                    raise
                self._set_aside(path, str(error))
                continue
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as error:
                # (A read-only or failing file system.)  Written, yet it stays:
                # a later flush finds it written and changes nothing; the
                # rest wait for then rather than be sent at every flush.
                from cronpolicy.errors import ConfigError
                raise ConfigError(
                    "wrote %d spooled run record%s to the database, but cannot remove %s from "
                    "the spool: %s; it and the rest stay spooled (a later flush finds it "
                    "written)" % (written + 1, "" if written == 0 else "s", path,
                                  error.strerror)) from None
            written += 1
        if denied is not None:
            denied.written = written    # what did go through, for the caller to say
            raise denied
        return written

    def _rejected_directory(self):
        from cronpolicy.safety import checked_directory
        checked_directory(self.directory, "spool directory", 0o700)
        rejected = os.path.join(self.directory, "rejected")
        checked_directory(rejected, "spool directory", 0o700)
        return rejected

    def _set_aside(self, path, why):
        """_reject, or, when rejected/ cannot take it (unsafe, unwritable),
        the entry stays where it is, listed with no path, and the flush goes
        on with the entries behind it (which it held up)."""
        from cronpolicy.errors import CronPolicyError
        try:
            self._reject(path, why)
        except (OSError, CronPolicyError) as error:
            self.rejected.append((None, "%s; cannot move it to rejected/: %s" % (
                why, getattr(error, "strerror", None) or error)))

    def _reject(self, path, why):
        from cronpolicy.safety import replace_with
        aside = os.path.join(self._rejected_directory(), os.path.basename(path))
        try:
            replace_with(path, aside)       # (over a plain file only)
        except FileNotFoundError:
            return          # another flush took it (and says so)
        self.rejected.append((aside, why))


def parse_entry(data):
    """A SpoolEntry from a file's JSON; entries of format 1 (flat) are read too."""
    if data.get("format", 1) == 1:
        kind = data["kind"]
        data = {"kind": kind, "run_id": data.get("run_id"),
                "record": data if kind == "run" else None,
                "end": data if kind == "finish" else None}
    if data["kind"] == "run":
        record = from_mapping(RunRecord, data["record"])
        if not (record.name and record.host and record.started_at and record.finished_at
                and record.status and record.spool_id):
            raise ValueError("incomplete run record")
        return SpoolEntry(record, None, None)
    if data["kind"] == "finish":
        end = from_mapping(RunEnd, data["end"])
        if not (end.status and end.finished_at) or not isinstance(data["run_id"], int):
            raise ValueError("incomplete finish record")
        return SpoolEntry(None, data["run_id"], end)
    raise ValueError("unknown kind %r" % data["kind"])
