"""How the cronpolicy command shows things: JSON, tables, the live table of
`deploy wait`, and one-line summaries of windows and audit entries."""

import datetime
import errno
import io
import json
import os
import sys
import time

from cronpolicy.timeutil import format_duration, format_time
from cronpolicy.written import write_all, write_whole


def _control_escapes():
    """Every control character but newline and tab, as a visible escape; and
    every lone surrogate (a byte that was not UTF-8, decoded with
    surrogateescape) as the byte it stands for, which no stream can encode."""
    table = {code: "\\x%02x" % code for code in list(range(0x20)) + list(range(0x7f, 0xa0))}
    del table[ord("\n")], table[ord("\t")]
    table.update({code: "\\u%04x" % code for code in range(0xd800, 0xe000)})
    table.update({code: "\\x%02x" % (code - 0xdc00) for code in range(0xdc80, 0xdd00)})
    return table


class EscapingStream:
    """A text stream that shows control characters as escapes (\\x1b, ...).

    Names, hosts and reasons come from rows a script role can write: printed
    raw, an escape sequence in them could rewrite the operator's terminal.
    The CLI puts this over stdout and stderr; ``raw`` is the stream beneath,
    for the escape sequences cronpolicy itself means (deploy wait's redraw)."""

    _table = None

    def __init__(self, raw):
        self.raw = raw
        if EscapingStream._table is None:
            EscapingStream._table = _control_escapes()

    def write(self, text):
        return self.raw.write(text.translate(self._table))

    def __getattr__(self, name):        # flush, isatty, fileno, encoding...
        return getattr(self.raw, name)


class GuardedStream:
    """A text stream that never raises for what it cannot write.

    The CLI puts one beneath each of its own standard output and standard
    error (cli.main): a disk full, a closed descriptor, a reader gone (|
    head), an I/O error.  The first failure is kept (``error``) and from
    then on nothing more is tried (a later write that succeeded would leave
    a hole in the middle of the output); each write is flushed at once, so
    the failure belongs to the text that met it.  The command runs on to its
    end, so a change it makes is made whole, and cli.main says what was
    lost and turns its exit status into one that is not success
    (exitcodes.OUTPUT_FAILED, READER_GONE).  Its ``buffer`` (bytes: crontab
    wrap's exact output) is guarded the same way.  ``raw`` None: the
    descriptor was closed when the process started."""

    #: At most this many characters of a lost line are kept, to be said.
    SHOWN = 160

    def __init__(self, raw, name):
        self.raw = raw
        self.name = name            # "standard output"
        self.error = None           # the first OSError met, or None
        self.lost_lines = 0
        self.first_lost = self.last_lost = None
        #: Whether the command said the failure itself (cli.main does not).
        self.reported = False
        #: Whether the text that met the failure may be written in part.
        self.partial = False

    def write(self, text):
        def whole():
            raw = self._raw()
            write_whole(raw, text)      # (a short write unbuffered: the rest again)
            raw.flush()
        return self._guarded(whole, text)

    def _guarded(self, write, what):
        """``write()`` (``what``, text or bytes) unless a failure came
        before; a failure is kept, and what was not written counted lost."""
        if self.error is None:
            try:
                write()
                return len(what)
            except (OSError, ValueError) as error:
                self._failed(error)
        self._lose(what)
        return len(what)

    def flush(self):
        if self.error is None and self.raw is not None:     # (closed: nothing to flush)
            try:
                self.raw.flush()
            except (OSError, ValueError) as error:
                self._failed(error)

    def isatty(self):
        try:
            return self._raw().isatty()
        except (OSError, ValueError):
            return False

    @property
    def buffer(self):
        if self.raw is not None and not hasattr(self.raw, "buffer"):
            raise AttributeError("buffer")      # (a StringIO)
        return _GuardedBuffer(self)

    def _raw(self):
        if self.raw is None:
            raise OSError(errno.EBADF, "it is closed")
        return self.raw

    def _failed(self, error):
        if isinstance(error, ValueError):       # "I/O operation on closed file"
            error = OSError(errno.EBADF, "it is closed")
        self.error = error
        # A plain file may hold the start of the text that failed (a disk
        # filling up mid-write); a device (/dev/full) or a closed one nothing.
        try:
            import stat
            self.partial = stat.S_ISREG(os.fstat(self.raw.fileno()).st_mode)
        except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
            self.partial = False

    def _lose(self, text):
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        for line in text.splitlines():
            if line.strip():
                line = line.strip()
                if len(line) > self.SHOWN:
                    line = line[:self.SHOWN] + "..."
                self.first_lost = self.first_lost or line
                self.last_lost = line
                self.lost_lines += 1

    @property
    def reader_gone(self):
        """Whether the failure is a pipe whose reader has left (EPIPE)."""
        return isinstance(self.error, BrokenPipeError) or getattr(
            self.error, "errno", None) == errno.EPIPE

    def fault(self):
        """The failure, and what it cost, as one line (for standard error)."""
        reason = getattr(self.error, "strerror", None) or str(self.error)
        if self.first_lost is None:
            said = "nothing was lost but its end"
        elif self.lost_lines == 1:
            said = 'what it could not write%s: "%s"' % (
                ", or not whole" if self.partial else "", self.first_lost)
        else:
            said = 'what it could not write%s (%d lines): "%s" ... "%s"' % (
                ", or not whole" if self.partial else "", self.lost_lines, self.first_lost,
                self.last_lost)
        return "cannot write %s (%s); the command ran to its end; %s" % (
            self.name, reason, said)

    def __getattr__(self, name):        # encoding, fileno, errors...
        return getattr(self._raw(), name)


class _GuardedBuffer:
    """The bytes beneath a GuardedStream, guarded with it."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, data):
        def whole():
            raw = self.stream._raw().buffer
            write_all(raw, data)
            raw.flush()
        return self.stream._guarded(whole, data)

    def flush(self):
        self.stream.flush()


def output_fault(stream=None):
    """The GuardedStream beneath ``stream`` (default: standard output) when
    it has failed to write, else None."""
    stream = sys.stdout if stream is None else stream
    while stream is not None and not isinstance(stream, GuardedStream):
        stream = getattr(stream, "raw", None)
    return stream if stream is not None and stream.error is not None else None


class JournalPriorities:
    """Standard error when it is the journal: every line starts with its
    syslog priority, which journald reads, so that no text a line begins
    with can pose as a priority: <3> for errors ("cronpolicy: error: ...",
    and a command's own, "cronpolicy window add: error: ..."), <4> for
    warnings ("cronpolicy: warning: ...", "warning: ...", and what a command
    says in its own name, "cronpolicy crontab: ...: left as it is"), <6>
    for the rest."""

    _PRIORITIES = ((r"cronpolicy(?: [\w-]+)*: error\b", "<3>"),
                   (r"(?:cronpolicy(?: [\w-]+)*: )?warning\b", "<4>"),
                   (r"cronpolicy(?: [\w-]+)+: ", "<4>"))

    def __init__(self, raw):
        import re
        self.raw = raw
        self.line_start = True
        self._priorities = [(re.compile(pattern), prefix) for pattern, prefix in self._PRIORITIES]

    def write(self, text):
        pieces = []
        for piece in text.splitlines(keepends=True):
            if self.line_start:
                pieces.append(next((prefix for pattern, prefix in self._priorities
                                    if pattern.match(piece)), "<6>"))
            pieces.append(piece)
            self.line_start = piece.endswith("\n")
        return self.raw.write("".join(pieces))

    def __getattr__(self, name):        # flush, isatty, fileno, encoding...
        return getattr(self.raw, name)


def _jsonable(value):
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    raise TypeError("cannot serialise %r" % (value,))


#: The version of every --json output's format, which each carries as its
#: top-level "format" key (print_json puts it there): what may change without
#: a bump is in docs/operators.txt, "The cronpolicy command" (new keys, their
#: order); a key renamed or removed, or a value's type changed, bumps it (and
#: the release's MAJOR, see CHANGELOG.txt).  `cronpolicy --version` says it.
JSON_FORMAT = 1


def print_json(data, key=None):
    """``data`` as --json prints it, always an object that carries the format
    version: an object gets the key "format"; a list (of runs, windows...)
    goes under ``key``, beside "format" (a bare array has no place for it)."""
    document = {"format": JSON_FORMAT, key: data} if key else dict(data, format=JSON_FORMAT)
    print(json.dumps(document, default=_jsonable, indent=2, sort_keys=True))


def show(json_wanted, rows, key, nothing, columns):
    """How a command that lists rows answers: with --json the rows (under
    ``key``, see print_json); else the line ``nothing`` when there are none;
    else their table (``columns`` as print_table takes them, or a function
    that prints the rows its own way)."""
    if json_wanted:
        print_json(rows, key)
    elif not rows:
        print(nothing)
    elif callable(columns):
        columns(rows)
    else:
        print_table(rows, columns)


def print_table(rows, columns):
    """rows: list of dicts; columns: [(heading, function(row) -> str)].
    Each cell on one line (one_line), each column as wide as its widest
    cell, two spaces between, no trailing blanks."""
    # Column by column, each line by one format (deploy plan's and schedule
    # list's tables have thousands of lines: cell by cell took most of their
    # printing).
    columns_cells = []
    for heading, render in columns:
        cells = [str(render(row)) for row in rows]
        joined = "".join(cells)
        if "\n" in joined or "\t" in joined:
            cells = [one_line(cell) for cell in cells]
        columns_cells.append([heading] + cells)
    form = "  ".join("%%-%ds" % max(map(len, cells)) for cells in columns_cells)
    # One write for the table.
    print("\n".join((form % line).rstrip() for line in zip(*columns_cells)))


def warn(message):
    print("cronpolicy: warning: %s" % message, file=sys.stderr)


def schedule_text(row):
    """A row's schedule and its zone, as the tables show it."""
    if not row["schedule"]:
        return "-"
    return "%s (%s)" % (row["schedule"], row["schedule_tz"] or "UTC")


def one_line(text):
    """``text`` with its line breaks and tabs as escapes (\\n, \\t): a value
    from a row (a reason, a name, a host) cannot forge lines of its own in
    what cronpolicy prints.  (The stream escapes every other control
    character; it cannot tell these from cronpolicy's own.)"""
    return text.replace("\n", "\\n").replace("\t", "\\t")


def quote(text):
    """A value from a row, on one line; "-" when empty."""
    return one_line(text) if text else "-"


def change_summary(entry):
    if entry["operation"] == "TRUNCATE":
        row = entry["old_row"]
        if not row:     # the statement's own entry; one per row follows
            return "all rows removed"
        return "removed: " + ", ".join("%s=%s" % (key, row[key])
                                       for key in ("name", "host", "service") if key in row)
    if entry["operation"] == "INSERT":
        row = entry["new_row"] or {}
        keys = [key for key in ("name", "host", "enabled", "deploy_pending", "kind",
                                "services", "service", "starts_at", "ends_at", "script")
                if key in row and not (key == "services" and not row[key])]
        return "new: " + ", ".join("%s=%s" % (key, row[key]) for key in keys)
    if entry["operation"] == "DELETE":
        row = entry["old_row"] or {}
        return "deleted: " + ", ".join("%s=%s" % (key, row[key])
                                       for key in ("name", "host", "service") if key in row)
    return ", ".join("%s %s -> %s" % (key, old, new)
                     for key, (old, new) in entry["changes"].items()) or "no change"


def window_line(window):
    scope = "script %s on host %s%s" % (
        window["script"], window["host"],
        ", scripts that need %s" % window["service"] if window.get("service") else "")
    return "#%d %s to %s (%s), %s: %s" % (
        window["id"], format_time(window["starts_at"]), format_time(window["ends_at"]),
        window["state"], scope, quote(window["reason"]))


def run_table(runs, now):
    def finish(run):
        predicted = run["predicted_finish"]
        if predicted is None:
            return "-"
        left = (predicted - now).total_seconds()
        return "%s (%s)" % (format_time(predicted),
                            "in " + format_duration(left) if left >= 0
                            else format_duration(-left) + " overdue")
    print_table(runs, [
        ("SCRIPT", lambda r: r["name"]), ("HOST", lambda r: r["host"]),
        ("PID", lambda r: r["pid"] if r["pid"] is not None else "-"),
        ("RUNNING FOR", lambda r: format_duration(r["running_seconds"])),
        ("PREDICTED FINISH", finish),
        ("SAFE", lambda r: "yes" if r["safe_to_interrupt"] else "no"),
        ("RELEASE", lambda r: release_name(r.get("release"))),
        ("HEARD", heard)])


def release_name(release):
    """A release directory as the tables show it: its last component
    (/srv/app/releases/4521 is 4521); --json has the whole path."""
    if not release:
        return "-"
    return release.rstrip("/").rsplit("/", 1)[-1] or release


#: A run heartbeats every 5s by default: silence twice that long is news.
QUIET_RUN = 10.0


def heard(run):
    """When a running run last renewed its lease, as people want to read it."""
    seconds = run.get("heard_seconds")
    if seconds is None:
        return "-"
    if seconds >= QUIET_RUN:
        return "not heard from for %s" % format_duration(round(seconds))
    return "%s ago" % format_duration(round(seconds))


class LiveTable:
    """deploy wait's progress: redrawn in place on a terminal, else a line per change."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = stream.isatty()
        self.drawn_lines = 0
        self.last_key = None
        self.last_draw = 0.0

    def __call__(self, now, runs, waited):
        key = tuple(sorted((run["id"], run["safe_to_interrupt"],
                            run.get("heard_seconds", 0) >= QUIET_RUN) for run in runs))
        if self.tty:
            if key == self.last_key and time.monotonic() - self.last_draw < 1.0:
                return
            buffer = io.StringIO()
            real_stdout, sys.stdout = sys.stdout, buffer
            try:
                print("waiting %s for %d run%s (database clock %s)" % (
                    format_duration(waited), len(runs), "" if len(runs) == 1 else "s",
                    format_time(now)))
                if runs:
                    run_table(runs, now)
            finally:
                sys.stdout = real_stdout
            text = buffer.getvalue()
            if self.drawn_lines:
                # Our own escape sequence: past any EscapingStream.
                getattr(self.stream, "raw", self.stream).write(
                    "\x1b[%dF\x1b[J" % self.drawn_lines)
            self.stream.write(text)
            self.stream.flush()
            self.drawn_lines = text.count("\n")
            self.last_draw = time.monotonic()
        elif key != self.last_key and runs:
            self.stream.write("waiting for %s\n" % ", ".join(
                "%s on %s (pid %s, %s%s)" % (
                    run["name"], run["host"], run["pid"],
                    "safe" if run["safe_to_interrupt"] else "not safe",
                    ", " + heard(run) if run.get("heard_seconds", 0) >= QUIET_RUN else "")
                for run in runs))
            self.stream.flush()
        self.last_key = key
