"""bench speed's second Albumentations peer (AlbumentationsX in its own environment), through a subprocess:
the wiring with a fake peer interpreter, and the stand-alone peer script run by this interpreter."""

from __future__ import annotations

import sys

import pytest

from synthiqa.benchmarks.speed import SpeedConfig, run_speed_benchmark, summary_lines
from synthiqa.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(peer, only=("gaussian_blur", "darken")):
    return SpeedConfig(size=(64, 48), batch=2, repeats=1, only=only, threads=1, peer_python=peer)


def _fake_peer(tmp_path, body):
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\ncat > /dev/null\n{body}\n")
    script.chmod(0o755)
    return str(script)


def test_fake_peer_fills_the_albumentationsx_column(tmp_path):
    peer = _fake_peer(tmp_path, """echo '{"version": "9.9-fake", "rates": {"gaussian_blur": 10.0}}'""")
    result = run_speed_benchmark(_config(peer))
    rows = {r.name: r for r in result.rows}
    assert rows["gaussian_blur"].albumentationsx == 10.0
    assert rows["gaussian_blur"].ratio_albumentationsx == pytest.approx(rows["gaussian_blur"].synthiqa / 10)
    assert rows["darken"].albumentationsx is None  # the peer did not time it
    assert result.environment["albumentationsx"] == "9.9-fake"
    ratio = rows["gaussian_blur"].ratio_albumentationsx
    assert result.to_dict()["geomean_ratio_albumentationsx"] == pytest.approx(ratio)
    assert any("synthiqa/albumentationsx" in line for line in summary_lines(result))


def test_without_a_peer_the_summary_says_so():
    result = run_speed_benchmark(_config(None, only=("darken",)))
    assert result.rows[0].albumentationsx is None
    assert any("AlbumentationsX: not timed" in line for line in summary_lines(result))


def test_a_failing_or_missing_peer_is_a_one_line_error(tmp_path):
    with pytest.raises(ConfigError, match="the peer failed: no albumentationsx here"):
        run_speed_benchmark(_config(_fake_peer(tmp_path, "echo 'no albumentationsx here' >&2; exit 3")))
    with pytest.raises(ConfigError, match="no such interpreter"):
        run_speed_benchmark(_config(str(tmp_path / "missing" / "python")))


def test_the_peer_script_runs_with_another_interpreter():
    pytest.importorskip("albumentations")
    result = run_speed_benchmark(_config(sys.executable))  # this environment's Albumentations as the peer
    rows = {r.name: r for r in result.rows}
    assert rows["gaussian_blur"].albumentationsx > 0 and rows["darken"].albumentationsx > 0
    assert result.environment["albumentationsx"] == result.environment["albumentations"]
