"""The package as users install and run it: one version, its metadata, its
changelog, and no warnings (issue 30.4, 30.5)."""

import ast
import functools
import os
import re
import subprocess
import sys

import pytest

import cronpolicy
from cronpolicy import exitcodes
from cronpolicy.schema import SCHEMA_VERSION

PACKAGE = os.path.dirname(os.path.abspath(cronpolicy.__file__))
#: The top of the checkout, when the tests run from one (else None: the
#: checks of files the wheel does not ship are skipped, saying so).
CHECKOUT = next((path for path in (os.path.join(PACKAGE, os.pardir, os.pardir), os.curdir)
                 if os.path.exists(os.path.join(path, "pyproject.toml"))
                 and os.path.exists(os.path.join(path, "CHANGELOG.txt"))), None)
needs_checkout = pytest.mark.skipif(
    CHECKOUT is None, reason="pyproject.toml and CHANGELOG.txt are in a checkout, not the wheel")


@functools.lru_cache(maxsize=None)
def parsed(path):
    """The syntax tree of the module at ``path``, parsed once for the tests
    of this file that each read the whole package."""
    with open(path, encoding="utf-8") as handle:
        return ast.parse(handle.read(), path)


def checkout_file(name):
    with open(os.path.join(CHECKOUT, name), encoding="utf-8") as handle:
        return handle.read()


def cronpolicy_command(*argv, env=None, warnings_are_errors=True):
    """``python [-W error] -m cronpolicy ARGV`` as a real process."""
    flags = ["-W", "error"] if warnings_are_errors else []
    return subprocess.run([sys.executable, *flags, "-m", "cronpolicy", *argv],
                          capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.integration
def test_version_is_one_string_in_one_place():
    assert re.match(r"^\d+\.\d+\.\d+$", cronpolicy.__version__)
    result = cronpolicy_command("--version")
    assert result.returncode == exitcodes.OK, result.stderr
    assert result.stdout == "cronpolicy %s (schema %d, json format 1)\n" % (
        cronpolicy.__version__, SCHEMA_VERSION)
    from importlib import metadata
    assert metadata.version("cronpolicy") == cronpolicy.__version__   # the installed metadata


@needs_checkout
def test_the_wheel_ships_every_package():
    """setup.py lists its packages by hand: one left out (the simulate
    package, when simulate.py became one) is missing from every wheel while
    every test of the checkout passes."""
    listed = re.findall(r'^\s+"(cronpolicy[\w.]*)",$', checkout_file("setup.py"), re.MULTILINE)
    found = set()
    for folder, _, files in os.walk(PACKAGE):
        relative = os.path.relpath(folder, PACKAGE)
        if "__init__.py" in files:
            found.add("cronpolicy" if relative == os.curdir
                      else "cronpolicy." + relative.replace(os.sep, "."))
    assert found - set(listed) == set()


@needs_checkout
def test_the_wheel_ships_every_file_of_the_package():
    """A file beside the modules that is not a module (the tests' crontabs,
    the skewed host's sitecustomize.py in a folder that is no package) is
    shipped only if package_data names it: one left out passes every test
    of an editable checkout and fails the suite of an installed package."""
    import fnmatch
    tree = ast.parse(checkout_file("setup.py"))
    [package_data] = [ast.literal_eval(keyword.value) for node in ast.walk(tree)
                      if isinstance(node, ast.Call) for keyword in node.keywords
                      if keyword.arg == "package_data"]
    source = os.path.join(CHECKOUT, "lib", "cronpolicy")     # (not an installed copy's)
    left_out = []
    for folder, folders, files in os.walk(source):
        folders[:] = [name for name in folders if name != "__pycache__"]
        for name in files:
            path = os.path.relpath(os.path.join(folder, name), source)
            owner = os.path.dirname(path)
            while owner and not os.path.exists(os.path.join(source, owner, "__init__.py")):
                owner = os.path.dirname(owner)
            if name.endswith(".py") and owner == os.path.dirname(path) or name.endswith(".pyc"):
                continue            # a module of its package
            package = "cronpolicy" + ("." + owner.replace(os.sep, ".") if owner else "")
            inside = os.path.relpath(path, owner) if owner else path
            if not any(fnmatch.fnmatch(inside, pattern) for pattern in package_data.get(package, ())):
                left_out.append(path)
    assert left_out == []


@needs_checkout
def test_the_changelog_names_this_release_and_its_schema_version_first():
    changelog = checkout_file("CHANGELOG.txt")
    releases = re.findall(r"^(\d+\.\d+\.\d+)\b.*?schemas? (?:\d+ to )?(\d+)\s*$", changelog,
                          re.MULTILINE)
    assert releases, "no release headings in CHANGELOG.txt"
    assert releases[0] == (cronpolicy.__version__, str(SCHEMA_VERSION)), (
        "bump __version__ and CHANGELOG.txt together; its newest entry must name the schema "
        "version this code needs")


@needs_checkout
def test_metadata_has_one_home_and_the_license_file_says_what_it_declares():
    pyproject = checkout_file("pyproject.toml")
    assert re.search(r'^license = "MIT"$', pyproject, re.MULTILINE)
    assert checkout_file("LICENSE").startswith("MIT License")
    assert 'version = {attr = "cronpolicy.__version__"}' in pyproject
    setup_cfg = checkout_file("setup.cfg")
    assert "[metadata]" not in setup_cfg and "[options" not in setup_cfg, (
        "metadata is in pyproject.toml only")


@needs_checkout
def test_readme_names_every_dependency():
    """README's "Dependencies:" sentence against pyproject.toml's lists."""
    pyproject = checkout_file("pyproject.toml")
    declared = re.findall(r'^\s+"([A-Za-z][\w.-]*)', pyproject.split("dependencies = [")[1]
                          .split("[project.scripts]")[0], re.MULTILINE)
    assert "cronsim" in declared and "pytest" in declared
    readme = " ".join(checkout_file("README.txt").split()).lower()
    sentence = readme[readme.index("dependencies: "):]
    sentence = sentence[:sentence.index(" for the tests.")]
    for name in declared:
        word = {"psycopg2-binary": "psycopg2"}.get(name.lower(), name.lower())
        assert word in sentence, name


def test_the_web_extra_stays_out_of_the_plain_install_and_the_other_modules():
    """Issue 31.2: Flask and waitress come only with cronpolicy[web] (the
    installed metadata says so), and only cronpolicy.tooling.web imports them."""
    from importlib import metadata
    plain = [line for line in metadata.requires("cronpolicy") or [] if "extra ==" not in line]
    assert plain and not [line for line in plain if re.match(r"(?i)(flask|waitress)\b", line)]
    for folder, _, files in os.walk(PACKAGE):
        if os.path.join("tooling", "web") in folder or os.sep + "tests" in folder:
            continue
        for name in (name for name in files if name.endswith(".py")):
            tree = parsed(os.path.join(folder, name))
            imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                        if isinstance(node, ast.Import) for alias in node.names} | {
                (node.module or "").split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom)}
            assert not imported & {"flask", "waitress", "werkzeug", "jinja2"}, name


@needs_checkout
def test_no_merge_leftovers_in_the_manual():
    """No conflict marker line and no .orig/.rej copy among README.txt,
    CHANGELOG.txt and docs/ (a merge left CHANGELOG's '=======' and a stale
    docs/dbas.txt.orig)."""
    names = ["README.txt", "CHANGELOG.txt"] + [os.path.join("docs", name) for name in
                                               os.listdir(os.path.join(CHECKOUT, "docs"))]
    assert not [name for name in names if name.endswith((".orig", ".rej"))]
    for name in (name for name in names if name.endswith(".txt")):
        markers = [line for line in checkout_file(name).splitlines()
                   if re.match(r"(<{7} |={7}$|>{7} )", line)]
        assert not markers, (name, markers)


#: re functions whose count/maxsplit/flags became keyword-only in spirit:
#: Python 3.13 warns when they are passed positionally.
_POSITIONAL_LIMIT = {"split": 2, "sub": 3, "subn": 3}


def test_no_re_call_passes_count_or_flags_by_position():
    """Python 3.13 deprecates re.split(pattern, text, 1) and re.sub's
    positional count (crontab/lines.py warned 18,606 times in one run)."""
    found = []
    for folder, _, files in os.walk(PACKAGE):
        for filename in files:
            if not filename.endswith(".py"):
                continue
            path = os.path.join(folder, filename)
            for node in ast.walk(parsed(path)):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and isinstance(node.func.value, ast.Name) and node.func.value.id == "re"
                        and len(node.args) > _POSITIONAL_LIMIT.get(node.func.attr, 99)):
                    found.append("%s:%d" % (os.path.relpath(path, PACKAGE), node.lineno))
    assert not found


@pytest.mark.integration
def test_no_warnings_under_w_error(tmp_path):
    """The package imported whole, and commands that read a crontab, the
    database and print metrics, under ``python -W error``: a warning would be
    a traceback."""
    modules = sorted(
        "cronpolicy." + os.path.relpath(os.path.join(folder, name), PACKAGE)[:-3]
        .replace(os.sep, ".").replace(".__init__", "")
        for folder, _, files in os.walk(PACKAGE) if "tests" not in folder
        for name in files if name.endswith(".py") and name != "__main__.py")
    result = subprocess.run([sys.executable, "-W", "error", "-c",
                             "import importlib, sys\nfor m in sys.argv[1:]: "
                             "importlib.import_module(m)", *modules],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    crontab = tmp_path / "crontab"
    crontab.write_text("*/5 * * * * /usr/bin/foo --bar\n@daily cd /srv && ./report.py\n")
    (tmp_path / "cronpolicy.conf").write_text("[cronpolicy]\n")
    env = dict(os.environ, HOME=str(tmp_path), CRONPOLICY_CONFIG=str(tmp_path / "cronpolicy.conf"),
               CRONPOLICY_STATE_DIR=str(tmp_path / "state"),
               CRONPOLICY_LOCK_DIR=str(tmp_path / "locks"), CRONPOLICY_HOST="web1")
    env.pop("CRONPOLICY_DSN", None)
    for argv in (["--help"], ["crontab", "wrap", str(crontab)], ["crontab", "names",
                                                                  str(crontab)],
                 ["schema", "upgrade"], ["status"], ["metrics"], ["history", "--json"],
                 ["overdue", "--all"]):
        result = cronpolicy_command(*argv, env=env)
        assert result.returncode in (exitcodes.OK, exitcodes.OVERDUE), (argv, result.stderr)
        assert "Warning" not in result.stderr and "Traceback" not in result.stderr, (
            argv, result.stderr)
    result = subprocess.run([sys.executable, "-W", "error", "-m", "cronpolicy", "run", "job",
                             "--", "true"], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0 and result.stderr == "", result.stderr
