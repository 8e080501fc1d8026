"""Secrets never reach the output, and a bad config is one line naming the key.

Every command a user runs is run for real with a config that holds a distinct secret in every
secret field of every provider and sink (and some in the environment), pointed at closed ports
so that every connection fails and its error is printed; then all of stdout and stderr is
searched for each secret.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))
from conftest import clean_env, tickwire_cmd

#: A closed port on this machine: every connection to it is refused at once.
CLOSED = "127.0.0.1:1"

SECRETS_IN_FILE = {
    "coinbase.api_key": "tw-sec-coinbase-key-3f9a",
    "coinbase.api_secret": "dHctc2VjLWNvaW5iYXNlLXNlY3JldC03N2Mx",  # base64, as Coinbase shows it
    "coinbase.passphrase": "tw-sec-coinbase-pass-0be2",
    "finnhub.api_key": "tw-sec-finnhub-key-91d4",
    "ig.api_key": "tw-sec-ig-key-5a0e",
    "ig.username": "tw-sec-ig-user-c2f8",
    "timescale.dsn": "tw-sec-pg-pass-8d31",
    "redis.password": "tw-sec-redis-pass-4e6b",
    "nats.token": "tw-sec-nats-token-a19f",
}
SECRETS_IN_ENV = {"TICKWIRE_IG_PASSWORD": "tw-sec-ig-pass-env-6c02"}
#: What the base64 secret decodes to must not show either.
ALL_SECRETS = [*SECRETS_IN_FILE.values(), *SECRETS_IN_ENV.values(), "tw-sec-coinbase-secret-77c1"]


def _config(tmp_path: Path) -> Path:
    s = SECRETS_IN_FILE
    path = tmp_path / "secrets.toml"
    path.write_text(f"""
[bootstrap]
days = 0

[[sources]]
provider = "coinbase"
symbols = ["BTC-USD"]
ws_url = "ws://{CLOSED}"
rest_url = "http://{CLOSED}"
api_key = "{s["coinbase.api_key"]}"
api_secret = "{s["coinbase.api_secret"]}"
passphrase = "{s["coinbase.passphrase"]}"

[[sources]]
provider = "finnhub"
symbols = ["AAPL"]
ws_url = "ws://{CLOSED}"
rest_url = "http://{CLOSED}/api/v1"
api_key = "{s["finnhub.api_key"]}"

[[sources]]
provider = "ig"
symbols = ["CS.D.EURUSD.CFD.IP"]
rest_url = "http://{CLOSED}/gateway/deal"
api_key = "{s["ig.api_key"]}"
username = "{s["ig.username"]}"

[[sinks]]
type = "timescale"
dsn = "postgresql://app:{s["timescale.dsn"]}@{CLOSED}/test"

[[sinks]]
type = "redis"
url = "redis://{CLOSED}/0"
password = "{s["redis.password"]}"

[[sinks]]
type = "nats"
url = "nats://{CLOSED}"
token = "{s["nats.token"]}"
""")
    return path


def _tickwire(
    *args: str, timeout: float = 90, env: dict[str, str] = SECRETS_IN_ENV
) -> subprocess.CompletedProcess[str]:
    """Run the installed command with ``env`` added (by default the environment's secrets);
    it must not crash."""
    result = subprocess.run(
        tickwire_cmd(*args),
        capture_output=True,
        text=True,
        env=clean_env(**env),
        timeout=timeout,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result


def _run(*args: str) -> str:
    """All the output of one command."""
    result = _tickwire(*args)
    return result.stdout + result.stderr


def _assert_no_secret(output: str) -> None:
    leaked = [s for s in ALL_SECRETS if s in output]
    assert not leaked, f"secrets in the output: {leaked}\n{output[-3000:]}"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_check_names_every_failed_connection_and_no_secret(tmp_path: Path, log_format: str) -> None:
    config = _config(tmp_path)
    out = _run("--log-format", log_format, "check", "-c", str(config), "--timeout", "5")
    _assert_no_secret(out)
    # It did try everything (so the secrets were in use, not merely never read).
    for label in ("coinbase", "finnhub", "ig", "timescale", "redis", "nats"):
        assert label in out
    assert out.count("FAILED") >= 6, out


def test_run_with_every_connection_failing_logs_no_secret(tmp_path: Path) -> None:
    config = _config(tmp_path)
    out = _run(
        "--log-format", "json", "--log-level", "debug", "run", "-c", str(config), "--duration", "4"
    )
    _assert_no_secret(out)
    assert "connection.failed" in out and "sink.retry" in out


def test_plugins_shows_no_secret(tmp_path: Path) -> None:
    # ``plugins`` reads no config file: the secret it could leak is the environment's.
    out = _run("plugins")
    _assert_no_secret(out)
    assert "coinbase" in out


@pytest.mark.parametrize(
    ("table", "line", "key"),
    [
        ('[[sources]]\nprovider = "finnhub"\nsymbols = ["AAPL"]\n', 'api_key = ["{s}"]', "api_key"),
        (
            '[[sinks]]\ntype = "redis"\n',
            'password = {{ value = "{s}" }}',
            "password",
        ),
        ('[[sinks]]\ntype = "timescale"\n', 'dsn = "{s}"', "dsn"),
        (  # a required key missing: the error must not echo the table's other values
            '[[sources]]\nprovider = "ig"\nsymbols = ["CS.D.EURUSD.CFD.IP"]\nusername = "u"\n',
            'api_key = "{s}"',
            "password",
        ),
    ],
)
def test_a_bad_value_beside_or_in_a_secret_is_one_line_naming_the_key_and_not_the_secret(
    tmp_path: Path, table: str, line: str, key: str
) -> None:
    secret = "tw-sec-bad-value-e57d"
    path = tmp_path / "bad.toml"
    path.write_text(table + line.format(s=secret) + "\n")
    result = _tickwire("run", "-c", str(path), timeout=60, env={})
    assert result.returncode == 2, result.stderr
    assert secret not in result.stdout + result.stderr
    errors = [ln for ln in result.stderr.splitlines() if key in ln]
    assert errors, result.stderr
