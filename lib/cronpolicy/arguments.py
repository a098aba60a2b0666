"""Command-line arguments shared by ``cronpolicy`` and every CronScript."""

import argparse


def _option_strings(parser):
    """(options that take one value, every option) across all subcommands."""
    valued, known = set(), set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                more_valued, more_known = _option_strings(sub)
                valued |= more_valued
                known |= more_known
        known.update(action.option_strings)
        if action.option_strings and action.nargs is None:
            valued.update(action.option_strings)
    return valued, known


def valued_options(parser):
    """The option strings of ``parser`` (and its subcommands) that take one value."""
    return _option_strings(parser)[0]


def attach_dashed_values(argv, parser):
    """``--duration -3s`` as ``--duration=-3s``: argparse would take the
    value for an unknown option and say only "expected one argument",
    where the value's own check says what is wrong with it."""
    valued, known = _option_strings(parser)
    attached, index = [], 0
    while index < len(argv):
        token = argv[index]
        if token == "--":       # what follows is not options (a command to run)
            return attached + list(argv[index:])
        following = argv[index + 1] if index + 1 < len(argv) else None
        if (token in valued and following is not None and following.startswith("-")
                and following != "--" and following.split("=", 1)[0] not in known):
            attached.append(token + "=" + following)
            index += 2
            continue
        attached.append(token)
        index += 1
    return attached


#: Counts on the command line (--limit, --keep, --max-concurrent...) stop
#: here: the databases store 64-bit integers, and no listing needs more.
MAX_COUNT = 10 ** 9


def _whole_number(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a whole number: %r" % text) from None


def positive_int(text):
    """A whole number from 1 to MAX_COUNT, for argparse."""
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1: %r" % text)
    if value > MAX_COUNT:
        raise argparse.ArgumentTypeError("must be at most %d: %r" % (MAX_COUNT, text))
    return value


#: Ids stop where the databases' do (SQLite's rowids, PostgreSQL's bigint):
#: an id is not a count, and SQLite hands out random ids up to this one
#: once a row holds it.
MAX_ID = 2 ** 63 - 1


def database_id(text):
    """A row's id (a rollout's, a window's), from 1 to MAX_ID, for argparse."""
    value = _whole_number(text)
    if not 1 <= value <= MAX_ID:
        raise argparse.ArgumentTypeError("not an id (1 to %d): %r" % (MAX_ID, text))
    return value


def positive_number(text):
    """A finite number above zero (a ratio such as overdue's --tolerance)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a number: %r" % text) from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError("must be a finite number above 0: %r" % text)
    return value


def script_name(text):
    """A script name or name pattern, by the one rule (matching.name_problem)."""
    from cronpolicy.matching import name_problem
    problem = name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def service_name(text):
    """A service name (matching.service_name_problem), for argparse."""
    from cronpolicy.matching import service_name_problem
    problem = service_name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text
