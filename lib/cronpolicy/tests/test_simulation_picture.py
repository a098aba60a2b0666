"""simulate --svg (issue 28.4): a typical rollout, readable at 100% (no text
under 12 px, job names whole, a time axis with ticks), the panel of
stalls with kills and lost work; rendered to PNG by the browser a person
opens it in, Debian's headless chromium (README.txt's set-up installs it;
without it the render is skipped, saying so, but fails under CI)."""

import os
import re
import struct
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ElementTree

import pytest

from cronpolicy.tooling import simulation
from cronpolicy.config import Settings
from cronpolicy.tooling import simulation_picture
from cronpolicy.tooling.simulate import inputs, play
from cronpolicy.tooling.cli import main

from .test_simulation import REFERENCE

SVG = "{http://www.w3.org/2000/svg}"
CHROMIUM = "/usr/bin/chromium"


def screenshot(picture, tmp_path, width, height):
    """The PNG chromium makes of ``picture`` at 100%, ``width`` x ``height``."""
    if not os.path.exists(CHROMIUM):
        message = "%s missing: apt-get install -y chromium (README.txt, Set up)" % CHROMIUM
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    shot = tmp_path / "stalls.png"
    # Its process singleton's socket goes in a directory of TMPDIR, left
    # behind: one of its own, removed after (short: a socket's path is).
    temporary = tempfile.mkdtemp(prefix="cronpolicy-browser-")
    try:
        result = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--hide-scrollbars",
             "--user-data-dir=%s" % (tmp_path / "profile"), "--force-device-scale-factor=1",
             "--window-size=%d,%d" % (width, height), "--screenshot=%s" % shot,
             picture.as_uri()], capture_output=True, text=True, timeout=120,
            env=dict(os.environ, TMPDIR=temporary))
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    assert shot.exists(), result.stderr
    return shot.read_bytes()


def draw(tmp_path, capsys, *argv):
    picture = tmp_path / "stalls.svg"
    code = main(["simulate", REFERENCE, "--days", "1", "--rollouts", "5", "--code-share", "0.4",
                 "--svg", str(picture), *argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return picture, ElementTree.parse(picture).getroot()


def texts(root):
    return [element for element in root.iter() if element.tag == SVG + "text"]


@pytest.mark.integration
def test_the_picture_renders_to_png_and_is_readable_at_100_percent(tmp_path, capsys):
    picture, root = draw(tmp_path, capsys)
    found = texts(root)
    assert found and all(int(element.get("font-size")) >= 12 for element in found)
    words = ["".join(element.itertext()) for element in found]
    # A time axis with ticks under each strategy's timeline.
    assert sum(bool(re.fullmatch(r"\d\d:\d\d", word)) for word in words) >= 6 * 4
    # Every strategy: its title, its row of stalls, its kills and lost work.
    for name in simulation.STRATEGIES:
        assert sum(word.startswith(simulation_picture.TITLES[name] + ": stall ")
                   for word in words) == 1, name
        assert words.count(simulation_picture.SHORT[name]) == 1, name
    assert sum(word.endswith("job-min lost") for word in words) == len(simulation.STRATEGIES)
    # Job names whole: each label (wrapped or not) is "NAME on HOST" of a job.
    jobs = {"%s on %s" % (instance.name, instance.host)
            for instance in inputs.load_fleet(REFERENCE)}
    column = "%.1f" % (simulation_picture.LABEL - 8)
    labels = [word for element, word in zip(found, words) if element.get("x") == column
              and word != "the rollout" and word not in simulation_picture.SHORT.values()]
    joined, pending = [], ""
    for word in labels:
        # (a line broken at a space lost the space; one broken after '-' did not)
        pending = next((candidate for candidate in (pending + word, pending + " " + word)
                        if any(job.startswith(candidate) for job in jobs)), pending + word)
        if pending in jobs:
            joined.append(pending)
            pending = ""
    assert len(joined) >= 6 * 4 and not pending, labels
    height = int(root.get("height"))
    assert int(root.get("width")) == simulation_picture.WIDTH and height > 1000
    png = screenshot(picture, tmp_path, simulation_picture.WIDTH, height)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (simulation_picture.WIDTH, height)
    # Drawn, not blank: the same size of white compresses to a few kB.
    blank = tmp_path / "blank.svg"
    blank.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d"><rect '
                     'width="100%%" height="100%%" fill="white"/></svg>'
                     % (simulation_picture.WIDTH, height))
    assert len(png) > 10 * len(screenshot(blank, tmp_path, simulation_picture.WIDTH, height))


@pytest.mark.integration
def test_the_rollout_drawn_is_the_median_of_cronpolicys_or_the_one_asked(tmp_path, capsys):
    states, readies = play.run(inputs.load_fleet(REFERENCE), Settings(), days=1,
                                   rollouts=5, workers=1, warm_up=86400.0,
                                   strategies=("all-stop", "cronpolicy"))
    stalls = [outcome.stall for outcome in states["cronpolicy"].outcomes]
    chosen = simulation_picture.chosen_rollout(states)
    assert sorted(stalls)[2] == stalls[chosen]
    assert simulation_picture.chosen_rollout(states, readies[3]) == 3
    _, root = draw(tmp_path, capsys, "--picture-at", readies[3].isoformat(),
                   "--warm-up", "1d", "--strategies", "a,c")
    title = "".join(texts(root)[0].itertext())
    assert title.startswith("One typical rollout under each strategy: #4, ")


def test_long_names_wrap_and_nothing_is_cut():
    name = "process-job-source-IPackageTranslationsUploadJobSource on translations-1"
    lines = simulation_picture.wrap(name, 40)
    assert "".join(lines).replace(" ", "") == name.replace(" ", "")
    assert all(len(line) <= 40 for line in lines) and len(lines) == 3
    assert simulation_picture.wrap("x" * 90, 40) == ["x" * 40, "x" * 40, "x" * 10]
