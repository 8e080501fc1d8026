"""The documentation site builds (``mkdocs build --strict``) and covers what it must.

Strict mode turns every warning into a failure: a broken link or anchor, a page missing from the
nav, a template file the tutorial includes (pymdownx.snippets with ``check_paths``) that moved.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

#: Every plugin folder and the docs page that documents it.
PAGES = {
    "plugins/coinbase": "providers/coinbase.md",
    "plugins/finnhub": "providers/finnhub.md",
    "plugins/ig": "providers/ig.md",
    "plugins/ccxtpro": "providers/ccxt.md",
    "plugins/sinks/sqlite": "sinks/sqlite.md",
    "plugins/sinks/redis": "sinks/redis.md",
    "plugins/sinks/timescale": "sinks/timescale.md",
    "plugins/sinks/nats": "sinks/nats.md",
}


def _need(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        reason = f"{module} is not installed (it is in the root dev group: uv sync --all-packages)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.mark.timeout(180)
def test_site_builds_in_strict_mode(tmp_path: Path) -> None:
    _need("mkdocs")
    _need("material")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-5000:]
    for page in ("index", "concepts", "configuration", "plugin-hooks", "writing-plugins"):
        assert (site / f"{page}.html").is_file(), page
    # The tutorial shows the template's real code (included at build time, never copied).
    tutorial = (site / "writing-plugins.html").read_text(encoding="utf-8")
    assert "ExampleNormalizer" in tutorial and "drop_connections" in tutorial
    # Nothing is fetched from the network by the built pages (it builds and reads offline).
    for html in site.rglob("*.html"):
        text = html.read_text(encoding="utf-8")
        assert '<script src="http' not in text, f"{html.name} loads a remote script"
        assert "fonts.googleapis.com" not in text, f"{html.name} loads remote fonts"


def test_every_plugin_has_a_page() -> None:
    folders = {
        str(p.parent.relative_to(ROOT))
        for p in (
            *ROOT.glob("plugins/*/pyproject.toml"),
            *ROOT.glob("plugins/sinks/*/pyproject.toml"),
        )
    }
    assert folders <= set(PAGES), f"plugins without a docs page: {sorted(folders - set(PAGES))}"
    for folder, page in PAGES.items():
        text = (DOCS / page).read_text(encoding="utf-8")
        assert f"{folder}/README.md" in text, f"{page} must point at {folder}/README.md"


def test_root_readme_links_the_plugin_guide() -> None:
    assert "(docs/writing-plugins.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_screenshots_are_pngs() -> None:
    shots = sorted((DOCS / "screenshots").glob("*.png"))
    assert len(shots) >= 2
    for shot in shots:
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", shot.name


def test_configuration_reference_is_current() -> None:
    """docs/configuration.md is generated from every installed plugin's settings model."""
    for module in (
        "tickwire_coinbase",
        "tickwire_finnhub",
        "tickwire_ig",
        "tickwire_ccxtpro",
        "tickwire_sqlite",
        "tickwire_redis",
        "tickwire_timescale",
        "tickwire_nats",
    ):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed: the page lists every plugin's settings")
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_docs.py"), "--check", "--all"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
