"""`cronpolicy serve`: check what it is asked, then serve until stopped.

Refused, one line and exit 2: a --listen that is not HOST:PORT, an address
past loopback without a token, a login that can write (PostgreSQL: any
table of the schema; SQLite: a file this process may write) without
--allow-writer.  The server is waitress (threads, no event loop: the reads
are blocking DB-API calls); Flask and waitress come with the extra
``cronpolicy[web]``.
"""

import ipaddress
import os
import sys

from cronpolicy import config, exitcodes
from cronpolicy.arguments import positive_number
from cronpolicy.errors import UsageError

#: waitress's worker threads: a page, its polls, and a few JSON readers.
THREADS = 6
TOKEN_ENVIRONMENT = "CRONPOLICY_SERVE_TOKEN"
#: The tables that say what scripts may do: named first when a login can write them.
POLICY_TABLES = ("script_policy", "rollout", "rollout_window", "deploy_state",
                 "service_deploy", "script_owner", "host_login")


def parse_listen(text):
    """(host, port) of HOST:PORT ("[::1]:8080" for IPv6), as a relay's address."""
    from cronpolicy.relayed import parse_address
    try:
        return parse_address(text)
    except ValueError:
        raise UsageError("--listen: HOST:PORT, like 127.0.0.1:8080 or [::1]:8080: %r"
                         % text) from None


def is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False            # a name: it may resolve anywhere


def check_writer(settings, allow_writer, warn):
    """Refuse (UsageError) a login that can write, unless ``allow_writer``:
    then say loudly what it could change."""
    from cronpolicy.tooling.web.views import writable_tables
    if settings.backend == config.SQLITE:
        path = config.sqlite_path(settings.dsn)
        writable = os.access(path, os.W_OK) or not os.path.exists(path)
        what = "the SQLite file %s is writable by this user" % path
    else:
        tables = sorted(writable_tables(settings),
                        key=lambda name: (name not in POLICY_TABLES, name))
        writable = bool(tables)
        what = "this login can write %s" % ", ".join(tables[:8]) + (
            " and %d more tables" % (len(tables) - 8) if len(tables) > 8 else "")
    if not writable:
        return
    if not allow_writer:
        raise UsageError("%s: serve through a login that can only read (GRANT "
                         "cronpolicy_reader, see docs/dbas.txt), or pass --allow-writer" % what)
    warn("WARNING: %s; serving anyway (--allow-writer). The dashboard itself writes nothing."
         % what)


def add_arguments(parsers):
    """The parser of serve (see cli.CommandParsers)."""
    add = parsers.add
    sub = add("serve", "cmd_serve")
    sub.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                     help="where to answer (default 127.0.0.1:8080; past loopback a --token "
                          "is needed)")
    sub.add_argument("--token", metavar="T", help="every request must carry it (Authorization: "
                                                  "Bearer T); default $CRONPOLICY_SERVE_TOKEN")
    sub.add_argument("--allow-writer", action="store_true",
                     help="serve even through a login that can write (refused otherwise)")
    sub.add_argument("--refresh", type=positive_number, default=5.0, metavar="SECONDS",
                     help="how often the page looks again (default 5)")


def cmd_serve(args, settings):
    try:
        import flask  # noqa: F401
        import waitress
    except ImportError as error:
        raise UsageError("cronpolicy serve needs the web extra: pip install "
                         "'cronpolicy[web]' (%s)" % error) from None
    host, port = parse_listen(args.listen)
    token = args.token or os.environ.get(TOKEN_ENVIRONMENT) or None
    if not is_loopback(host) and token is None:
        raise UsageError("--listen %s is past loopback: give a token (--token, or %s) that "
                         "every request must carry" % (args.listen, TOKEN_ENVIRONMENT))
    if token is not None and len(token) < 16:
        raise UsageError("--token: at least 16 characters")

    def warn(text):
        print("cronpolicy serve: %s" % text, file=sys.stderr, flush=True)
    check_writer(settings, args.allow_writer, warn)
    from cronpolicy.tooling.web.app import create_app
    app = create_app(settings, token=token, refresh=args.refresh)
    try:
        server = waitress.create_server(app, host=host, port=port, threads=THREADS,
                                        ident="cronpolicy", clear_untrusted_proxy_headers=True)
    except (OSError, ValueError) as error:
        raise UsageError("--listen %s: cannot listen there: %s" % (args.listen, error)) from None
    shown = "[%s]" % host if ":" in host else host
    print("cronpolicy serve: http://%s:%d/ (database %s)%s" % (
        shown, int(server.effective_port), settings.masked_dsn,
        "; a token is needed" if token else ""), flush=True)
    from cronpolicy.tooling.output import output_fault
    lost = output_fault()
    if lost is not None:
        # Where it listens (the port --listen :0 chose) is said nowhere
        # else: a server nobody can be told of does not start.
        server.close()
        warn("error: %s: not serving" % lost.fault().replace(
            "; the command ran to its end", ""))
        lost.reported = True
        return exitcodes.OUTPUT_FAILED
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return exitcodes.OK
