"""What a CronScript, or `cronpolicy run`, does when its own standard output
cannot be written: --dry-run's answer, --help.  (A script's main() writes
what it likes, as it likes: its failures are its own, recorded as such.
The other commands of the CLI have output.GuardedStream, see cli._said.)

Never a traceback, nor Python's "Exception ignored" and exit 120 at the
flush on the way out: a pipe whose reader left exits READER_GONE (141),
quietly; any other failure (a disk full, the descriptor closed) is one line
on standard error and OUTPUT_FAILED (10); an answer of its own (5: would
skip) stays the exit status.  Loaded only when --dry-run or --help is asked.
"""

import errno
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
                _write(stream, text)
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


def _write(stream, text):
    """``stream.write(text)``, but unbuffered (PYTHONUNBUFFERED), where the
    text layer would drop the rest of a short write unsaid (a file size
    limit, a disk filling up), the rest is written again and the failure
    that stops it raised (as output.GuardedStream does)."""
    import io
    beneath = getattr(stream, "buffer", None)
    if not isinstance(beneath, io.RawIOBase):
        stream.write(text)
        return
    stream.flush()
    view = memoryview(text.encode(stream.encoding, stream.errors or "strict"))
    while view:
        written = beneath.write(view)
        if not written:
            raise OSError(errno.EAGAIN if written is None else errno.EIO,
                          "nothing written")
        view = view[written:]
