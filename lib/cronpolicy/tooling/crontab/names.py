"""What a crontab job is called: the program it really runs.

A cron command is often a guard, a wrapper or some set-up around the job:

    test -x /usr/bin/certbot && perl -e 'sleep int(rand(43200))' && certbot -q renew
    [ -x /usr/lib/php/sessionclean ] && if [ ! -d /run/systemd/system ]; then /usr/lib/php/sessionclean; fi
    cd /srv/app && LPCONFIG=production nice -n 17 flock -n /var/lock/pjs.lock ./cronscripts/process-job-source.py -q IRosettaUploadJobSource

The job is certbot, sessionclean and process-job-source: ``identify``
walks the command's simple commands (split at ;, &&, ||, |, & and
parentheses) and, in each, skips

* shell keywords (if, then, !, {, ...) and set-up builtins (cd, umask,
  export, ., source, echo, ...), variable assignments, and guards (test,
  [ and [[, ``command -v``), whose program is kept only as a fallback;
* ``sleep N`` and inline code (``perl -e '...'``, ``python -c``);
* wrappers with their own options and arguments (sudo, su -c, timeout,
  flock, nice, ionice, chronic, run-one, setlock, envdir, env, nohup,
  ``sh -c '...'``, ...; a command given as a string is read in turn);
* interpreters (python, perl, php, bash, ...): the job is their script.

The first program left is the job: its base name (``.py``, ``.sh`` and
the other script extensions dropped) is the name, and the words after it
are its arguments, which tell apart jobs that run the same program (see
``host_names``).
"""

import collections
import os
import re

from cronpolicy.tooling.crontab.shell import tokens

#: The program a command runs (``name``: its base name, ``arguments``: the
#: words after it, ``assignments``: NAME=value words before it,
#: ``directory``: where a ``cd DIR`` before it went), or the best fallback
#: (a guarded program, a builtin) with ``fallback`` set.
Identity = collections.namedtuple("Identity", "name arguments assignments fallback directory",
                                  defaults=(None,))

_KEYWORDS = frozenset(("if", "then", "else", "elif", "fi", "do", "done", "while", "until",
                       "{", "}", "!", "[[", "]]"))
#: Whole simple commands that only loop or branch: nothing in them is the job.
_SKIPPED_COMPOUND = frozenset(("for", "case", "esac", "select", "function", "in"))
_SETUP_BUILTINS = frozenset((
    "cd", "umask", "export", "source", ".", "set", "ulimit", "trap", "true", "false", ":",
    "exit", "return", "unset", "shift", "wait", "read", "alias", "unalias", "eval", "echo",
    "printf", "local", "declare", "typeset", "readonly", "hash", "type", "pwd", "sleep",
    "break", "continue", "shopt", "pushd", "popd", "logger"))
_GUARDS = frozenset(("test", "[", "[["))
#: Programs that ask whether something runs: guards too (pgrep -f x || x).
_PROCESS_GUARDS = frozenset(("pgrep", "pidof", "pkill"))
_SHELLS = frozenset(("sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "busybox"))
_SCRIPT_EXTENSIONS = frozenset((".py", ".sh", ".bash", ".pl", ".php", ".rb", ".js", ".tcl",
                                ".lua", ".jar", ".R", ".ksh", ".zsh"))
_INTERPRETER = re.compile(r"^(python|pypy|perl|ruby|php|node|nodejs|tclsh|lua|Rscript|java)"
                          r"[0-9.]*$")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")

#: A wrapper: its short options that take a value, its long ones that do,
#: how many plain words it takes before the command, and the option whose
#: value is the command as a string (``flock -c``, ``su -c``).
Wrapper = collections.namedtuple("Wrapper", "short long positional command_option")
_WRAPPERS = {
    "sudo": Wrapper("ugCDhprtUTR", ("--user", "--group", "--close-from", "--chdir", "--host",
                                   "--prompt", "--role", "--type", "--other-user"), 0, None),
    "su": Wrapper("csg", ("--command", "--shell", "--group"), 1, "c"),
    "runuser": Wrapper("csgu", ("--command", "--shell", "--group", "--user"), 1, "c"),
    "timeout": Wrapper("sk", ("--signal", "--kill-after"), 1, None),
    "flock": Wrapper("wEc", ("--timeout", "--wait", "--conflict-exit-code", "--command"), 1,
                     "c"),
    "lckdo": Wrapper("w", (), 1, None),
    "nice": Wrapper("n", ("--adjustment",), 0, None),
    "ionice": Wrapper("cnpPu", ("--class", "--classdata", "--pid", "--pgid", "--uid"), 0, None),
    "chrt": Wrapper("", (), 1, None),
    "taskset": Wrapper("", (), 1, None),
    "chronic": Wrapper("", (), 0, None),
    "cronic": Wrapper("", (), 0, None),
    "nohup": Wrapper("", (), 0, None),
    "nocache": Wrapper("", (), 0, None),
    "exec": Wrapper("a", (), 0, None),
    "command": Wrapper("", (), 0, None),
    "builtin": Wrapper("", (), 0, None),
    "run-one": Wrapper("", (), 0, None),
    "run-this-one": Wrapper("", (), 0, None),
    "keep-one-running": Wrapper("", (), 0, None),
    "run-one-constantly": Wrapper("", (), 0, None),
    "run-one-until-success": Wrapper("", (), 0, None),
    "run-one-until-failure": Wrapper("", (), 0, None),
    "setlock": Wrapper("", (), 1, None),
    "envdir": Wrapper("", (), 1, None),
    "envuidgid": Wrapper("", (), 1, None),
    "setuidgid": Wrapper("", (), 1, None),
    "softlimit": Wrapper("acdflmoprst", (), 0, None),
    "env": Wrapper("uCS", ("--unset", "--chdir", "--split-string"), 0, None),
    "stdbuf": Wrapper("ioe", ("--input", "--output", "--error"), 0, None),
    "systemd-cat": Wrapper("tp", ("--identifier", "--priority", "--stderr-priority"), 0, None),
    "xvfb-run": Wrapper("nsfepw", ("--server-num", "--server-args", "--auth-file",
                                   "--error-file", "--xauth-protocol", "--wait"), 0, None),
    "ssh-agent": Wrapper("aEt", (), 0, None),
    "unbuffer": Wrapper("", (), 0, None),
    "caffeinate": Wrapper("", (), 0, None),
    "with-lock-ex": Wrapper("", (), 1, None),
    "solo": Wrapper("p", (), 0, None),
    "cronitor": Wrapper("", (), 0, None),
    "setsid": Wrapper("", (), 0, None),
    "doas": Wrapper("ug", (), 0, None),
    "chpst": Wrapper("ugUelmdofpcrt", (), 0, None),
    "cpulimit": Wrapper("lp", ("--limit", "--pid"), 0, None),
    "time": Wrapper("fo", ("--format", "--output"), 0, None),    # the keyword too
}
#: Programs that run another one after a subcommand of their own:
#: (the subcommand, wrapper options), as in bundle exec, docker exec.
_SUBCOMMAND_WRAPPERS = {
    "bundle": ("exec", Wrapper("", (), 0, None)),
    "uv": ("run", Wrapper("p", ("--python", "--with", "--project", "--directory"), 0, None)),
    "poetry": ("run", Wrapper("", (), 0, None)),
    "pipenv": ("run", Wrapper("", (), 0, None)),
    "docker": ("exec", Wrapper("euwi", ("--env", "--user", "--workdir", "--env-file"), 1,
                               None)),
    "podman": ("exec", Wrapper("euwi", ("--env", "--user", "--workdir", "--env-file"), 1,
                               None)),
    "kubectl": ("exec", Wrapper("nc", ("--namespace", "--container"), 1, None)),
}
#: Tools whose first argument says what they do (artisan schedule:run,
#: manage.py clearsessions, wp cron event run): it is part of the name.
_SUBCOMMAND_TOOLS = frozenset(("artisan", "manage", "occ", "wp", "drush", "console", "rake",
                               "rails", "npm", "yarn", "pnpm", "cake", "yii", "craft", "bin-console",
                               "django-admin", "flask", "celery", "make", "just", "composer"))
_URL_FETCHERS = frozenset(("curl", "wget", "lynx", "links", "fetch"))
#: Interpreters: short options that take a value, the options that give
#: inline code (no script to name the job after), a script or module
#: (python -m, php -f) and a command string (sh -c).
Interpreter = collections.namedtuple("Interpreter", "short inline script command_string")
_SHELL = Interpreter("oO", "", "", "c")
_INTERPRETERS = {
    "python": Interpreter("WXQ", "c", "m", ""),
    "pypy": Interpreter("WXQ", "c", "m", ""),
    "perl": Interpreter("", "eE", "", ""),
    "ruby": Interpreter("IrCEKT", "e", "", ""),
    "php": Interpreter("cdz", "rBRE", "f", ""),
    "node": Interpreter("r", "ep", "", ""),
    "nodejs": Interpreter("r", "ep", "", ""),
    "java": Interpreter("", "", "", ""),
    "tclsh": Interpreter("", "", "", ""),
    "lua": Interpreter("l", "e", "", ""),
    "Rscript": Interpreter("", "e", "", ""),
}
#: A program word that is only an expansion ($PHP script.php): read like
#: an interpreter whose options are all flags.
_UNKNOWN_INTERPRETER = Interpreter("", "", "", "")
_JAVA_VALUED = ("-cp", "-classpath", "--class-path", "--module-path", "-p")
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: Programs that start a service by name: the service is the job.
_SERVICE_RUNNERS = {"invoke-rc.d": 0, "service": 0, "systemctl": 1, "rc-service": 0}
_UNIT_SUFFIXES = (".service", ".timer", ".target")
#: Base names that say nothing on their own (/usr/lib/fwanalog/cron,
#: /usr/share/awstats/tools/update.sh, manage.py): the nearest telling
#: directory is put in front (fwanalog-cron, awstats-update).
_GENERIC_NAMES = frozenset((
    "cron", "cronjob", "update", "run", "main", "manage", "job", "jobs", "script", "start",
    "gc", "cleanup", "clean", "daily", "hourly", "weekly", "monthly", "index", "task", "tasks",
    "worker", "console", "artisan", "cli", "app", "occ", "wp-cron", "backup", "sync", "poll",
    "poller", "cron.php", "doit", "go", "exec", "wrapper", "entrypoint"))
_PLAIN_DIRECTORIES = frozenset((
    "", "bin", "sbin", "scripts", "script", "cronscripts", "cron", "crons", "tools", "tool",
    "libexec", "lib", "share", "usr", "local", "opt", "srv", "site", "www", "var", "home",
    "current", "releases", "src", "utils", "util", "admin", "jobs", "tasks", "etc", "cron.d",
    "public", "html", "htdocs", "dist", "build", "vendor", "venv", ".venv", "node_modules",
    "release", "app", ".", ".."))


def cron_command(command):
    """What cron hands the shell of ``command``: the text before the first
    unescaped % (cron's standard input follows it), with \\% as %."""
    head, index = [], 0
    while index < len(command):
        char = command[index]
        if char == "\\" and index + 1 < len(command):
            head.append("%" if command[index + 1] == "%" else command[index:index + 2])
            index += 2
            continue
        if char == "%":
            break
        head.append(char)
        index += 1
    return "".join(head)


def clean(text):
    """``text`` with the characters a name should not hold made '-'."""
    return _NAME_UNSAFE.sub("-", text).strip("-.")


def base_name(word):
    """The name a program or script path gives: its base name, a script
    extension dropped, characters a name should not hold made '-'."""
    base = os.path.basename(word.rstrip("/"))
    stem, extension = os.path.splitext(base)
    if extension in _SCRIPT_EXTENSIONS and stem:
        base = stem
    return clean(base)


def program_name(word):
    """base_name, with the telling directory in front of a generic name."""
    name = base_name(word)
    if name.lower() not in _GENERIC_NAMES:
        return name
    for directory in reversed(word.rstrip("/").split("/")[:-1]):
        telling = base_name(directory)
        if directory.lower() not in _PLAIN_DIRECTORIES and telling and "$" not in directory \
                and telling.lower() != name.lower():
            return "%s-%s" % (telling, name)
    return name


def identify(command):
    """The Identity of a crontab command (the text cron reads, % and all)."""
    return _identify_shell(cron_command(command), depth=0)


def job_name(command):
    """A script name for a command line: the base name of its program."""
    return identify(command).name


def _identify_shell(text, depth):
    fallbacks = []
    directory = None
    for words in _simple_commands(tokens(text)):
        if words and words[0].text == "cd" and len(words) > 1:
            directory = words[1].text           # cd /srv/shop && php artisan ...
        found = _identify_simple(words, fallbacks, depth)
        if found is not None:
            return found._replace(directory=found.directory or directory)
    for fallback in fallbacks:
        if fallback.name:
            return fallback._replace(directory=directory)
    return Identity("job", (), (), True, directory)


def _simple_commands(token_list):
    """The word lists of the simple commands, redirections taken out."""
    words, skip_next = [], False
    for token in token_list:
        if skip_next:
            skip_next = False
            if token.kind == "word":
                continue
        if token.kind == "op":
            if words:
                yield words
            words = []
        elif token.kind == "redirect":
            skip_next = True
        else:
            words.append(token)
    if words:
        yield words


def _identify_simple(words, fallbacks, depth):
    """The Identity of one simple command, or None (and perhaps a fallback)
    when it is set-up, a guard or a wrapper around nothing."""
    assignments = []
    index = 0
    while index < len(words):
        word = words[index]
        text = word.text
        if text in _SKIPPED_COMPOUND:
            return None
        if text in _KEYWORDS or _ASSIGNMENT.match(text):
            if _ASSIGNMENT.match(text):
                assignments.append(text)
            index += 1
            continue
        program = os.path.basename(text)
        rest = tuple(w.text for w in words[index + 1:])
        if program in _GUARDS or (program == "command" and rest[:1] in (("-v",), ("-V",))):
            fallbacks.append(_guarded(rest))
            return None
        if program in _PROCESS_GUARDS:
            fallbacks.append(_guarded([w for w in rest if not w.startswith("-")][-1:]))
            return None
        if program in _SUBCOMMAND_WRAPPERS and _SUBCOMMAND_WRAPPERS[program][0] in rest[:3]:
            subcommand, wrapper = _SUBCOMMAND_WRAPPERS[program]
            index, inner = _skip_wrapper(words, index + rest.index(subcommand) + 1, wrapper)
            if index >= len(words):
                fallbacks.append(Identity(base_name(program), (), tuple(assignments), True))
                return None
            continue
        if program in _SETUP_BUILTINS:
            fallbacks.append(Identity(base_name(program), rest, tuple(assignments), True))
            return None
        if program in _WRAPPERS:
            index, inner = _skip_wrapper(words, index, _WRAPPERS[program])
            if inner is not None:
                return _identify_inner(inner, assignments, fallbacks, depth)
            if index >= len(words):
                fallbacks.append(Identity(base_name(program), (), tuple(assignments), True))
                return None
            continue
        interpreter = _interpreter(program, word)
        if interpreter is not None:
            return _identify_interpreted(words, index, interpreter, assignments, fallbacks, depth)
        if program in _SERVICE_RUNNERS:
            service = [w for w in rest if not w.startswith("-")][_SERVICE_RUNNERS[program]:]
            if service and _unit_name(service[0]):
                return Identity(_unit_name(service[0]), tuple(service[1:]), tuple(assignments),
                                False)
        if program in _URL_FETCHERS:
            fetched = _fetched(rest, assignments)
            if fetched is not None:
                return fetched
        if base_name(text):
            return _named_program(text, rest, assignments)
        index += 1
    return None


def _named_program(word, arguments, assignments):
    """The Identity of program ``word``: a tool whose first argument says
    what it does is named with it (artisan-schedule-run)."""
    name = program_name(word)
    plain = [argument for argument in arguments if not argument.startswith("-")]
    if base_name(word) in _SUBCOMMAND_TOOLS and plain and clean(plain[0]):
        if base_name(word) in ("npm", "yarn", "pnpm") and plain[0] in ("run", "run-script") \
                and len(plain) > 1:
            plain = plain[1:]
        subcommand = plain[0]
        rest = list(arguments)
        rest.remove(subcommand)
        return Identity("%s-%s" % (name, clean(subcommand)[:40]), tuple(rest),
                        tuple(assignments), False)
    return Identity(name, tuple(arguments), tuple(assignments), False)


def _unit_name(word):
    for suffix in _UNIT_SUFFIXES:
        if word.endswith(suffix) and len(word) > len(suffix):
            word = word[:-len(suffix)]
    return base_name(word)


def _fetched(arguments, assignments):
    """curl/wget of a URL: named after what it fetches (wp-cron), told apart by its host."""
    for argument in arguments:
        scheme, found, rest = argument.partition("://")
        if not found or not scheme.isalpha():
            continue
        host, _, path = rest.partition("/")
        host = host.rpartition("@")[2].split(":")[0]
        target = base_name(path.split("?")[0].split("#")[0]) if path else ""
        name = target or clean(host)
        if not name:
            return None
        others = tuple(a for a in arguments if a != argument)
        return Identity(name, ((host,) if target and host else ()) + others, tuple(assignments),
                        False)
    return None


def _interpreter(program, word):
    if program in _SHELLS:
        return _SHELL
    family = _INTERPRETER.match(program)
    if family:
        return _INTERPRETERS[family.group(1)]
    if word.dynamic and (not base_name(word.text) or
                         (word.text.startswith("$") and "/" not in word.text)):
        return _UNKNOWN_INTERPRETER     # $PHP script.php, $(which php) script.php
    return None


def _identify_inner(command_string, assignments, fallbacks, depth):
    """The job inside a command string (sh -c '...', su -c, flock -c)."""
    if depth >= 3:
        return None
    found = _identify_shell(command_string, depth + 1)
    if found.fallback:
        fallbacks.append(found)
        return None
    return found._replace(assignments=tuple(assignments) + found.assignments)


def _guarded(words):
    """The fallback a guard gives: the program it tests for (test -x P)."""
    paths = [word for word in words if "/" in word and base_name(word)]
    plain = [word for word in words if not word.startswith("-") and base_name(word)]
    chosen = (paths or plain or [""])[0]
    return Identity(base_name(chosen), (), (), True)


def _word(words, index):
    return words[index].text if index < len(words) else ""


def _skip_wrapper(words, index, wrapper):
    """(index of the wrapped command's first word, None), or (-, the command
    string the wrapper runs: flock -c, su -c)."""
    index += 1
    positional = wrapper.positional
    while index < len(words):
        text = words[index].text
        if text == "--":
            return index + 1, None
        if text.startswith("--"):
            option, has_value, value = text.partition("=")
            if option == "--command" and wrapper.command_option:
                return index, value if has_value else _word(words, index + 1)
            index += 2 if option in wrapper.long and not has_value else 1
            continue
        if text.startswith("-") and len(text) > 1:
            for position, letter in enumerate(text[1:], 1):
                attached = text[position + 1:]
                if letter == wrapper.command_option:
                    return index, attached or _word(words, index + 1)
                if letter in wrapper.short:
                    index += 0 if attached else 1
                    break
            index += 1
            continue
        if text == "-":                     # su - USER
            index += 1
            continue
        if positional > 0:
            positional -= 1
            index += 1
            continue
        break
    return index, None


def _identify_interpreted(words, index, interpreter, assignments, fallbacks, depth):
    """An interpreter's job: its script (or module), or the string a shell
    runs with -c; inline code gives only a fallback."""
    program = base_name(words[index].text)
    java = program.startswith("java")
    index += 1
    while index < len(words):
        text = words[index].text
        if text == "--":
            index += 1
            break
        if not (text[:1] in "-+" and len(text) > 1):
            break
        if java and text in _JAVA_VALUED:
            index += 2
            continue
        if java and text == "-jar":
            index += 1
            break
        if java and text.startswith("-"):
            index += 1
            continue
        if text.startswith("--"):
            index += 1
            continue
        for position, letter in enumerate(text[1:], 1):
            attached = text[position + 1:]
            following = attached or _word(words, index + 1)
            if letter in interpreter.command_string:
                return _identify_inner(following, assignments, fallbacks, depth)
            if letter in interpreter.inline:
                fallbacks.append(Identity(program, (), tuple(assignments), True))
                return None
            if letter in interpreter.script:
                skip = 1 if attached else 2
                if not base_name(following):
                    break
                return _named_program(following, tuple(w.text for w in words[index + skip:]),
                                      assignments)
            if letter in interpreter.short:
                index += 0 if attached else 1
                break
        index += 1
    if index < len(words) and base_name(words[index].text):
        return _named_program(words[index].text, tuple(w.text for w in words[index + 1:]),
                              assignments)
    fallbacks.append(Identity(program, (), tuple(assignments), True))
    return None
