"""Executors: the service -> executor interface, the real executors, and the JobRunner."""

from miner.executors import registry
from miner.executors.base import ExecContext, ExecResult, ExecutionError, Executor, canonical_json
from miner.executors.config import BackendConfig, ExecutorConfig
from miner.executors.registry import build_registry
from miner.executors.runner import JobRunner

__all__ = [
    "BackendConfig",
    "ExecContext",
    "ExecResult",
    "ExecutionError",
    "Executor",
    "ExecutorConfig",
    "JobRunner",
    "build_registry",
    "canonical_json",
    "registry",
]
