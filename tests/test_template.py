"""The plugin template (docs/examples/tickwire-example) works for a third party.

Copies the template out of this repository, builds a fresh virtualenv, installs tickwire core
from this checkout (``core/``, as a package: not the workspace) and the copied template with
its ``test`` extra, and runs the template's own tests there: the conformance kit against its
fake server, its golden cases, its backfill tests. Nothing else from this repository is
importable in that environment, so a pass proves the template needs only published packages.

Uses uv (with its cache) for speed; about half a minute when the cache is warm.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "docs" / "examples" / "tickwire-example"


def _uv() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, (
        f"{' '.join(cmd)} exited {done.returncode}\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}"
    )
    return done


@pytest.mark.timeout(300)
def test_template_passes_its_tests_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    plugin = tmp_path / "tickwire-example"
    shutil.copytree(
        TEMPLATE, plugin, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", ".venv")
    )
    venv = tmp_path / "venv"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VIRTUAL_ENV", "UV_PROJECT", "PYTHONPATH", "PYTEST_"))
    }
    env["UV_NO_CONFIG"] = "1"  # no uv.toml / workspace settings leak in from this checkout
    uv = _uv()
    _run([*uv, "venv", "--quiet", "--python", sys.executable, str(venv)], tmp_path, env)
    python = venv / "bin" / "python"
    _run(
        [
            *uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            str(python),
            "--no-sources",
            str(ROOT / "core"),
            f"{plugin}[test]",
        ],
        tmp_path,
        env,
    )
    # tickwire is installed, not imported from this checkout; no other tickwire package exists.
    listing = _run([*uv, "pip", "list", "--python", str(python)], tmp_path, env).stdout
    names = {line.split()[0] for line in listing.splitlines()[2:] if line.strip()}
    assert {n for n in names if n.startswith("tickwire")} == {"tickwire", "tickwire-example"}
    found = _run(
        [str(python), "-c", "import tickwire; print(tickwire.__file__)"], tmp_path, env
    ).stdout
    assert str(venv) in found, found
    done = _run([str(python), "-m", "pytest", "-q", "-p", "no:randomly"], plugin, env)
    assert " passed" in done.stdout and "failed" not in done.stdout, done.stdout
