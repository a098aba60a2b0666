"""Shell completion (bash, zsh) and the manual page, generated from the parser.

A small generator rather than a completion library: argcomplete, the
maintained one, runs Python at every Tab (its hook imports the program to
ask its parser, a fifth of a second each time) and would be a dependency
of every host; what is generated here is static shell code read once, from
the very parser the command runs, so it cannot drift from it.  zsh gets
the bash code through zsh's own bashcompinit, as kubectl does.

    source <(cronpolicy completion bash)        # in ~/.bashrc
    source <(cronpolicy completion zsh)         # in ~/.zshrc

The manual page (man/cronpolicy.1 in a checkout, share/man/man1 once
installed) is `cronpolicy man`'s output, kept in step by a test.
"""

import argparse
import re

from cronpolicy import exitcodes


def _subcommands(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices, {choice.dest: choice.help for choice in
                                    action._choices_actions}
    return {}, {}


def commands():
    """[(path words, parser, help)] of every command and group, the parser
    of `cronpolicy run` included, depth first in the parser's order."""
    from cronpolicy.tooling.cli import build_parser
    from cronpolicy.tooling.run_command import CommandScript
    found = []

    def walk(parser, path, help_text):
        found.append((path, parser, help_text))
        choices, helps = _subcommands(parser)
        for name, sub in choices.items():
            if path == () and name == "run":
                sub = CommandScript("NAME", []).parser
            walk(sub, path + (name,), helps.get(name))

    walk(build_parser(), (), None)
    return found


def _options(parser):
    """(every option string, those that take a value) of ``parser``."""
    options, valued = [], []
    for action in parser._actions:
        options.extend(action.option_strings)
        if action.option_strings and action.nargs != 0:
            valued.extend(action.option_strings)
    return options, valued


_BASH = r'''# bash completion for cronpolicy, generated from its parser by
# `cronpolicy completion bash` (cronpolicy %(version)s).  Use:
#     source <(cronpolicy completion bash)
# Commands, subcommands and options complete; an option's value and what
# follows `--` (the command of `cronpolicy run`, `deploy run`) complete as
# file names.

declare -gA _cronpolicy_commands=(
%(commands)s
)
declare -gA _cronpolicy_options=(
%(options)s
)
declare -gA _cronpolicy_valued=(
%(valued)s
)

_cronpolicy() {
    [[ -n ${ZSH_VERSION-} ]] && setopt localoptions ksharrays shwordsplit
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
    local path=cronpolicy word next i candidates
    COMPREPLY=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        word="${COMP_WORDS[i]}"
        if [[ $word == -- ]]; then
            return 0                    # the command to run: file names
        elif [[ $word == -* ]]; then
            [[ ${_cronpolicy_valued[$path]} == *" $word "* ]] && ((i++))
        else
            next="$path $word"
            [[ -n ${_cronpolicy_options[$next]-} ]] && path="$next"
        fi
    done
    if [[ ${_cronpolicy_valued[$path]} == *" $prev "* ]]; then
        return 0                        # an option's value: file names
    elif [[ $cur == -* ]]; then
        candidates="${_cronpolicy_options[$path]}"
    else
        candidates="${_cronpolicy_commands[$path]-}"
    fi
    # (Matched here: zsh's compgen leaves the matching to zsh.)
    for word in $candidates; do
        [[ $word == "$cur"* ]] && COMPREPLY+=("$word")
    done
    return 0
}
complete -o bashdefault -o default -F _cronpolicy cronpolicy
'''

_ZSH = r'''#compdef cronpolicy
# zsh completion for cronpolicy, generated from its parser by
# `cronpolicy completion zsh` (cronpolicy %(version)s): the bash completion,
# through zsh's bashcompinit.  Use:
#     source <(cronpolicy completion zsh)
autoload -U +X compinit && { (( ${+_comps} )) || compinit; }
autoload -U +X bashcompinit && bashcompinit
'''


def _bash_table(entries):
    return "\n".join("    [%s]=%s" % (_quoted(key), _quoted(value))
                     for key, value in entries)


def _quoted(text):
    return "'%s'" % text.replace("'", "'\\''")


def completion(shell):
    """The completion script for ``shell`` (bash or zsh)."""
    from cronpolicy import __version__
    tree = [(" ".join(("cronpolicy",) + path), parser) for path, parser, _ in commands()]
    command_words, option_words, valued_words = [], [], []
    for key, parser in tree:
        options, valued = _options(parser)
        choices, _ = _subcommands(parser)
        if choices:
            command_words.append((key, " ".join(choices)))
        option_words.append((key, " ".join(options)))
        valued_words.append((key, " %s " % " ".join(valued)))
    bash = _BASH % {"version": __version__, "commands": _bash_table(command_words),
                    "options": _bash_table(option_words), "valued": _bash_table(valued_words)}
    if shell == "bash":
        return bash
    return _ZSH % {"version": __version__} + bash


# The manual page -------------------------------------------------------------------------

def _roff(text):
    """``text`` safe in a roff line: backslashes, hyphens, a leading dot."""
    text = " ".join(str(text or "").split()).replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text.startswith((".", "'")) else text


def _exit_codes():
    """[(code, meaning)] from exitcodes.py's own comments."""
    import inspect
    source = inspect.getsource(exitcodes)
    found = []
    for comment, name in re.findall(r"((?:^#:.*\n)+)^([A-Z_]+) = ", source, re.MULTILINE):
        meaning = " ".join(line[2:].strip() for line in comment.splitlines())
        found.append((getattr(exitcodes, name), meaning))
    return found


#: The environment variables cronpolicy reads, for the manual page.
ENVIRONMENT = (
    ("CRONPOLICY_DSN", "the policy database (below --dsn, above the config file)"),
    ("CRONPOLICY_CONFIG", "the config file (default /etc/cronpolicy.conf)"),
    ("CRONPOLICY_HOST", "this host's name as cronpolicy records it"),
    ("CRONPOLICY_LOCK_DIR", "where the per-host lock files go"),
    ("CRONPOLICY_STATE_DIR", "the state directory: cache, spool, the SQLite database"),
    ("CRONPOLICY_WATCH", "listen or poll: how running scripts hear of rollouts"),
    ("STATE_DIRECTORY", "systemd's StateDirectory=: the state directory when nothing above "
                        "names one"),
    ("RUNTIME_DIRECTORY", "systemd's RuntimeDirectory=: the lock directory when nothing "
                          "above names one"),
    ("JOURNAL_STREAM", "set by systemd: log lines to the journal carry their priority"),
)


def manpage():
    """cronpolicy(1), in roff."""
    from cronpolicy import __version__
    lines = [
        '.TH CRONPOLICY 1 "" "cronpolicy %s" "User Commands"' % __version__,
        ".SH NAME",
        "cronpolicy \\- policy gate for cron scripts: rollouts, history, runtime estimates",
        ".SH SYNOPSIS",
        ".B cronpolicy",
        "[\\fB\\-\\-dsn\\fR \\fIDSN\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR]",
        ".br",
        ".B cronpolicy run",
        "\\fINAME\\fR [\\fIOPTIONS\\fR] \\fB\\-\\-\\fR \\fICOMMAND\\fR [\\fIARGS\\fR...]",
        ".SH DESCRIPTION",
        _roff("cronpolicy decides, before each cron job starts, whether it runs: per-script "
              "policies, rollout windows and open rollouts in a central policy database "
              "(PostgreSQL, or an embedded SQLite file for one machine), and the job's own "
              "run history. It records every run, stops running jobs at safe points when a "
              "rollout begins, and answers operators' questions. Python jobs subclass "
              "cronpolicy.CronScript; any other command runs behind `cronpolicy run`. "
              "README.txt and docs/*.txt are the whole manual; this page lists the commands "
              "and options."),
        ".SH COMMANDS",
    ]
    for path, parser, help_text in commands():
        if not path:
            lines += _option_lines(parser)
            continue
        lines.append('.SS "cronpolicy %s"' % " ".join(path))
        if help_text:
            lines.append(_roff(help_text))
        if path == ("run",):
            lines += [".PP", _roff(parser.epilog)]
        lines += _option_lines(parser)
    lines += [".PP", _roff("Every command takes -h, --help. The commands that read take "
                           "--json: see docs/operators.txt for what its output promises.")]
    lines.append(".SH EXIT STATUS")
    for code, meaning in _exit_codes():
        lines += [".TP", ".B %d" % code, _roff(meaning)]
    lines += [".PP", _roff("`cronpolicy run` and `cronpolicy deploy run` exit with their "
                           "command's code, 127 when it does not exist (`deploy run`: 10 or "
                           "141 for a 0, when its own lines could not be written).")]
    lines.append(".SH ENVIRONMENT")
    for name, meaning in ENVIRONMENT:
        lines += [".TP", ".B %s" % name, _roff(meaning)]
    lines += [".SH FILES", ".TP", ".I /etc/cronpolicy.conf",
              _roff("the config file (see docs/operators.txt, Configuration)"),
              ".SH SEE ALSO", _roff("README.txt, docs/*.txt and CHANGELOG.txt of cronpolicy; "
                                    "crontab(5), systemd.timer(5), systemd.kill(5)")]
    return "\n".join(lines) + "\n"


def _option_lines(parser):
    lines = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(
                action, (argparse._SubParsersAction, argparse._HelpAction)):
            continue        # (-h, --help: said once, below the commands)
        if not action.option_strings:
            lines += [".TP", "\\fI%s\\fR" % _roff(action.metavar or action.dest.upper()),
                      _roff(action.help)]
            continue
        names = ", ".join("\\fB%s\\fR" % _roff(option) for option in action.option_strings)
        if action.nargs != 0:
            names += " \\fI%s\\fR" % _roff(action.metavar or action.dest.upper())
        lines += [".TP", names, _roff(action.help)]
    return lines


# The commands ----------------------------------------------------------------------------

def add_arguments(parsers):
    """The parsers of completion and man (see cli.CommandParsers)."""
    add = parsers.add
    sub = add("completion", "cmd_completion", parents=())
    sub.add_argument("shell", choices=("bash", "zsh"), help="bash or zsh")
    sub.set_defaults(needs_settings=False)
    sub = add("man", "cmd_man", parents=())
    sub.set_defaults(needs_settings=False)


def cmd_completion(args, settings):
    import sys
    sys.stdout.write(completion(args.shell))
    return exitcodes.OK


def cmd_man(args, settings):
    import sys
    sys.stdout.write(manpage())
    return exitcodes.OK
