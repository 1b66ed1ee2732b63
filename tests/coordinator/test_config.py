"""The coordinator's configuration: documented, validated at start-up, errors name the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from coordinator.config import CoordinatorConfig
from coordinator.main import OTHER_COMPONENTS
from core.config import ConfigError, load_config, render_env_example

ROOT = Path(__file__).resolve().parents[2]


def test_env_example_is_current():
    committed = (ROOT / "deploy" / "coordinator.env.example").read_text()
    assert committed == render_env_example(CoordinatorConfig), (
        "run: aitbc-coordinator --print-env-example > deploy/coordinator.env.example"
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"AITBC_GRPC_PORT": "abc"}, "AITBC_GRPC_PORT"),
        ({"AITBC_HEARTBEAT_INTERVAL_S": "0"}, "AITBC_HEARTBEAT_INTERVAL_S"),
        ({"AITBC_RATE_LIMITS": "submit=fast"}, "AITBC_RATE_LIMITS"),
        ({"AITBC_SERVICES": "ffmpeg,Not A Service"}, "AITBC_SERVICES"),
        ({"AITBC_HEARTBEAT_INTERVL_S": "5"}, "AITBC_HEARTBEAT_INTERVL_S"),  # a typo is not ignored
        ({"AITBC_LOG_LEVEL": "LOUD"}, "AITBC_LOG_LEVEL"),
        ({"AITBC_PREFETCH_PER_SLOT": "17"}, "AITBC_PREFETCH_PER_SLOT"),
        ({"AITBC_PREFETCH_MAX_JOB_MS": "5"}, "AITBC_PREFETCH_MAX_JOB_MS"),
    ],
)
def test_bad_values_name_the_key(env, named):
    with pytest.raises(ConfigError) as exc:
        load_config(CoordinatorConfig, env=env, env_file=None, allow=OTHER_COMPONENTS)
    assert named in str(exc.value)


def test_malformed_keys_are_named_without_echoing_the_secret():
    from coordinator.auth import parse_keys

    with pytest.raises(ValueError) as exc:
        parse_keys("alice=tooshort-x", "client", name="AITBC_CLIENT_KEYS")
    assert "AITBC_CLIENT_KEYS" in str(exc.value) and "tooshort" not in str(exc.value)
    with pytest.raises(ValueError) as exc:
        parse_keys("alice=long-enough-secret-123:short", "client", name="AITBC_CLIENT_KEYS")
    assert "HMAC secret" in str(exc.value) and "long-enough" not in str(exc.value)


def test_entry_point_fails_fast_naming_the_key(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "coordinator.main"],
        env={"PATH": "/usr/bin:/bin", "AITBC_GRPC_PORT": "nope", "AITBC_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "AITBC_GRPC_PORT" in proc.stderr


def test_prefetch_settings_reach_the_domain():
    cfg = load_config(
        CoordinatorConfig,
        env={"AITBC_PREFETCH_PER_SLOT": "2", "AITBC_PREFETCH_MAX_JOB_MS": "250"},
        env_file=None,
        allow=OTHER_COMPONENTS,
    )
    settings = cfg.settings()
    assert (settings.prefetch_per_slot, settings.prefetch_max_job_s) == (2, 0.25)
    assert settings.stage_max_wait_s == 0.5
