"""The layout of cronpolicy's package; its metadata is in pyproject.toml.

The top-level schema/ folder is the DBAs' copy of the SQL patches. It is
mapped into the package as ``cronpolicy.schema_sql`` so that a plain
``pip install .`` ships the very same files that ``cronpolicy schema
upgrade`` applies.
"""

from setuptools import setup

setup(
    package_dir={
        "": "lib",
        "cronpolicy.schema_sql": "schema",
        "cronpolicy.schema_sql.sqlite": "schema/sqlite",
    },
    packages=[
        "cronpolicy",
        "cronpolicy.store",
        "cronpolicy.tooling",
        "cronpolicy.tooling.crontab",
        "cronpolicy.tooling.simulate",
        "cronpolicy.tooling.web",
        "cronpolicy.tests",
        "cronpolicy.schema_sql",
        "cronpolicy.schema_sql.sqlite",
    ],
    package_data={
        "cronpolicy.store": ["*.sql"],
        # Everything `cronpolicy serve` serves: nothing comes from the internet.
        "cronpolicy.tooling.web": ["templates/*.html", "static/*"],
        "cronpolicy.schema_sql": ["*.sql"],
        "cronpolicy.schema_sql.sqlite": ["*.sql"],
        # Real crontabs for the crontab wrap tests (their SOURCES.txt says whose),
        # and deploy slot's answers before its speed-ups (test_slot_reference).
        "cronpolicy.tests": ["data/crontabs/SOURCES.txt", "data/crontabs/cron.d/*",
                             "data/crontabs/etc/*", "data/crontabs/user/*",
                             "data/slots-reference.json",
                             # On PYTHONPATH for processes of a host whose clock lies.
                             "skewed_host/sitecustomize.py"],
    },
    # The manual page, generated from the parser (`cronpolicy man`; a test
    # keeps this copy in step): <prefix>/share/man/man1, where man finds it.
    data_files=[("share/man/man1", ["man/cronpolicy.1"])],
)
