"""The house as a reader finds it (issue 29): each package's docstring lists
its modules, one line each, and no two modules import each other.

README keeps no hand-kept list of modules: the packages' own docstrings are
the layout, and these tests keep them true."""

import ast
import importlib
import pathlib

import pytest

import cronpolicy

ROOT = pathlib.Path(cronpolicy.__file__).parent
#: The packages whose docstring lists their modules (the tests list none).
PACKAGES = ["cronpolicy", "cronpolicy.store", "cronpolicy.tooling", "cronpolicy.tooling.crontab",
            "cronpolicy.tooling.web", "cronpolicy.tooling.simulate"]


def _listed(package):
    """The first word of each indented line of the docstring's Modules section."""
    doc = importlib.import_module(package).__doc__ or ""
    lines = doc.splitlines()
    start = next((index for index, line in enumerate(lines) if line.startswith("Modules")),
                 None)
    assert start is not None, "%s's docstring has no Modules section" % package
    found = []
    for line in lines[start + 1:]:
        if line.startswith("    ") and line.strip():
            found.append(line.split()[0])
        elif line.strip() and found:
            break
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_lists_its_modules(package):
    folder = ROOT.joinpath(*package.split(".")[1:])
    modules = {path.stem for path in folder.glob("*.py") if path.stem != "__init__"}
    packages = {path.parent.name for path in folder.glob("*/__init__.py")}
    listed = _listed(package)
    assert len(listed) == len(set(listed)), "listed twice in %s: %s" % (package, listed)
    assert modules - set(listed) == set(), "not listed in %s's docstring" % package
    assert set(listed) - modules - packages == set(), "listed in %s but not there" % package


def _imports():
    """{module: the cronpolicy modules it imports, at any level of its code}."""
    paths = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if "tests" in parts:
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        paths[name] = path
    graph = {}
    for name, path in paths.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for alias in node.names:
                    whole = node.module + "." + alias.name
                    found.add(whole if whole in paths else node.module)
        # (A package may load its own modules when asked: that is no circle.)
        graph[name] = {other for other in found if other in paths and other != name
                       and not (path.name == "__init__.py"
                                and other.startswith(name + "."))}
    return graph


def test_no_two_modules_import_each_other():
    """Not at the top, not inside a function: `cronpolicy run` and the
    command imported each other's modules, and so did crontab wrap and
    schedule import."""
    graph = _imports()
    assert graph["cronpolicy.tooling.cli"], "the import graph is empty: the test reads nothing"
    circles = []
    state = {}

    def visit(name, trail):
        state[name] = "open"
        for other in sorted(graph[name]):
            if state.get(other) == "open":
                circles.append(trail[trail.index(other):] + [other])
            elif other not in state:
                visit(other, trail + [other])
        state[name] = "done"
    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert circles == [], circles
