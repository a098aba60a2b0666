"""A real pgbouncer in front of the test PostgreSQL server, for a test run.

``Pgbouncer(upstream_dsn, mode)`` writes a configuration into a private
directory, starts ``pgbouncer`` on a free loopback port (dropping to the
``nobody`` user when started as root, as pgbouncer refuses to run as root)
and ``dsn(database)`` points a DSN at it.  Its configuration is left as a
fleet would have it: in particular ``options`` is not in
``ignore_startup_parameters``, so cronpolicy must cope with pgbouncer
refusing that startup parameter.

When the ``pgbouncer`` program is missing the tests that need it fail with
one line saying how to install it under CI (``CI`` set) and are skipped
elsewhere, saying so.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

#: The pooling modes the rollout tests run through.
MODES = ("session", "transaction")

#: DSNs that lead through a pooler in transaction mode: scripts using them
#: are configured with ``watch = poll`` (see conftest.make_env).
TRANSACTION_POOLED = set()


def program():
    """The pgbouncer executable, or fail/skip the calling test saying why."""
    found = shutil.which("pgbouncer") or next(
        (path for path in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.path.exists(path)),
        None)
    if found is None:
        message = "pgbouncer is not installed (Debian: apt-get install pgbouncer)"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Pgbouncer:

    def __init__(self, upstream_dsn, mode, users=(), pool_size=20, max_client_conn=2000):
        from psycopg2.extensions import parse_dsn
        self.mode = mode
        self.upstream = parse_dsn(upstream_dsn)
        self.users = set(users) | {self.upstream.get("user") or _current_user()}
        self.pool_size = pool_size
        self.max_client_conn = max_client_conn
        self.directory = tempfile.mkdtemp(prefix="cronpolicy-pgbouncer-")
        os.chmod(self.directory, 0o755)     # readable once pgbouncer drops to nobody
        self.process = None
        self.port = None
        self.log_path = os.path.join(self.directory, "pgbouncer.log")

    def _write_files(self):
        host = self.upstream.get("host") or "127.0.0.1"
        if host.startswith("/"):
            host = "127.0.0.1"
        target = "host=%s port=%s" % (host, self.upstream.get("port") or 5432)
        if self.upstream.get("password"):
            target += " password=%s" % self.upstream["password"]
        users = os.path.join(self.directory, "users.txt")
        with open(users, "w") as handle:
            for user in sorted(self.users):
                handle.write('"%s" ""\n' % user)
        config = os.path.join(self.directory, "pgbouncer.ini")
        with open(config, "w") as handle:
            handle.write("\n".join([
                "[databases]",
                "* = " + target,
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                "listen_port = %d" % self.port,
                "unix_socket_dir =",
                "auth_type = trust",
                "auth_file = " + users,
                "admin_users = " + ", ".join(sorted(self.users)),
                "pool_mode = " + self.mode,
                "default_pool_size = %d" % self.pool_size,
                "max_db_connections = %d" % self.pool_size,
                "max_client_conn = %d" % self.max_client_conn,
                "logfile = " + self.log_path,
                "pidfile =",
                ""]))
        for path in (users, config):
            os.chmod(path, 0o644)
        open(self.log_path, "a").close()
        os.chmod(self.log_path, 0o666)
        return config

    def start(self, tries=5):
        executable = program()
        for _ in range(tries):
            self.port = _free_port()
            config = self._write_files()
            command = [executable, config]
            if os.geteuid() == 0:
                command[1:1] = ["-u", "nobody"]
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)
            if self._wait_listening(10.0):
                return self
            self.stop()     # the port was taken in between: try another
        raise RuntimeError("pgbouncer did not start; its log:\n" + self.log())

    def _wait_listening(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                time.sleep(0.05)
        return False

    def dsn(self, database, user=None):
        from psycopg2.extensions import make_dsn
        dsn = make_dsn(host="127.0.0.1", port=str(self.port), dbname=database,
                       user=user or self.upstream.get("user") or _current_user())
        if self.mode == "transaction":
            TRANSACTION_POOLED.add(dsn)
        return dsn

    def admin(self, command):
        """Rows of a pgbouncer admin console command (SHOW POOLS, ...) as dicts."""
        import psycopg2
        connection = psycopg2.connect(host="127.0.0.1", port=self.port, dbname="pgbouncer",
                                      user=self.upstream.get("user") or _current_user())
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute(command)
                names = [column.name for column in cursor.description]
                return [dict(zip(names, row)) for row in cursor.fetchall()]
        finally:
            connection.close()

    def log(self):
        try:
            with open(self.log_path, errors="replace") as handle:
                return handle.read()[-4000:]
        except OSError:
            return ""

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def close(self):
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def _current_user():
    import getpass
    return getpass.getuser()
