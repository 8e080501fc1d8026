"""Regenerate the reference pages of docs/ from the code: ``uv run python scripts/gen_docs.py``.

* docs/plugin-hooks.md from the hookspec docstrings (tickwire.hookspecs);
* docs/configuration.md from the settings models (tickwire.settings and each installed plugin).

``--check`` exits 1 when a page is out of date (the test suite runs it).
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from datetime import timedelta
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic_settings import BaseSettings

from tickwire import hookspecs, settings
from tickwire._plugins import Plugins

DOCS = Path(__file__).parents[1] / "docs"


# ---- docstrings (reStructuredText) to Markdown -------------------------------------------

_ROLE = re.compile(r":(?:class|mod|func|meth|attr|data|exc|obj):`(~?)([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")
_PARAM = re.compile(r"^:param (\w+):\s*(.*)$")


def _role(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def rst_to_md(text: str) -> str:
    """Turn a docstring's reStructuredText into Markdown.

    Handles what tickwire's docstrings use: ``literals``, ``:role:`target``` references,
    ``::`` literal blocks (fenced), and ``:param name:`` fields (a parameter list).
    """
    lines = text.splitlines()
    out: list[str] = []
    params: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::"):
            head = line.rstrip()[:-2].rstrip()
            if head:
                out.append(_inline(head + ":"))
            i += 1
            block: list[str] = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith("    ")):
                block.append(lines[i][4:] if lines[i].startswith("    ") else "")
                i += 1
            while block and not block[0].strip():
                block.pop(0)
            while block and not block[-1].strip():
                block.pop()
            lang = "toml" if block and block[0].lstrip().startswith("[") else "python"
            out += ["", f"```{lang}", *block, "```", ""]
            continue
        match = _PARAM.match(line)
        if match:
            name, desc = match.groups()
            i += 1
            while i < len(lines) and lines[i].startswith("    "):
                desc += " " + lines[i].strip()
                i += 1
            params.append(f"- `{name}`: {_inline(desc)}")
            if i >= len(lines) or not _PARAM.match(lines[i]):
                out += ["**Parameters**", "", *params]
                params = []
            continue
        out.append(_inline(line))
        i += 1
    return "\n".join(out).strip()


def _inline(text: str) -> str:
    return _LITERAL.sub(r"`\1`", _ROLE.sub(_role, text))


# ---- the pages ----------------------------------------------------------------------------


def hooks_page() -> str:
    out = [
        "# Hook reference",
        "",
        "Generated from `core/src/tickwire/hookspecs.py` by `scripts/gen_docs.py`; do not edit.",
        "",
        rst_to_md(inspect.getdoc(hookspecs) or ""),
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
                rst_to_md(inspect.getdoc(spec) or ""),
                "",
            ]
    return "\n".join(out).rstrip() + "\n"


def _type(annotation: Any) -> str:
    """A short, readable name for a field's type (``list[str]``, ``'a' | 'b'``, ``duration``)."""
    if annotation is timedelta:
        return "duration"
    if annotation is SecretStr:
        return "secret"
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Literal:
        return " \\| ".join(f"`{a!r}`" for a in args)
    if origin in (Union, UnionType):
        return " \\| ".join(_type(a) for a in args)
    if origin is Annotated:
        return _type(args[0])
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(_type(a) for a in args)}]"
    if annotation is type(None):
        return "none"
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _value(value: Any) -> str:
    """A default as a user would write it in ``tickwire.toml``."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
            if seconds >= size and seconds % size == 0:
                return f"`{int(seconds // size)}{unit}`"
        return f"`{int(seconds * 1000)}ms`"
    if isinstance(value, Path):
        return f"`{value}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value is None:
        return "none"
    if isinstance(value, list | tuple | frozenset | set | dict):
        return f"`{json.dumps(list(value) if not isinstance(value, dict) else value)}`"
    return f"`{value}`"


def _model_table(model: type[BaseModel], skip: frozenset[str] = frozenset()) -> list[str]:
    prefix = str(model.model_config.get("env_prefix") or "")
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        if field.is_required():
            default = "required"
        elif field.default_factory is not None:
            default = _value(field.default_factory())  # type: ignore[call-arg]
        else:
            default = _value(field.default)
        meaning = _inline(field.description or "").replace("|", "\\|")
        own = model not in (settings.SourceSettings, settings.SinkSettings)
        if own and prefix and prefix != "TICKWIRE_" and issubclass(model, BaseSettings):
            env = f"`{prefix}{name.upper()}`"
            meaning = f"{meaning} Env: {env}." if meaning else f"Env: {env}."
        rows.append(f"| `{name}` | {_type(field.annotation)} | {default} | {meaning} |")
    return rows


def config_page() -> str:
    out = [
        "# Configuration reference",
        "",
        "Generated from the settings models by `scripts/gen_docs.py`; do not edit.",
        "",
        rst_to_md(inspect.getdoc(settings) or ""),
        "",
    ]
    for title, model in (
        ("[candles]", settings.CandleSettings),
        ("[bootstrap]", settings.BootstrapSettings),
        ("[metrics]", settings.MetricsSettings),
        ("[runner]", settings.RunnerSettings),
    ):
        out += [
            f"## `{title}`",
            "",
            rst_to_md(inspect.getdoc(model) or ""),
            "",
            *_model_table(model),
            "",
        ]
    out += [
        "## `[[sources]]` (every provider)",
        "",
        "Every source has these keys; its provider's section below adds its own (and may change",
        "the defaults of `ws_url` and `rest_url`). Each provider's keys can also come from the",
        "environment as `TICKWIRE_<PROVIDER>_<KEY>`.",
        "",
        *_model_table(settings.SourceSettings),
        "",
        "## `[[sinks]]` (every sink)",
        "",
        "Every sink has these keys: the runner's batching and buffering around the sink.",
        "",
        *_model_table(settings.SinkSettings),
        "",
    ]
    plugins = Plugins()
    base_source = frozenset(settings.SourceSettings.model_fields) - {"ws_url", "rest_url"}
    base_sink = frozenset(settings.SinkSettings.model_fields) - {"retention"}
    for name, info in sorted(plugins.providers.items()):
        out += [
            f'## `[[sources]] provider = "{name}"`',
            "",
            rst_to_md(inspect.getdoc(info.settings) or ""),
            "",
            *_model_table(info.settings, base_source),
            "",
        ]
    for name, sink in sorted(plugins.sinks.items()):
        out += [
            f'## `[[sinks]] type = "{name}"`',
            "",
            rst_to_md(inspect.getdoc(sink.settings) or ""),
            "",
            *_model_table(sink.settings, base_sink),
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
