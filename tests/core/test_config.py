"""core.config: env/.env loading, types, bounds, unknown keys, errors, .env.example."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from core.config import ConfigError, load_config, render_env_example, settings
from core.server import ServerConfig


class Mode(enum.Enum):
    FAST = "fast"
    SAFE = "safe"


@dataclass(frozen=True)
class Pool:
    pool_size: int = field(default=5, metadata={"min": 1, "max": 100, "doc": "DB pool size."})


@dataclass(frozen=True)
class AppConfig:
    heartbeat_interval_s: float = field(
        default=5.0,
        metadata={"min": 1, "max": 60, "doc": "Heartbeat interval miners must keep, seconds."},
    )
    name: str = "coord"
    debug: bool = False
    data_dir: Path = Path("data")
    mode: Mode = Mode.SAFE
    log_format: Literal["json", "text"] = "json"
    tags: tuple[str, ...] = ("a", "b")
    ports: tuple[int, ...] = field(default=(), metadata={"min": 1, "max": 65535})
    redis_url: str | None = None
    retries: int | None = 3
    max_body_bytes: int = field(default=1024, metadata={"min": 1})
    signing_key_hex: str = field(
        default="",
        metadata={"env": "RECEIPT_SIGNING_KEY_HEX", "secret": True, "doc": "Ed25519 seed, hex."},
    )
    level: str = field(default="INFO", metadata={"choices": ("DEBUG", "INFO")})
    server: ServerConfig = field(default_factory=lambda: ServerConfig(grpc_port=7000))
    pool: Pool = field(default_factory=Pool, metadata={"env_prefix": "AITBC_DB_"})


@dataclass(frozen=True)
class NeedsKey:
    api_key: str = field(metadata={"secret": True, "doc": "Client API key."})
    timeout_s: float = 2.0


@dataclass(frozen=True)
class Twice:
    grpc_port: int = 1
    server: ServerConfig = field(default_factory=ServerConfig)


@dataclass(frozen=True)
class Window:
    min_s: float = 1.0
    max_s: float = 10.0

    def __post_init__(self) -> None:
        if self.min_s > self.max_s:
            raise ValueError(
                f"AITBC_MIN_S: must not exceed AITBC_MAX_S ({self.max_s}), got {self.min_s}"
            )


@dataclass
class NotFrozen:
    x: int = 1


@dataclass(frozen=True)
class BadType:
    x: list[int] = field(default_factory=list)


def load(env: dict[str, str], **kw) -> AppConfig:
    return load_config(AppConfig, env=env, env_file=None, **kw)


def test_defaults_from_empty_environment():
    cfg = load({})
    assert cfg == AppConfig()
    assert cfg.server.grpc_port == 7000  # the nested default instance is honoured
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.name = "x"  # type: ignore[misc]


def test_every_supported_type_parses():
    cfg = load(
        {
            "AITBC_HEARTBEAT_INTERVAL_S": "2.5",
            "AITBC_NAME": "  spaced  ",
            "AITBC_DEBUG": "Yes",
            "AITBC_DATA_DIR": "/var/lib/aitbc",
            "AITBC_MODE": "FAST",
            "AITBC_LOG_FORMAT": "text",
            "AITBC_TAGS": "x, y,,z ",
            "AITBC_PORTS": "80,443",
            "AITBC_REDIS_URL": "redis://127.0.0.1:6379/0",
            "AITBC_RETRIES": "",
            "AITBC_MAX_BODY_BYTES": "16_777_216",
            "RECEIPT_SIGNING_KEY_HEX": "ab" * 32,
            "AITBC_LEVEL": "DEBUG",
            "AITBC_GRPC_PORT": "0",
            "AITBC_GRPC_HOST": "0.0.0.0",
            "AITBC_DB_POOL_SIZE": "20",
            "PATH": "/usr/bin",  # not ours: ignored
        }
    )
    assert cfg.heartbeat_interval_s == 2.5
    assert cfg.name == "  spaced  "
    assert cfg.debug is True
    assert cfg.data_dir == Path("/var/lib/aitbc")
    assert cfg.mode is Mode.FAST
    assert cfg.log_format == "text"
    assert cfg.tags == ("x", "y", "z")
    assert cfg.ports == (80, 443)
    assert cfg.redis_url == "redis://127.0.0.1:6379/0"
    assert cfg.retries is None
    assert cfg.max_body_bytes == 16 * 1024 * 1024
    assert cfg.signing_key_hex == "ab" * 32
    assert cfg.server == ServerConfig(grpc_port=0, grpc_host="0.0.0.0")
    assert cfg.pool.pool_size == 20


@pytest.mark.parametrize(
    ("raw", "value"),
    [("1", True), ("0", False), ("on", True), ("OFF", False), ("true", True), ("no", False)],
)
def test_booleans(raw, value):
    assert load({"AITBC_DEBUG": raw}).debug is value


def test_all_problems_reported_at_once_with_key_value_and_expectation():
    with pytest.raises(ConfigError) as err:
        load(
            {
                "AITBC_HEARTBEAT_INTERVAL_S": "abc",
                "AITBC_DEBUG": "maybe",
                "AITBC_MODE": "turbo",
                "AITBC_LOG_FORMAT": "xml",
                "AITBC_PORTS": "80,99999",
                "AITBC_MAX_BODY_BYTES": "0",
                "AITBC_LEVEL": "TRACE",
                "AITBC_GRPC_PORT": "70000",
                "AITBC_DB_POOL_SIZE": "1.5",
                "AITBC_DATA_DIR": " ",
                "AITBC_HEARTBEAT_INTERVAL": "5",
            }
        )
    problems = err.value.problems
    assert "AITBC_HEARTBEAT_INTERVAL_S: expected a number between 1 and 60, got 'abc'" in problems
    assert (
        "AITBC_DEBUG: expected a boolean (true/false, 1/0, yes/no, on/off), got 'maybe'" in problems
    )
    assert "AITBC_MODE: expected one of fast, safe, got 'turbo'" in problems
    assert "AITBC_LOG_FORMAT: expected one of json, text, got 'xml'" in problems
    assert (
        "AITBC_PORTS: expected a comma-separated list of an integer between 1 and 65535, "
        "got '80,99999'" in problems
    )
    assert "AITBC_MAX_BODY_BYTES: expected an integer >= 1, got '0'" in problems
    assert "AITBC_LEVEL: expected one of DEBUG, INFO, got 'TRACE'" in problems
    assert "AITBC_GRPC_PORT: expected an integer between 0 and 65535, got '70000'" in problems
    assert "AITBC_DB_POOL_SIZE: expected an integer between 1 and 100, got '1.5'" in problems
    assert "AITBC_DATA_DIR: expected a path, got ' '" in problems
    assert (
        "AITBC_HEARTBEAT_INTERVAL: unknown setting (did you mean AITBC_HEARTBEAT_INTERVAL_S?)"
        in problems
    )
    assert len(problems) == 11
    assert str(err.value).startswith("invalid configuration:\n  ")


def test_float_rejects_nan_and_inf():
    for raw in ("nan", "inf"):
        with pytest.raises(ConfigError, match="AITBC_HEARTBEAT_INTERVAL_S"):
            load({"AITBC_HEARTBEAT_INTERVAL_S": raw})


def test_unknown_keys_and_allow_list():
    with pytest.raises(ConfigError, match="AITBC_MINER_SLOTS: unknown setting"):
        load({"AITBC_MINER_SLOTS": "2"})
    # Other components' prefixes, exact keys and the harness keys are tolerated.
    env = {
        "AITBC_MINER_SLOTS": "2",
        "AITBC_POOLHUB_URL": "x",
        "AITBC_TEST_POSTGRES_URL": "x",
        "AITBC_REQUIRE_SERVICES": "1",
    }
    assert load(env, allow=("AITBC_MINER_", "AITBC_POOLHUB_URL")) == AppConfig()
    # An exact allowed key is not a prefix.
    with pytest.raises(ConfigError, match="AITBC_POOLHUB_URL2"):
        load({"AITBC_POOLHUB_URL2": "x"}, allow=("AITBC_POOLHUB_URL",))


def test_required_and_secret_values_never_echoed():
    with pytest.raises(ConfigError) as err:
        load_config(NeedsKey, env={}, env_file=None)
    assert err.value.problems == ["AITBC_API_KEY: required, expected a string, not set"]
    assert load_config(NeedsKey, env={"AITBC_API_KEY": "k"}, env_file=None).api_key == "k"

    secret = "not-hex-but-very-secret-value"
    with pytest.raises(ConfigError) as err:
        load({"RECEIPT_SIGNING_KEY_HEX": secret, "AITBC_LEVEL": "nope"})
    # signing_key_hex is a plain str: it parses; the choices error names only LEVEL.
    assert secret not in str(err.value)

    @dataclass(frozen=True)
    class SecretInt:
        pin: int = field(default=0, metadata={"secret": True})

    with pytest.raises(ConfigError) as err:
        load_config(SecretInt, env={"AITBC_PIN": "12x34"}, env_file=None)
    assert err.value.problems == ["AITBC_PIN: expected an integer, got <redacted>"]


def test_env_file_is_read_and_environment_wins(tmp_path: Path):
    env_file = tmp_path / ".env"
    env_file.write_text(
        "AITBC_NAME=from-file\nAITBC_DEBUG=true\n# comment\nAITBC_REDIS_URL=\nAITBC_TYPO=1\n"
    )
    with pytest.raises(ConfigError, match="AITBC_TYPO: unknown setting"):
        load_config(AppConfig, env={}, env_file=env_file)
    env_file.write_text("AITBC_NAME=from-file\nAITBC_DEBUG=true\nAITBC_REDIS_URL=\n")
    cfg = load_config(AppConfig, env={"AITBC_NAME": "from-env"}, env_file=env_file)
    assert (cfg.name, cfg.debug, cfg.redis_url) == ("from-env", True, None)
    # A missing .env is fine (the default ".env" usually does not exist in production).
    assert load_config(AppConfig, env={}, env_file=tmp_path / "absent.env") == AppConfig()


def test_os_environ_is_the_default_source(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.chdir(tmp_path)  # the default env_file=".env" is relative to the cwd
    (tmp_path / ".env").write_text("AITBC_GRPC_PORT=6000\nAITBC_GRPC_HOST=::\n")
    monkeypatch.setenv("AITBC_GRPC_PORT", "6001")
    cfg = load_config(ServerConfig)
    assert (cfg.grpc_port, cfg.grpc_host) == (6001, "::")


def test_cross_field_check_in_post_init_becomes_config_error():
    with pytest.raises(ConfigError) as err:
        load_config(Window, env={"AITBC_MIN_S": "20"}, env_file=None)
    assert err.value.problems == ["AITBC_MIN_S: must not exceed AITBC_MAX_S (10.0), got 20.0"]


def test_definition_errors_are_type_errors():
    with pytest.raises(TypeError, match="defined twice"):
        load_config(Twice, env={}, env_file=None)
    with pytest.raises(TypeError, match="frozen"):
        load_config(NotFrozen, env={}, env_file=None)
    with pytest.raises(TypeError, match="unsupported"):
        load_config(BadType, env={"AITBC_X": "1"}, env_file=None)


def test_render_env_example_documents_and_round_trips():
    text = render_env_example(AppConfig)
    assert (
        "# Heartbeat interval miners must keep, seconds.\n"
        "# Expected: a number between 1 and 60.\n"
        "# AITBC_HEARTBEAT_INTERVAL_S=5\n" in text
    )
    assert "# Ed25519 seed, hex.\n# RECEIPT_SIGNING_KEY_HEX=\n" in text
    assert "# AITBC_GRPC_PORT=7000\n" in text and "# AITBC_DB_POOL_SIZE=5\n" in text
    assert "# AITBC_MODE=safe\n" in text and "# AITBC_TAGS=a,b\n" in text
    keys = [s.key for s in settings(AppConfig)]
    for key in keys:
        assert f"# {key}=" in text
    # Uncommenting every line reproduces the defaults.
    env = {}
    for line in text.splitlines():
        if line.startswith("# ") and "=" in line and line[2:].split("=")[0] in keys:
            key, _, value = line[2:].partition("=")
            env[key] = value
    assert set(env) == set(keys)
    assert load(env) == AppConfig()


def test_render_marks_required_keys_uncommented():
    text = render_env_example(NeedsKey)
    assert "# Client API key.\n# Required.\nAITBC_API_KEY=\n" in text
    assert "# AITBC_TIMEOUT_S=2\n" in text


def test_server_config_example_is_complete():
    text = render_env_example(ServerConfig)
    for f in dataclasses.fields(ServerConfig):
        assert f"# AITBC_{f.name.upper()}=" in text
        assert f.metadata.get("doc"), f"{f.name} lacks a doc"
    assert "# AITBC_GRPC_MAX_MESSAGE_BYTES=16777216\n" in text
