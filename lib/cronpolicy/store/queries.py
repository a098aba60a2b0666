"""Named SQL statements (see cronpolicy.store): kept here too for the
tooling that imports them from this module."""

from cronpolicy.store import parse, queries  # noqa: F401
