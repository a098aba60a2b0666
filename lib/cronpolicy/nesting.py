"""A CronScript run by `cronpolicy run` under its own name.

`cronpolicy crontab wrap` names a job after its program, and a CronScript's
default name is its file's: wrapping a line that runs one gives the
wrapper and the script the same name.  The wrapper holds the script's host
lock and its run record, so the script, gating itself again, would always
find its lock taken and never run.  The wrapper therefore tells its
command who gates it (two environment variables); a CronScript of that
name, started by that still living wrapper (an ancestor process), runs
main() without a gate of its own: the wrapper's decision, lock, record and
watcher stand for it.  Its SIGTERM protocol still works: a stop the
wrapper passes on waits for the script's safe point.
"""

import os

GATED_BY = "CRONPOLICY_GATED_BY"
GATED_PID = "CRONPOLICY_GATED_PID"


def gated_by_wrapper(name, environ=None):
    """The pid of the `cronpolicy run NAME` that gates this process, or None."""
    environ = os.environ if environ is None else environ
    if environ.get(GATED_BY) != name:
        return None
    try:
        wrapper = int(environ.get(GATED_PID, ""))
    except ValueError:
        return None
    return wrapper if wrapper > 1 and _is_ancestor(wrapper) else None


def _is_ancestor(pid):
    """Whether ``pid`` is this process's parent, grandparent, ... (Linux /proc)."""
    current = os.getppid()
    for _ in range(64):
        if current == pid:
            return True
        if current <= 1:
            return False
        try:
            with open("/proc/%d/stat" % current, "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
            current = int(fields[1])
        except (OSError, IndexError, ValueError):
            return False
    return False
