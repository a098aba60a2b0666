"""Where the DSN comes from, config file errors, and passwords kept out of sight."""

import pytest

from cronpolicy.config import Settings, default_dsn, mask_dsn, scrub
from cronpolicy.errors import ConfigError


@pytest.fixture
def config_file(tmp_path):
    def write(text):
        path = tmp_path / "cronpolicy.conf"
        path.write_text(text)
        return str(path)
    return write


def test_dsn_order_option_env_file_default(config_file, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    path = config_file("[cronpolicy]\ndsn = postgresql://file@db/x\n")
    env = {"CRONPOLICY_CONFIG": path, "CRONPOLICY_DSN": "postgresql://env@db/x"}
    assert Settings.load(dsn="postgresql://opt@db/x", environ=env).dsn == "postgresql://opt@db/x"
    loaded = Settings.load(environ=env)
    assert (loaded.dsn, loaded.dsn_source) == ("postgresql://env@db/x", "CRONPOLICY_DSN")
    loaded = Settings.load(environ={"CRONPOLICY_CONFIG": path})
    assert loaded.dsn == "postgresql://file@db/x" and loaded.dsn_source.startswith("config file")
    loaded = Settings.load(environ={"CRONPOLICY_CONFIG": config_file("[cronpolicy]\n")})
    assert loaded.dsn == default_dsn() and loaded.dsn_source == "default"
    assert loaded.dsn == "sqlite:///" + str(tmp_path / "state" / "cronpolicy" / "cronpolicy.sqlite")
    assert loaded.backend == "sqlite"


def test_config_file_knobs(config_file):
    path = config_file("[cronpolicy]\ncutoff_margin = 5m\nestimate_quantile = 0.9\n"
                       "estimate_runs = 50\nconnect_timeout = 2s\nhost = web7\n")
    loaded = Settings.load(environ={"CRONPOLICY_CONFIG": path})
    assert (loaded.cutoff_margin, loaded.estimate_quantile, loaded.estimate_runs,
            loaded.connect_timeout, loaded.host) == (300, 0.9, 50, 2, "web7")


@pytest.mark.parametrize("text, fragment", [
    ("not ini at all", "cannot read config file"),
    ("[other]\ndsn = x\n", "no [cronpolicy] section"),
    ("[cronpolicy]\ndns = postgresql://x\n", "unknown key 'dns'"),
    ("[cronpolicy]\ncutoff_margin = soon\n", "bad value for cutoff_margin"),
    ("[cronpolicy]\nestimate_quantile = 1.5\n", "estimate_quantile"),
    ("[cronpolicy]\ndsn = mysql://x\n", "unrecognised DSN"),
    ("[cronpolicy]\nwatch = notify\n", "bad value for watch: must be one of listen or poll"),
])
def test_bad_config_file_is_one_line_naming_the_file(config_file, text, fragment):
    path = config_file(text)
    with pytest.raises(ConfigError) as error:
        Settings.load(environ={"CRONPOLICY_CONFIG": path})
    message = str(error.value)
    assert fragment in message and path in message and "\n" not in message


def test_watch_is_listen_unless_the_file_or_the_environment_says_poll(config_file):
    assert Settings.load(environ={"CRONPOLICY_CONFIG": config_file("[cronpolicy]\n")}).watch \
        == "listen"
    polling = config_file("[cronpolicy]\nwatch = Poll\n")
    assert Settings.load(environ={"CRONPOLICY_CONFIG": polling}).watch == "poll"
    assert Settings.load(environ={"CRONPOLICY_CONFIG": polling,
                                  "CRONPOLICY_WATCH": "listen"}).watch == "listen"
    with pytest.raises(ConfigError, match="^CRONPOLICY_WATCH must be one of listen or poll"):
        Settings.load(environ={"CRONPOLICY_CONFIG": polling, "CRONPOLICY_WATCH": "push"})


def test_missing_config_named_by_env_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.load(environ={"CRONPOLICY_CONFIG": str(tmp_path / "nope.conf")})


@pytest.mark.parametrize("dsn, masked", [
    ("postgresql://cron:s3cret@db:5432/x", "postgresql://cron:***@db:5432/x"),
    ("host=db user=cron password=s3cret dbname=x", "host=db user=cron password=*** dbname=x"),
    ("host=db password='a b' dbname=x", "host=db password=*** dbname=x"),
    ("postgresql://cron@db/x", "postgresql://cron@db/x"),
])
def test_mask_dsn(dsn, masked):
    assert mask_dsn(dsn) == masked


def test_scrub_removes_the_password_from_driver_messages():
    dsn = "postgresql://cron:s3cret@db/x"
    assert "s3cret" not in scrub('password authentication failed for "s3cret"', dsn)


def test_the_state_directory_holds_the_default_database(config_file, tmp_path, monkeypatch):
    """CRONPOLICY_STATE_DIR moved the cache, spool and locks but not the
    default SQLite file."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))      # no earlier file there
    state = tmp_path / "elsewhere"
    loaded = Settings.load(environ={"CRONPOLICY_CONFIG": config_file("[cronpolicy]\n"),
                                    "CRONPOLICY_STATE_DIR": str(state)})
    assert loaded.dsn == "sqlite:///%s/cronpolicy.sqlite" % state


def test_a_relative_sqlite_path_is_refused(config_file):
    """It quietly made a database in whatever the working directory was."""
    with pytest.raises(ConfigError) as refused:
        Settings.load(dsn="sqlite:///relative.sqlite",
                      environ={"CRONPOLICY_CONFIG": config_file("[cronpolicy]\n")})
    assert "relative path" in str(refused.value)


def test_the_default_database_an_earlier_version_made_stays_in_use(config_file, tmp_path,
                                                                   monkeypatch):
    """Moving the default file with state_dir must not swap a host's policy
    for a new, empty database."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    earlier = tmp_path / "xdg" / "cronpolicy" / "cronpolicy.sqlite"
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(b"")
    environ = {"CRONPOLICY_CONFIG": config_file("[cronpolicy]\n"),
               "CRONPOLICY_STATE_DIR": str(tmp_path / "elsewhere")}
    assert Settings.load(environ=environ).dsn == "sqlite:///%s" % earlier
    moved = tmp_path / "elsewhere" / "cronpolicy.sqlite"
    moved.parent.mkdir()
    moved.write_bytes(b"")
    assert Settings.load(environ=environ).dsn == "sqlite:///%s" % moved
