"""An acknowledged SQLite write survives SIGKILL of the process that made it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path

from coordinator.domain.model import JobState
from coordinator.store.sql import SqlJobStore

_REPO = Path(__file__).resolve().parents[3]
_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from coordinator.domain.model import Constraints, Job, JobState
    from coordinator.store.sql import SqlJobStore

    async def main(url):
        store = SqlJobStore(url)
        await store.start()
        job = Job("job-durable", "c", "whisper", {"n": 1}, Constraints(), 60, 60, 1.5)
        await store.insert_job(job)
        job.state = JobState.ASSIGNED
        assert await store.update_job(job, 1)
        print("acked", flush=True)
        await asyncio.sleep(3600)  # killed here, the store never closed

    asyncio.run(main(sys.argv[1]))
    """
)


async def test_acknowledged_write_survives_sigkill(tmp_path: Path):
    url = f"sqlite:///{tmp_path}/state/aitbc.db"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
        url,
        stdout=asyncio.subprocess.PIPE,
        cwd=_REPO,
    )
    try:
        line = await asyncio.wait_for(child.stdout.readline(), 45)
        assert line.strip() == b"acked"
    finally:
        if child.returncode is None:
            os.kill(child.pid, signal.SIGKILL)
        await child.wait()
    assert child.returncode == -signal.SIGKILL

    store = SqlJobStore(url)
    await store.start()
    try:
        job = await store.get_job("job-durable")
        assert job is not None
        assert (job.state, job.version, job.parameters) == (JobState.ASSIGNED, 2, {"n": 1})
    finally:
        await store.close()
