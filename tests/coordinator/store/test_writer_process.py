"""The writer process: its link to the coordinator, a crash of either side, start and stop."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import textwrap
import time
from pathlib import Path

import pytest

from coordinator.store import writer_process
from coordinator.store.sql import SqlJobStore
from coordinator.store.writer_process import FrameReader, ProcessWriter, frame
from coordinator.store.writes import Write
from core.errors import Internal, InvalidArgument, Unavailable

pytestmark = pytest.mark.timeout(60)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not reaped yet) counts as gone.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


async def _until(check, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_frames_split_and_join_at_any_byte() -> None:
    data = frame(["a", {"b": 1}]) + frame(("c", None, 2.5)) + frame(b"\x00" * 70_000)
    reader = FrameReader()
    got = []
    for i in range(0, len(data), 7):
        got += reader.feed(data[i : i + 7])
    assert got == [["a", {"b": 1}], ("c", None, 2.5), b"\x00" * 70_000]


def test_unknown_writer_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="writer"):
        SqlJobStore(f"sqlite:///{tmp_path}/x.db", writer="fork")


def test_the_module_run_by_hand_explains_itself() -> None:
    assert writer_process.main([]) == 2


async def test_killed_writer_fails_only_unanswered_writes_and_comes_back(tmp_path, make_job):
    """A write the dead writer had taken may or may not be saved: it fails (the caller retries);
    everything after it goes to a new writer process."""
    db = tmp_path / "aitbc.db"
    store = SqlJobStore(f"sqlite:///{db}", writer="process")
    await store.start()
    try:
        assert store._process is not None
        first = await store.insert_job(make_job())
        old_pid = store._process.pid
        # Another connection holds SQLite's write lock: the writer waits inside the batch.
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        stuck = asyncio.ensure_future(store.insert_job(make_job()))
        await _until(lambda: store._process._unanswered == 1)  # sent, held up by the lock
        assert not stuck.done()
        os.kill(old_pid, signal.SIGKILL)
        with pytest.raises(Unavailable, match="writer restarted"):
            await stuck
        blocker.execute("ROLLBACK")
        blocker.close()
        later = await store.insert_job(make_job())  # waits for the new writer process
        assert store._process.pid not in (0, old_pid)
        assert {j.job_id for j in await store.get_jobs([first.job_id, later.job_id])} == {
            first.job_id,
            later.job_id,
        }
    finally:
        await store.close()


async def test_writer_exits_when_the_coordinator_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from coordinator.store.sql import SqlJobStore

        async def main():
            store = SqlJobStore("sqlite:///{tmp_path}/aitbc.db", writer="process")
            await store.start()
            print(store._process.pid, flush=True)
            await asyncio.sleep(60)

        asyncio.run(main())
        """
    )
    owner = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert owner.stdout is not None
        writer_pid = int(await asyncio.wait_for(owner.stdout.readline(), 30))
        assert _alive(writer_pid)
        owner.kill()
        await owner.wait()
        await _until(lambda: not _alive(writer_pid))
    finally:
        if owner.returncode is None:
            owner.kill()
            await owner.wait()


async def test_writer_ignores_sigint_and_sigterm(tmp_path, make_job):
    """A Ctrl-C or a service manager signals the whole process group; the writer must keep
    going until the coordinator, draining, closes it."""
    store = SqlJobStore(f"sqlite:///{tmp_path}/aitbc.db", writer="process")
    await store.start()
    try:
        assert store._process is not None
        pid = store._process.pid
        os.kill(pid, signal.SIGINT)
        os.kill(pid, signal.SIGTERM)
        await store.insert_job(make_job())  # the writer ran, so both signals reached it
        assert _alive(pid)
    finally:
        await store.close()
    assert not _alive(pid)


async def test_close_sends_and_commits_what_is_queued(tmp_path, make_job):
    url = f"sqlite:///{tmp_path}/aitbc.db"
    store = SqlJobStore(url, writer="process")
    await store.start()
    jobs = [make_job() for _ in range(50)]
    writes = [asyncio.ensure_future(store.insert_job(j)) for j in jobs]
    await asyncio.sleep(0)  # every write is queued, none answered yet
    await store.close()
    assert all(w.done() and w.exception() is None for w in writes)
    again = SqlJobStore(url, writer="process")
    await again.start()
    try:
        assert len(await again.get_jobs([j.job_id for j in jobs])) == 50
    finally:
        await again.close()
    with pytest.raises(Unavailable, match="closed"):
        store._process.submit(Write("add_outcome", ({},), (2,)))  # type: ignore[union-attr]


async def test_a_write_pickle_refuses_fails_alone(tmp_path, make_job):
    store = SqlJobStore(f"sqlite:///{tmp_path}/aitbc.db", writer="process")
    await store.start()
    try:
        assert store._process is not None
        good = asyncio.ensure_future(store.insert_job(make_job()))
        bad = store._process.submit(Write("add_outcome", (lambda: None,), (2,)))
        with pytest.raises(Internal):
            await bad
        assert (await good).version == 1
    finally:
        await store.close()


async def test_a_writer_that_cannot_start_is_reported() -> None:
    writer = ProcessWriter("nosuchdb://nowhere", batch_max=8)
    with pytest.raises(Unavailable, match="exited while starting"):
        await writer.start()
