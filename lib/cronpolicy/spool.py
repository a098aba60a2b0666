"""Run records waiting for the database.

When a run's record cannot be written (the database is down at the start,
or lost before the end), the record goes to a file in this host's spool
directory instead, written atomically, with the run's real times (this
host's clock, shifted by the offset to the database clock measured at the
last successful read).  The next run on the host, or `cronpolicy flush`,
writes the entries and removes them.  Every entry has a unique id; the
database inserts an entry at most once (``script_run.spool_id`` is unique)
and a late finish only completes a run that is still open, so a flush
interrupted half-way can simply be repeated: nothing is recorded twice.
"""

import json
import os
import uuid

from cronpolicy.timeutil import UTC

RUN = "run"          # a whole run (or skip) that never reached the database
FINISH = "finish"    # the end of a run whose start was recorded


class Spool:

    def __init__(self, directory):
        self.directory = directory

    def _write(self, entry):
        os.makedirs(self.directory, exist_ok=True)
        entry["spool_id"] = uuid.uuid4().hex
        # Sortable by time of writing, so entries are flushed in order.
        import time
        name = "%020d-%s.json" % (time.time_ns(), entry["spool_id"])
        path = os.path.join(self.directory, name)
        temporary = os.path.join(self.directory, ".%s.tmp" % entry["spool_id"])
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(entry, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        return path

    def add_run(self, name, host, pid, started_at, finished_at, status, exit_code=None,
                skip_reason=None, estimate=None, policy_ignored=False, stop_reason=None,
                decision=None, expected_interval=None):
        from cronpolicy.store import _decision_values
        code, policy_id, window_id, interval = _decision_values(decision, expected_interval)
        return self._write({
            "decision": code, "policy_id": policy_id, "window_id": window_id,
            "expected_interval": interval,
            "kind": RUN, "name": name, "host": host, "pid": pid,
            "started_at": started_at.astimezone(UTC).isoformat(),
            "finished_at": finished_at.astimezone(UTC).isoformat(),
            "status": status, "exit_code": exit_code, "skip_reason": skip_reason,
            "estimate_seconds": estimate.seconds if estimate is not None else None,
            "estimate_source": estimate.source if estimate is not None else None,
            "policy_ignored": bool(policy_ignored), "stop_reason": stop_reason})

    def add_finish(self, run_id, status, exit_code, finished_at, stop_reason=None):
        return self._write({
            "kind": FINISH, "run_id": run_id, "status": status, "exit_code": exit_code,
            "finished_at": finished_at.astimezone(UTC).isoformat(),
            "stop_reason": stop_reason})

    def entries(self):
        """[(path, entry)], oldest first; unreadable files are skipped (and kept)."""
        try:
            names = sorted(name for name in os.listdir(self.directory) if name.endswith(".json"))
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            path = os.path.join(self.directory, name)
            try:
                with open(path, encoding="utf-8") as handle:
                    found.append((path, json.load(handle)))
            except (OSError, ValueError):
                continue
        return found

    def __len__(self):
        try:
            return sum(1 for name in os.listdir(self.directory) if name.endswith(".json"))
        except FileNotFoundError:
            return 0

    def flush(self, store, limit=None):
        """Write pending entries through ``store``; return how many were written.

        An entry the database refuses for good (or that is damaged) is moved
        to ``rejected/`` so it never blocks the others; a transient database
        error stops the flush (raised), keeping that entry and the rest for
        next time.  Two flushes at once are harmless: entries are written
        once, and a file another flush removed first is simply skipped.
        """
        from cronpolicy.errors import DatabaseError
        written = 0
        for path, entry in self.entries():
            if limit is not None and written >= limit:
                break
            try:
                if entry.get("kind") not in (RUN, FINISH):
                    raise ValueError("unknown kind %r" % entry.get("kind"))
                store.apply_spooled(entry)
            except DatabaseError as error:
                if error.transient:
                    raise
                self._reject(path)
                continue
            except (KeyError, ValueError, TypeError):
                self._reject(path)
                continue
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            written += 1
        return written

    def _reject(self, path):
        rejected = os.path.join(self.directory, "rejected")
        os.makedirs(rejected, exist_ok=True)
        try:
            os.replace(path, os.path.join(rejected, os.path.basename(path)))
        except FileNotFoundError:
            pass
