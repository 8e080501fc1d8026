"""Regenerate the reference pages of docs/ from the code: ``uv run python scripts/gen_docs.py``.

* docs/plugin-hooks.md from the hookspec docstrings (tickwire.hookspecs);
* docs/configuration.md from the settings models (tickwire.settings and each installed plugin).

``--check`` exits 1 when a page is out of date (the test suite runs it).
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tickwire import hookspecs, settings
from tickwire._plugins import Plugins

DOCS = Path(__file__).parents[1] / "docs"


def hooks_page() -> str:
    out = [
        "# Hook reference",
        "",
        "Generated from `core/src/tickwire/hookspecs.py` by `scripts/gen_docs.py`; do not edit.",
        "",
        inspect.getdoc(hookspecs) or "",
        "",
    ]
    for group, names in (
        ("Discovery hooks", hookspecs.DISCOVERY_HOOKS),
        ("Stage hooks", hookspecs.STAGE_HOOKS),
    ):
        out += [f"# {group}", ""]
        for name in names:
            spec = getattr(hookspecs, name)
            sig = str(inspect.signature(spec)).replace("'", "")
            out += [
                f"## `{name}`",
                "",
                "```python",
                f"def {name}{sig}",
                "```",
                "",
                inspect.getdoc(spec) or "",
                "",
            ]
    return "\n".join(out).rstrip() + "\n"


def _type(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "").replace("|", "\\|")


def _model_table(model: type[BaseModel], skip: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        default = (
            "required"
            if field.is_required()
            else repr(
                field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
            )
        )
        rows.append(
            f"| `{name}` | {_type(field.annotation)} | `{default}` | {field.description or ''} |"
        )
    return rows


def config_page() -> str:
    out = [
        "# Configuration reference",
        "",
        "Generated from the settings models by `scripts/gen_docs.py`; do not edit.",
        "",
        inspect.getdoc(settings) or "",
        "",
    ]
    for title, model in (
        ("[candles]", settings.CandleSettings),
        ("[bootstrap]", settings.BootstrapSettings),
        ("[metrics]", settings.MetricsSettings),
        ("[runner]", settings.RunnerSettings),
    ):
        out += [f"## `{title}`", "", inspect.getdoc(model) or "", "", *_model_table(model), ""]
    out += ["## `[[sources]]` (every provider)", "", *_model_table(settings.SourceSettings), ""]
    out += ["## `[[sinks]]` (every sink)", "", *_model_table(settings.SinkSettings), ""]
    plugins = Plugins()
    base_source = set(settings.SourceSettings.model_fields)
    base_sink = set(settings.SinkSettings.model_fields)
    for name, info in sorted(plugins.providers.items()):
        out += [
            f'## `[[sources]] provider = "{name}"`',
            "",
            inspect.getdoc(info.settings) or "",
            "",
            *_model_table(info.settings, base_source - {"ws_url", "rest_url"}),
            "",
        ]
    for name, sink in sorted(plugins.sinks.items()):
        out += [
            f'## `[[sinks]] type = "{name}"`',
            "",
            inspect.getdoc(sink.settings) or "",
            "",
            *_model_table(sink.settings, base_sink - {"retention"}),
            "",
        ]
    return "\n".join(out).rstrip() + "\n"


PAGES = {"plugin-hooks.md": hooks_page}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    pages = dict(PAGES)
    if "--all" in argv or not check:
        pages["configuration.md"] = config_page
    stale = []
    for filename, build in pages.items():
        text = build()
        path = DOCS / filename
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(filename)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)}; run: uv run python scripts/gen_docs.py")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
