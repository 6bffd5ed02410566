"""The example sweep runs on the README's install: no setting of this repository's own
tests (pytest-timeout's ``timeout``, ``-p pytester``) may reach it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_example_sims_has_its_own_settings_and_no_config_warning():
    # -p no:timeout stands for the README's install, which has no pytest-timeout; a
    # setting it does not know would be a PytestConfigWarning, made an error here.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-p",
            "no:timeout",
            "-p",
            "no:cacheprovider",
            "-W",
            "error::pytest.PytestConfigWarning",
            "example_sims/",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Unknown config option" not in output
    assert f"rootdir: {ROOT / 'example_sims'}" in output
    assert "configfile: pytest.ini" in output
    assert "collected 122 items" in output
