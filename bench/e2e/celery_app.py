"""Celery 5 app for the bench.e2e comparison: one trivial echo task, Redis broker and results.

Settings come from BENCH_CELERY_* variables so that the client and the worker node agree:
BENCH_CELERY_REDIS (URL), BENCH_CELERY_PREFIX (global key prefix isolating this run's keys),
BENCH_CELERY_READY (a file the worker node creates once it consumes).
"""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery
from celery.signals import worker_ready

REDIS = os.environ.get("BENCH_CELERY_REDIS", "redis://127.0.0.1:6379/0")
PREFIX = os.environ.get("BENCH_CELERY_PREFIX", "aitbc-bench-celery:")

app = Celery("bench_e2e")


def configure(redis_url: str, prefix: str) -> None:
    """Point the app at `redis_url` with every key under `prefix` (before first use)."""
    app.conf.update(
        broker_url=redis_url,
        result_backend=redis_url,
        broker_transport_options={"global_keyprefix": prefix},
        result_backend_transport_options={"global_keyprefix": prefix},
    )


configure(REDIS, PREFIX)
app.conf.update(
    broker_connection_retry_on_startup=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_expires=3600,
    worker_send_task_events=False,
    task_send_sent_event=False,
)


@app.task(name="bench.echo")
def echo(value):
    return value


@worker_ready.connect
def _ready(**_: object) -> None:
    path = os.environ.get("BENCH_CELERY_READY")
    if path:
        Path(path).touch()
