"""The signal functions the start path needs, without the ``signal`` module.

``signal`` wraps the C module ``_signal`` with enums (Signals, Handlers),
and building them costs a cron job's start more than a decision does.
The functions and numbers are the same; ``name`` gives a signal's name
(SIGTERM) the way ``signal.Signals(n).name`` would.
"""

try:
    import _signal as _module
except ImportError:         # an interpreter without the C module's own name
    import signal as _module

SIGTERM = _module.SIGTERM
SIGINT = _module.SIGINT
SIGUSR2 = _module.SIGUSR2
signal = _module.signal
pthread_kill = _module.pthread_kill

_NAMES = {SIGTERM: "SIGTERM", SIGINT: "SIGINT", SIGUSR2: "SIGUSR2"}


def name(signum):
    """SIGTERM for 15, and so on."""
    if signum in _NAMES:
        return _NAMES[signum]
    import signal as full
    try:
        return full.Signals(signum).name
    except ValueError:
        return "signal %d" % signum
