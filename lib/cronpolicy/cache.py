"""The last policy this host fetched, for when the database is out of reach.

After every successful read the gate keeps the policy rows, the deploy
state, the open rollouts and the standing windows in a small JSON file (written atomically: a
new file under an unpredictable name, renamed over the old one, so a reader
never sees half a file).  When the database cannot be reached, a cache
confirmed within ``max_age`` answers instead of the blind
``on_database_error``, so a deploy-pending flag seen a minute ago still
holds while the database is down.

The file is written only when what it holds changed, or was saved more
than half of ``max_age`` ago (or in this clock's future): a small file
beside it (``.fingerprint``) says when it was saved and what it holds
(the content's repr), and a read that finds the same content only touches
the cache, whose modification time is when the database last confirmed it
(writing JSON on every start cost more than the decision).  The cache
itself stays in the format older versions read.  The database time in
the file is carried forward by the time since it was saved, so windows
are still judged on (an estimate of) the database clock: measured within
one boot on a clock no step of the wall clock moves (CLOCK_BOOTTIME, kept
in the file with the boot's id), so an NTP step while the database is
down moves no window; across a reboot, on this host's wall clock.  When
the cache was last confirmed is its modification time (this host's wall
clock): a step since is taken out when the boot clock shows one.
"""

import os
import stat
import time

from cronpolicy.rows import (
    FROM_CACHE, DeployState, Inputs, PolicyRow, Rollout, ServiceDeploy, Window, from_mapping,
    to_mapping, to_time)
from cronpolicy.timeutil import steady

FORMAT = 2

#: The most a cache file may hold (characters): a fleet's policy rows and
#: windows are kilobytes; a larger file is damaged, and is not read whole
#: (on a start, with the database down).
SIZE_LIMIT = 64 << 20

# Format 1 (cronpolicy up to schema 5) kept rows as arrays in this order.
_FORMAT_1 = {
    "deploy": ("deploy_pending", "reason", "changed_by", "changed_at"),
    "policies": ("id", "name", "host", "enabled", "reason", "expected_runtime",
                 "rollout_exempt", "changed_by", "changed_at", "interruptible",
                 "fleet_single_instance"),
    "windows": ("id", "starts_at", "ends_at", "reason", "host", "script"),
}


class PolicyCache:
    """IPolicySource: the policy last read from one database, kept in ``path``."""

    def __init__(self, path, max_age):
        self.path = path
        self.max_age = max_age
        #: (where the damaged cache was moved, why), once one was met.
        self.rejected = None

    def keep(self, inputs):
        """Keep ``inputs`` (rows.Inputs): write them when they differ from
        what the file holds (or it is old), else mark it confirmed now;
        raises OSError."""
        fingerprint = _fingerprint(inputs)
        saved_at = self._saved_with(fingerprint)
        if saved_at is not None and 0 <= time.time() - saved_at <= self.max_age / 2:
            try:
                os.utime(self.path)
                return
            except OSError:
                pass        # not ours to touch (another user wrote it): write it anew
        self.save(inputs, fingerprint, out_of_date=saved_at is None)

    @staticmethod
    def _forget(path):
        """Remove ``path`` if it is a plain file (nothing else is ours to remove)."""
        from cronpolicy.safety import remove_quietly, replace_problem
        if replace_problem(path) is None:
            remove_quietly(path)

    @property
    def fingerprint_path(self):
        directory, name = os.path.split(self.path)
        return os.path.join(directory, "." + name + ".fingerprint")

    def _saved_with(self, fingerprint):
        """When the cache holding ``fingerprint`` was saved, or None (it holds
        something else, or nothing says)."""
        from cronpolicy.safety import open_plain_file
        try:
            with open(open_plain_file(self.fingerprint_path), encoding="utf-8",
                      errors="replace") as handle:
                line = handle.read(len(fingerprint) + 64)
            is_plain = stat.S_ISREG(os.lstat(self.path).st_mode)
        except OSError:         # none, or not a plain file (a FIFO would block)
            return None
        saved_at, _, found = line.partition(" ")
        if found != fingerprint + "\n" or not is_plain:
            return None         # written anew: write_atomically says what is wrong
        try:
            return float(saved_at)
        except ValueError:
            return None

    def save(self, inputs, fingerprint=None, out_of_date=True):
        """Write ``inputs`` (rows.Inputs) atomically, then what it holds
        beside it; raises OSError.  ``out_of_date``: what the file holds
        differs from ``inputs`` (as far as is known), so it is removed
        when it cannot be replaced."""
        import json
        saved_at = time.time()
        data = {
            "format": FORMAT,
            "saved_at": saved_at,
            "boot": _boot_id(),
            "boot_clock": steady(),
            "database_now": inputs.now.timestamp(),
            "schema_version": inputs.schema_version,
            "deploy": None if inputs.deploy is None else to_mapping(inputs.deploy),
            "policies": [to_mapping(row) for row in inputs.policies],
            "windows": [to_mapping(window) for window in inputs.windows],
            "services": [to_mapping(service) for service in inputs.services],
            "rollouts": [to_mapping(rollout) for rollout in inputs.rollouts],
        }
        from cronpolicy.safety import checked_directory, write_atomically
        checked_directory(os.path.dirname(self.path), "state_dir", 0o700)
        # The fingerprint names what the cache held: gone before the cache
        # changes, so that a new cache whose fingerprint cannot be written
        # (a full file system) is never confirmed as the old content later.
        self._forget(self.fingerprint_path)
        try:
            write_atomically(self.path, lambda handle: json.dump(data, handle))
        except OSError:
            if out_of_date:
                # The database said otherwise than the cache holds (a full
                # file system kept the new one out): the old one, confirmed
                # a moment ago, must not answer for it once the database is
                # away.  (A read-only one keeps it: said at every start.)
                self._forget(self.path)
            raise
        line = "%r %s\n" % (saved_at, fingerprint or _fingerprint(inputs))
        write_atomically(self.fingerprint_path, lambda handle: handle.write(line))

    def load_inputs(self, name, history_runs):
        """Inputs from the cache (source FROM_CACHE, with its age), or None when
        there is no usable cache younger than ``max_age``."""
        import json
        from cronpolicy.errors import NotAPlainFile
        from cronpolicy.safety import open_plain_file
        try:
            with open(open_plain_file(self.path), encoding="utf-8") as handle:
                confirmed_at = os.fstat(handle.fileno()).st_mtime
                text = handle.read(SIZE_LIMIT + 1)
            if len(text) > SIZE_LIMIT:
                raise ValueError("larger than %d characters" % SIZE_LIMIT)
            data = json.loads(text)
        except FileNotFoundError:
            return None
        except NotAPlainFile as error:
            return self._reject(error, move_aside=False)    # not ours to move: said
        except (OSError, ValueError, RecursionError) as error:  # (nested past recursion)
            return self._reject(error)
        try:
            if data.get("format") == 1:
                data = _from_format_1(data)
            if data.get("format") != FORMAT:
                return None
            now = time.time()
            age = now - float(data["saved_at"])
            if not -float("inf") < age < float("inf"):
                raise ValueError("saved_at is not a time: %r" % data["saved_at"])
            confirmed = now - confirmed_at      # when a read last found it current
            steady_age = _steady_age(data)
            if steady_age is not None:
                # The wall clock stepped by (age - steady_age) since the save;
                # the confirmation came after the step, or before it.
                # (File times are coarser than the clocks: a little slack.)
                candidates = [min(max(seconds, 0.0), steady_age)
                              for seconds in (confirmed, confirmed - (age - steady_age))
                              if -1.0 <= seconds <= steady_age + 1.0]
                age = steady_age
                confirmed = max(candidates) if candidates else -1.0
            if age < 0 or not 0 <= confirmed <= self.max_age:
                return None
            deploy = data["deploy"]
            return Inputs(
                now=to_time(float(data["database_now"]) + age),
                schema_version=data["schema_version"],
                deploy=None if deploy is None else from_mapping(DeployState, deploy),
                policies=[from_mapping(PolicyRow, row) for row in data["policies"]],
                windows=[from_mapping(Window, row) for row in data["windows"]],
                # (None in a cache an older version wrote: it knew no services.)
                services=[from_mapping(ServiceDeploy, row) for row in data.get("services", [])],
                # (Its deploy and services say what an older version saw open.)
                rollouts=[from_mapping(Rollout, row) for row in data.get("rollouts", [])],
                recent_runtimes=[], source=FROM_CACHE, age=confirmed)
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError,
                RecursionError) as error:
            return self._reject(error)

    def _reject(self, error, move_aside=True):
        """A cache that cannot be read (damaged, truncated, of the wrong
        shape) is moved aside, so it is reported once and then replaced by
        the next successful read; the start goes on as if there were none.
        What is not a plain file (a FIFO, a device) stays where it is."""
        from cronpolicy.safety import replace_with
        aside = self.path + ".rejected" if move_aside else None
        try:
            if aside is not None:
                replace_with(self.path, aside)  # (over a plain file only)
        except OSError:
            aside = None
        self.rejected = (aside, "%s: %s" % (type(error).__name__, str(error)[:200]))
        return None


def _boot_id():
    """This boot's id (Linux), or None."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read(64).strip() or None
    except (OSError, ValueError):
        return None


def _steady_age(data):
    """Seconds since the cache ``data`` was saved by the boot clock, when it
    was saved in this boot; else None (the wall clock must do)."""
    saved = data.get("boot_clock")
    if data.get("boot") is None or not isinstance(saved, (int, float)) or \
            isinstance(saved, bool) or data["boot"] != _boot_id():
        return None
    age = steady() - saved
    return age if 0 <= age < float("inf") else None


def _fingerprint(inputs):
    """What the cache holds for ``inputs``, as one line of text: the content's
    repr itself (comparing it costs less than loading a hash function)."""
    return repr((inputs.schema_version, inputs.deploy, inputs.policies, inputs.windows,
                 inputs.services, inputs.rollouts))


def _from_format_1(data):
    """A cache written by an older cronpolicy, in today's shape."""
    def named(key, values):
        return None if values is None else dict(zip(_FORMAT_1[key], values))
    return dict(data, format=FORMAT, deploy=named("deploy", data["deploy"]),
                policies=[named("policies", row) for row in data["policies"]],
                windows=[named("windows", row) for row in data["windows"]])
