"""The options every CronScript has, and reading them without argparse.

Building an argparse parser (and importing argparse) costs a cron job's
start more than its whole decision, and most crontab lines pass no option
or only standard ones.  ``parse_standard_options`` reads exactly those
(-v, -q, --log-file, --syslog, --dsn, --ignore-policy, --dry-run, as argparse would
read them); anything else, --help included, it leaves to argparse, which
then also gives the error messages.
"""

#: Options that take a value, and the flags (with the attribute each sets).
_VALUED = {"--log-file": "log_file", "--dsn": "dsn"}
_FLAGS = {"--ignore-policy": "ignore_policy", "--dry-run": "dry_run", "--syslog": "syslog"}
_COUNTS = {"-v": "verbose", "--verbose": "verbose", "-q": "quiet", "--quiet": "quiet"}
_KNOWN = frozenset(list(_VALUED) + list(_FLAGS) + list(_COUNTS) + ["-h", "--help"])


class Options:
    """The parsed options, as attributes (like argparse.Namespace)."""

    def __init__(self, **values):
        self.__dict__.update(values)

    def __eq__(self, other):
        return vars(self) == vars(other)

    def __contains__(self, key):
        return key in self.__dict__

    def __repr__(self):
        return "Options(%s)" % ", ".join("%s=%r" % item for item in sorted(vars(self).items()))


def parse_standard_options(argv):
    """Options for ``argv`` when it holds standard options only, else None."""
    options = Options(verbose=0, quiet=0, log_file=None, dsn=None, ignore_policy=False,
                      dry_run=False, syslog=False)
    index = 0
    while index < len(argv):
        word = argv[index]
        index += 1
        option, equals, value = word.partition("=")
        if option in _VALUED and word.startswith("--"):
            if not equals:
                if index >= len(argv):
                    return None
                value = argv[index]
                if value.startswith("-") and (value == "--" or value.split("=", 1)[0] in _KNOWN):
                    return None         # argparse says what is wrong
                index += 1
            setattr(options, _VALUED[option], value)
        elif word in _FLAGS:
            setattr(options, _FLAGS[word], True)
        elif word in _COUNTS:
            key = _COUNTS[word]
            setattr(options, key, getattr(options, key) + 1)
        elif len(word) > 2 and word[0] == "-" and word[1] in "vq" and set(word[1:]) <= {"v", "q"}:
            options.verbose += word.count("v")
            options.quiet += word.count("q")
        else:
            return None
    return options


def standard_options_parser(prog, description):
    """The argparse parser with the standard options, for scripts to extend.
    A usage error is one line (and exit 2), as in the cronpolicy command."""
    import argparse
    import sys

    class OneLineErrors(argparse.ArgumentParser):
        #: What --help (or --version) could not write on standard output,
        #: which argparse hides: see written.say.
        unwritten = None

        def _print_message(self, message, file=None):
            if message and file is None:    # standard output, closed: not stderr
                import errno
                self.unwritten = self.unwritten or OSError(errno.EBADF, "it is closed")
                return
            if message and file is sys.stdout:
                try:
                    file.write(message)
                    file.flush()
                except (OSError, ValueError) as error:
                    self.unwritten = self.unwritten or error
                return
            super()._print_message(message, file)

        def error(self, message):
            self.exit(2, "%s: error: %s (see --help)\n" % (
                self.prog, message.replace("\n", "\\n")))    # (a word may hold one)

    parser = OneLineErrors(prog=prog, description=description)
    group = parser.add_argument_group("cronpolicy options")
    group.add_argument("-v", "--verbose", action="count", default=0,
                       help="more logging (repeatable)")
    group.add_argument("-q", "--quiet", action="count", default=0,
                       help="less logging (repeatable)")
    group.add_argument("--log-file", metavar="PATH",
                       help="append the log here instead of standard error; "
                            "the default level there is INFO")
    group.add_argument("--syslog", action="store_true",
                       help="send the log to the local syslog socket (the config file's "
                            "syslog, default /dev/log) instead; the default level there "
                            "is INFO")
    group.add_argument("--dsn", help="policy database (overrides CRONPOLICY_DSN "
                                     "and the config file)")
    group.add_argument("--ignore-policy", action="store_true",
                       help="run even if the policy says skip (recorded as such)")
    group.add_argument("--dry-run", action="store_true",
                       help="print the decision and exit; run and record nothing")
    return parser
