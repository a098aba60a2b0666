"""Named SQL statements: one home for each statement, one file per backend.

``postgresql.sql`` and ``sqlite.sql`` beside this module hold every
statement the gate (and the few raw statements of the tooling) send; each is
introduced by a ``-- name: NAME`` line.  Read once per process, on first use.
"""

import os

_loaded = {}


def parse(text):
    """{name: statement} from a file of ``-- name: NAME`` sections.  Comment
    lines are for readers and are not sent (drivers would parse parameter
    markers inside them)."""
    statements, name, lines = {}, None, []

    def close():
        body = "\n".join(lines).strip()
        if name is not None:
            if not body or name in statements:
                raise ValueError("query %r is empty or defined twice" % name)
            statements[name] = body
    for line in text.splitlines():
        if line.startswith("-- name:"):
            close()
            name, lines = line[len("-- name:"):].strip(), []
        elif name is not None and not line.lstrip().startswith("--"):
            lines.append(line)
    close()
    return statements


def queries(backend):
    """The statements of ``backend`` ("postgresql" or "sqlite")."""
    found = _loaded.get(backend)
    if found is None:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), backend + ".sql")
        with open(path, encoding="utf-8") as sql_file:
            found = _loaded[backend] = parse(sql_file.read())
    return found
