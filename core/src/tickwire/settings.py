"""Settings: one TOML file plus environment overrides, validated by pydantic-settings.

The top level (:class:`Settings`) is tickwire's own. Each ``[[sources]]`` entry is validated
against its provider's model (a subclass of :class:`SourceSettings`) and each ``[[sinks]]``
entry against its sink's (a subclass of :class:`SinkSettings`), both declared by the plugin.
Environment variables override the file: ``TICKWIRE_<SECTION>__<KEY>`` for tickwire's own
sections (``TICKWIRE_CANDLES__INTERVALS='["1m"]'``) and ``TICKWIRE_<PROVIDER>_<KEY>`` for a
provider's or sink's keys (``TICKWIRE_COINBASE_API_SECRET``). Secrets are
:class:`pydantic.SecretStr`: they print as ``**********`` everywhere.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from tickwire.events import INTERVAL_NS, Interval

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

DEFAULT_CONFIG_FILE = "tickwire.toml"


def parse_duration(value: Any) -> Any:
    """Read ``30d``, ``12h``, ``15m``, ``10s``, ``250ms`` or a number of seconds as a timedelta.

    Anything else is passed on for pydantic to judge (and name in its error).
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError(
                f"{value!r} is not a duration: write a number and a unit, "
                "e.g. '30d', '12h', '15m', '10s' or '250ms'"
            )
        number, unit = match.groups()
        return timedelta(seconds=float(number) * _UNIT_SECONDS[unit])
    return value


#: A duration field: ``"30d"``, ``"12h"``, ``"15m"``, ``"10s"``, ``"250ms"`` or seconds.
Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class ConfigError(Exception):
    """A configuration that cannot be used; the message names each bad key and the fix."""


class _EnvFirst(BaseSettings):
    """Base for settings whose environment variables override what the file says."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)


class SourceSettings(_EnvFirst):
    """The keys every ``[[sources]]`` entry has; providers subclass it with their own.

    A subclass sets ``model_config = SettingsConfigDict(env_prefix="TICKWIRE_<PROVIDER>_",
    extra="forbid")`` so its secrets can come from the environment, and gives ``ws_url`` and
    ``rest_url`` the provider's public endpoints as defaults.
    """

    model_config = SettingsConfigDict(extra="forbid", env_prefix="TICKWIRE_SOURCE_")

    provider: str = Field(description="Provider name, e.g. 'coinbase' or 'ccxt:binance'.")
    symbols: list[str] = Field(min_length=1, description="The provider's own symbols.")
    channels: list[Literal["trades", "quotes", "book", "candles"]] = Field(
        default=["trades"], min_length=1, description="What to stream."
    )
    ws_url: str | None = Field(default=None, description="Streaming endpoint.")
    rest_url: str | None = Field(default=None, description="REST base URL for history.")
    name: str | None = Field(
        default=None, description="A label for logs and metrics (default: the provider)."
    )
    ca_file: Path | None = Field(
        default=None,
        description="Trust this CA bundle for wss:// and https:// (private CAs, test servers).",
    )
    transport: Literal["websockets", "picows"] = Field(
        default="websockets",
        description=(
            "The websocket library under the source's connections: 'websockets' (the default) "
            "or 'picows' (pip install 'tickwire[picows]': about three times the frames per CPU "
            "second, no permessage-deflate). For providers that connect through "
            "tickwire.transport.WebSocketConnector."
        ),
    )

    @field_validator("symbols")
    @classmethod
    def _unique_symbols(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        for symbol in value:
            if not symbol.strip():
                raise ValueError("symbols must not be empty strings")
            if symbol in seen:
                raise ValueError(f"symbol {symbol!r} is listed twice")
            seen.add(symbol)
        return value

    @property
    def label(self) -> str:
        """The source's name in logs and metrics."""
        return self.name or self.provider


class SinkSettings(_EnvFirst):
    """The keys every ``[[sinks]]`` entry has; sinks subclass it with their own.

    ``batch_size`` and ``flush_interval`` size the batches the runner hands to ``write_batch``
    (group commit: a write carries what arrived while the previous one was in flight, at most
    ``batch_size``; ``flush_interval`` lets a partial batch wait for more); ``buffer`` bounds
    how many events wait for this sink (then the sources slow down, never dropping an event).
    """

    model_config = SettingsConfigDict(extra="forbid", env_prefix="TICKWIRE_SINK_")

    type: str = Field(description="Sink name, e.g. 'sqlite', 'redis', 'timescale'.")
    retention: Duration | None = Field(
        default=None, description="Keep this much history by event time (None: keep all)."
    )
    batch_size: int = Field(default=5000, ge=1, description="Most events per write.")
    flush_interval: Duration = Field(
        default=timedelta(0),
        description="Longest a partial batch waits for more events, from its oldest event "
        "(0: written as soon as the previous write returns; what arrives meanwhile goes in "
        "the next write).",
    )
    buffer: int = Field(default=200_000, ge=1, description="Most events waiting for this sink.")
    spill_dir: Path | None = Field(
        default=None,
        description="Folder of this sink's spill file (default: [runner] spill_dir).",
    )
    spill_mode: Literal["write-ahead", "overflow"] = Field(
        default="write-ahead",
        description="'write-ahead': every event is appended to the spill file before it waits "
        "in memory, so a killed process loses nothing accepted (a power cut: at most "
        "spill_fsync_interval of appends); 'overflow': only what the full buffer has no room "
        "for goes there (cheaper; a kill loses the events waiting in memory).",
    )
    spill_max_bytes: int = Field(
        default=1 << 30,
        ge=1 << 16,
        description="Largest spill file; past it the sources wait (sink.spill_full).",
    )
    spill_fsync_interval: Duration = Field(
        default=timedelta(milliseconds=100),
        description="fsync the spill file this often (0: after every append); a machine "
        "crash loses at most this much of what was appended.",
    )
    name: str | None = Field(default=None, description="A label for logs and metrics.")

    @property
    def label(self) -> str:
        """The sink's name in logs and metrics."""
        return self.name or self.type


class CandleSettings(BaseModel):
    """``[candles]``: which intervals the candle builder makes from trades."""

    model_config = ConfigDict(extra="forbid")

    intervals: list[Interval] = Field(default=["1m"], description="Intervals to build.")
    grace: Duration = Field(
        default=timedelta(seconds=2),
        description="How long after a bucket ends a late trade may still change it.",
    )
    forming_every: Duration = Field(
        default=timedelta(seconds=1),
        description="How often a still-forming candle is emitted (closed = false).",
    )
    refetch_delay: Duration = Field(
        default=timedelta(seconds=5),
        description="After a gap, how long past a bucket's close (plus grace) its candle is "
        "refetched from the provider's REST history.",
    )


class BootstrapSettings(BaseModel):
    """``[bootstrap]``: the history fetched at start-up (and by ``tickwire backfill``)."""

    model_config = ConfigDict(extra="forbid")

    days: float = Field(default=30, ge=0, description="Days of history; 0 turns it off.")
    interval: Interval = Field(default="1m", description="Candle interval to fetch.")


class MetricsSettings(BaseModel):
    """``[metrics]``: the Prometheus endpoint (off unless ``listen`` is set)."""

    model_config = ConfigDict(extra="forbid")

    listen: str | None = Field(default=None, description="host:port, e.g. 127.0.0.1:9464.")


class RunnerSettings(BaseModel):
    """``[runner]``: connection policy and shutdown."""

    model_config = ConfigDict(extra="forbid")

    backoff_initial: Duration = Field(default=timedelta(milliseconds=100))
    backoff_max: Duration = Field(default=timedelta(seconds=60))
    healthy_after: Duration = Field(
        default=timedelta(seconds=30), description="Connected this long resets the backoff."
    )
    shutdown_deadline: Duration = Field(
        default=timedelta(seconds=10), description="Longest flush of the sinks at shutdown."
    )
    deadletter: Path = Field(
        default=Path("deadletter"), description="Folder where malformed frames are kept."
    )
    deadletter_max_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    spill_dir: Path | None = Field(
        default=Path("spill"),
        description="Folder of the sinks' spill files: a full buffer overflows there instead "
        "of blocking the sources (None: no spilling).",
    )


def _default_sources() -> list[dict[str, Any]]:
    return [
        {
            "provider": "coinbase",
            "symbols": ["BTC-USD", "ETH-USD"],
            "channels": ["trades", "quotes"],
        }
    ]


def _default_sinks() -> list[dict[str, Any]]:
    return [{"type": "sqlite", "path": "tickwire.db", "retention": "30d"}]


class Settings(BaseSettings):
    """The whole configuration. Build it with :func:`load_settings` (file + environment).

    ``sources`` and ``sinks`` hold raw tables here; :func:`tickwire.Pipeline` validates each
    against its plugin's model once the plugins are loaded.
    """

    model_config = SettingsConfigDict(
        extra="forbid", env_prefix="TICKWIRE_", env_nested_delimiter="__"
    )

    sources: list[dict[str, Any]] = Field(default_factory=_default_sources)
    sinks: list[dict[str, Any]] = Field(default_factory=_default_sinks)
    candles: CandleSettings = Field(default_factory=CandleSettings)
    bootstrap: BootstrapSettings = Field(default_factory=BootstrapSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    runner: RunnerSettings = Field(default_factory=RunnerSettings)

    #: Where the settings were read from (for error messages); not a key.
    origin: ClassVar[str] = "settings"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file, turning every problem into a :class:`ConfigError` that names it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Load settings from ``path`` (default: ``./tickwire.toml`` if it exists) and the env.

    With no file at all the embedded default applies: Coinbase's public feed for BTC-USD and
    ETH-USD into SQLite ``tickwire.db``. Raises :class:`ConfigError` naming every bad key.
    """
    where = "embedded default"
    data: dict[str, Any] = {}
    if path is None and Path(DEFAULT_CONFIG_FILE).is_file():
        path = DEFAULT_CONFIG_FILE
    if path is not None:
        where = str(path)
        data = read_toml(Path(path))
    data.update(overrides)
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, where, Settings)) from None
    settings.__dict__["_origin"] = where
    return settings


def origin_of(settings: Settings) -> str:
    """Where ``settings`` came from: a file path or ``embedded default``."""
    return str(settings.__dict__.get("_origin", "settings"))


def _valid_keys(model: type[BaseModel]) -> str:
    return ", ".join(sorted(model.model_fields))


def format_validation_error(
    exc: ValidationError, where: str, model: type[BaseModel], prefix: str = ""
) -> str:
    """Turn a pydantic error into lines that name the key, the problem and what is valid."""
    lines = [f"{where}: invalid configuration"]
    for error in exc.errors(include_url=False):
        loc = (prefix + ".".join(str(part) for part in error["loc"])).rstrip(".") or "config"
        kind = error["type"]
        if kind == "extra_forbidden":
            owner = _owner_model(model, error["loc"][:-1])
            valid = f"; valid keys here: {_valid_keys(owner)}" if owner else ""
            lines.append(f"  {loc}: unknown key{valid}")
        elif kind == "missing":
            lines.append(f"  {loc}: required key is missing")
        else:
            got = error.get("input")
            hidden = isinstance(got, dict | list) or _is_secret(model, error["loc"])
            shown = "" if hidden else f" (got {got!r})"
            lines.append(f"  {loc}: {error['msg']}{shown}")
    return "\n".join(lines)


def _is_secret(model: type[BaseModel], loc: Sequence[int | str]) -> bool:
    """Whether ``loc`` points into a secret field (its value must never be shown)."""
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if not isinstance(part, str) or not fields or part not in fields:
            continue
        annotation = fields[part].annotation
        if "SecretStr" in repr(annotation) or "SecretStr" in getattr(annotation, "__name__", ""):
            return True
        current = annotation
    return False


def _owner_model(model: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return None
        annotation = field.annotation
        current = annotation if isinstance(annotation, type) else None
        if current is None:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def validate_entry(
    model: type[BaseModel], entry: Mapping[str, Any], where: str, prefix: str
) -> Any:
    """Validate one ``[[sources]]``/``[[sinks]]`` table against its plugin's model."""
    try:
        return model(**entry)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, where, model, prefix)) from None


def interval_ns(interval: str) -> int:
    """The length of ``interval`` in nanoseconds, or a ConfigError naming the valid ones."""
    try:
        return INTERVAL_NS[interval]
    except KeyError:
        raise ConfigError(
            f"unknown interval {interval!r}; valid: {', '.join(INTERVAL_NS)}"
        ) from None


__all__ = (
    "DEFAULT_CONFIG_FILE",
    "BootstrapSettings",
    "CandleSettings",
    "ConfigError",
    "Duration",
    "MetricsSettings",
    "RunnerSettings",
    "Settings",
    "SinkSettings",
    "SourceSettings",
    "format_validation_error",
    "interval_ns",
    "load_settings",
    "origin_of",
    "parse_duration",
    "read_toml",
    "validate_entry",
)
