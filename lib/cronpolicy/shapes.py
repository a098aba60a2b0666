"""Named tuple classes made cheaply, for the start path.

``collections.namedtuple`` compiles a ``__new__`` for every class it makes
(eval of generated source); a cron job's start makes a dozen such classes
(its row shapes, the verdict...) and that compiling alone cost more than
reading the policy.  ``shape`` makes the same kind of class without
compiling anything: a tuple subclass with a field per position, keyword
arguments and defaults, ``_fields``, ``_field_defaults``, ``_make``,
``_replace`` and ``_asdict``, and namedtuple's repr.  Instances are plain
tuples underneath, so they compare, hash, unpack and pickle the same way.
"""

import operator
import sys

try:
    # What collections.namedtuple's fields are: a descriptor written in C,
    # a third of the cost of a property around operator.itemgetter to make
    # (a start makes about 130 fields).
    from _collections import _tuplegetter
except ImportError:         # not CPython
    def _tuplegetter(index, doc):
        return property(operator.itemgetter(index), doc=doc)


def shape(typename, field_names, defaults=(), module=None):
    """A named tuple class, as collections.namedtuple(typename, field_names,
    defaults=defaults) makes it."""
    if isinstance(field_names, str):
        field_names = field_names.replace(",", " ").split()
    fields = tuple(field_names)
    defaults = tuple(defaults)
    if len(defaults) > len(fields):
        raise TypeError("got more default values than fields")
    field_defaults = dict(zip(fields[len(fields) - len(defaults):], defaults))
    positions = {field: index for index, field in enumerate(fields)}
    first_default = len(fields) - len(defaults)
    count = len(fields)
    tuple_new = tuple.__new__

    def __new__(cls, *args, **kwargs):
        if len(args) > count:
            raise TypeError("%s() takes %d positional arguments but %d were given"
                            % (typename, count, len(args)))
        if not kwargs:
            if len(args) == count:
                return tuple_new(cls, args)
            if len(args) >= first_default:     # the rest from the defaults: the common case
                return tuple_new(cls, args + defaults[len(args) - first_default:])
        values = list(args) + [_MISSING] * (count - len(args))
        for key, value in kwargs.items():
            index = positions.get(key)
            if index is None:
                raise TypeError("%s() got an unexpected keyword argument %r" % (typename, key))
            if index < len(args):
                raise TypeError("%s() got multiple values for argument %r" % (typename, key))
            values[index] = value
        for index, value in enumerate(values):
            if value is _MISSING:
                field = fields[index]
                if field not in field_defaults:
                    raise TypeError("%s() missing required argument: %r" % (typename, field))
                values[index] = field_defaults[field]
        return tuple_new(cls, values)

    def _make(cls, iterable):
        made = tuple_new(cls, iterable)
        if len(made) != count:
            raise TypeError("Expected %d arguments, got %d" % (count, len(made)))
        return made

    def _replace(self, **changes):
        values = list(self)
        for key, value in changes.items():
            index = positions.get(key)
            if index is None:
                raise ValueError("Got unexpected field names: %r" % [key])
            values[index] = value
        return tuple_new(type(self), values)

    def _asdict(self):
        return dict(zip(fields, self))

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, ", ".join(
            "%s=%r" % pair for pair in zip(fields, self)))

    def __getnewargs__(self):
        return tuple(self)

    namespace = {
        "__slots__": (), "__doc__": "%s(%s)" % (typename, ", ".join(fields)),
        "_fields": fields, "_field_defaults": field_defaults, "__new__": __new__,
        "_make": classmethod(_make), "_replace": _replace, "_asdict": _asdict,
        "__repr__": __repr__, "__getnewargs__": __getnewargs__,
        "__match_args__": fields,
    }
    for index, field in enumerate(fields):
        namespace[field] = _tuplegetter(index, "Alias for field number %d" % index)
    made = type(typename, (tuple,), namespace)
    made.__module__ = module or sys._getframe(1).f_globals.get("__name__", "__main__")
    return made


class _Missing:
    def __repr__(self):
        return "<missing>"


_MISSING = _Missing()
