"""Celery 5 apps for the bench.e2e comparison: one trivial echo task, Redis broker and results.

The worker node (`celery -A bench.e2e.celery_app worker`) takes its settings from BENCH_CELERY_*
variables: BENCH_CELERY_REDIS (URL), BENCH_CELERY_PREFIX (global key prefix isolating this run's
keys), BENCH_CELERY_READY (a file the worker node creates once it consumes). The benchmark's
client makes an app of its own per run (make_app): an app caches its broker and backend on first
use, and each run may use another Redis server.
"""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery
from celery.signals import worker_ready

ECHO = "bench.echo"


def echo(value):
    return value


def make_app(redis_url: str, prefix: str) -> Celery:
    """An app on `redis_url` with every key under `prefix`, and the echo task."""
    app = Celery("bench_e2e")
    app.conf.update(
        broker_url=redis_url,
        result_backend=redis_url,
        broker_transport_options={"global_keyprefix": prefix},
        result_backend_transport_options={"global_keyprefix": prefix},
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=3600,
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    app.task(name=ECHO)(echo)
    return app


app = make_app(
    os.environ.get("BENCH_CELERY_REDIS", "redis://127.0.0.1:6379/0"),
    os.environ.get("BENCH_CELERY_PREFIX", "aitbc-bench-celery:"),
)


@worker_ready.connect
def _ready(**_: object) -> None:
    path = os.environ.get("BENCH_CELERY_READY")
    if path:
        Path(path).touch()
