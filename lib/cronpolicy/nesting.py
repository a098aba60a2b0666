"""A CronScript run by `cronpolicy run`: gated once, under the wrapper's name.

`cronpolicy crontab wrap` names a job after its program, with the words
that tell it from the host's other jobs (report-daily, report-weekly),
and a CronScript has a name of its own (report).  Gating itself again, it
would make one invocation two runs: two rows, two locks, two sets of
policy rows, or never run at all where the names are equal (the wrapper
holds that name's lock).  The wrapper therefore tells its command who
gates it (two environment variables); a CronScript started by that still
living wrapper (an ancestor process) takes the wrapper's name and runs
main() without a gate of its own: the wrapper's decision, lock, record and
watcher stand for it.  It takes the variables too (out of its own
environment), so a script its main() starts gates itself.  Its SIGTERM
protocol still works: a stop the wrapper passes on waits for the script's
safe point.
"""

import os

GATED_BY = "CRONPOLICY_GATED_BY"
GATED_PID = "CRONPOLICY_GATED_PID"


def gated_by_wrapper(environ=None):
    """(name, pid) of the `cronpolicy run NAME` that gates this process, or
    None; a gate found is taken out of ``environ`` (default os.environ)."""
    environ = os.environ if environ is None else environ
    name = environ.get(GATED_BY)
    try:
        wrapper = int(environ.get(GATED_PID, ""))
    except ValueError:
        return None
    from cronpolicy.matching import name_problem
    if not name or name_problem(name) or wrapper <= 1 or not _is_ancestor(wrapper):
        return None
    del environ[GATED_BY], environ[GATED_PID]
    return name, wrapper


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
