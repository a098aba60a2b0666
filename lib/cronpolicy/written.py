"""What a CronScript, or `cronpolicy run`, does when its own standard output
cannot be written: --dry-run's answer, --help.  (A script's main() writes
what it likes, as it likes: its failures are its own, recorded as such.
The other commands of the CLI have output.GuardedStream, see cli._said.)

Never a traceback, nor Python's "Exception ignored" and exit 120 at the
flush on the way out: a pipe whose reader left exits READER_GONE (141),
quietly; any other failure (a disk full, the descriptor closed) is one line
on standard error and OUTPUT_FAILED (10); an answer of its own (5: would
skip) stays the exit status.  Loaded by a start only when --dry-run or
--help is asked; output.GuardedStream writes through write_whole and
write_all too.
"""

import errno
import os
import sys

from cronpolicy import exitcodes
from cronpolicy.log import put_devnull_under


def say(stream, text, code, prog, unwritten=None):
    """Write ``text`` on ``stream`` (None: closed when the process began) and
    flush it; the exit status: ``code``, or what its failure makes of it.
    ``unwritten``: a failure met before (argparse's help, which it hides)."""
    error = unwritten
    if error is None:
        try:
            if stream is None:
                raise OSError(errno.EBADF, "it is closed")
            if text:
                write_whole(stream, text)
            stream.flush()
            return code
        except (OSError, ValueError) as failure:
            error = failure
    put_devnull_under(stream)
    if getattr(error, "errno", None) == errno.EPIPE:
        return code or exitcodes.READER_GONE
    reason = (getattr(error, "strerror", None) if isinstance(error, OSError)
              else "it is closed") or str(error)
    try:
        print("%s: error: cannot write standard output (%s)%s" % (
            prog, reason, "" if code else ": the answer is lost"), file=sys.stderr, flush=True)
    except (OSError, ValueError, AttributeError):
        pass                # (standard error too: the exit status says it)
    return code or exitcodes.OUTPUT_FAILED


def write_whole(stream, text):
    """``stream.write(text)``, but unbuffered (PYTHONUNBUFFERED, python -u),
    where the text layer would drop the rest of a short write unsaid (a file
    size limit, a disk filling up), the rest is written again and the
    failure that stops it raised.  (output.GuardedStream writes so too.)"""
    import io
    beneath = getattr(stream, "buffer", None)
    if not isinstance(beneath, io.RawIOBase):
        stream.write(text)
        return
    stream.flush()
    write_all(beneath, text.encode(stream.encoding, stream.errors or "strict"))


def write_all(binary, data):
    """Write all of ``data`` to ``binary``, a buffered stream (which writes
    all or raises) or a raw one (which may write part: the rest is written
    again, and the failure that stopped it raised)."""
    import io
    view = memoryview(data)
    while view:
        written = binary.write(view)
        if written is None:             # (non-blocking, full: EAGAIN)
            raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
        if not isinstance(binary, io.RawIOBase):
            return
        if written <= 0:
            raise OSError(errno.EIO, "nothing written")
        view = view[written:]
