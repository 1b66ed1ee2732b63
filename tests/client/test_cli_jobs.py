"""`aitbc jobs ...` through Typer's runner against a real coordinator and a protocol miner."""

from __future__ import annotations

import hashlib
import json
import threading

from aitbc.coordinator.v1 import job_pb2 as job_pb
from aitbc.coordinator.v1 import miner_service_pb2 as miner_pb

from client.sdk import Client

from .conftest import one_line_error, serve_bytes


def _json(result) -> dict:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def test_submit_human_and_json(cli):
    r = cli(
        "jobs", "submit", "echo",
        "--param", "n=3", "--param", "name=world", "--param", 'obj={"a": [1, 2]}',
        "--param", "nan=NaN", "--gpu", "A100", "--gpu", "H100", "--region", "eu-west",
        "--max-price", "0.5", "--priority", "7", "--ttl", "120", "--json",
    )  # fmt: skip
    job = _json(r)
    assert job["job_id"].startswith("job_") and job["state"] == "JOB_STATE_QUEUED"
    assert job["payload"] == {
        "service": "echo",
        "parameters": {"n": 3, "name": "world", "obj": {"a": [1, 2]}, "nan": "NaN"},
    }
    c = job["constraints"]
    assert c["gpu_names"] == ["A100", "H100"] and c["region"] == "eu-west"
    assert c["max_price"] == "0.5" and c["priority"] == 7 and job["ttl_seconds"] == 120
    r = cli("jobs", "submit", "echo", "--params-json", '{"a": 1, "b": "x"}', "--param", "b=y")
    assert r.exit_code == 0, r.stderr
    assert "QUEUED" in r.stdout and "echo" in r.stdout and "job_" in r.stdout
    assert "waiting" in r.stdout  # no miner: the panel says why it waits


def test_submit_params_file_and_idempotency(cli, tmp_path):
    f = tmp_path / "p.json"
    f.write_text('{"prompt": "a cat", "steps": 20}')
    args = ("jobs", "submit", "echo", "--params-file", str(f), "--idempotency-key", "k1", "--json")
    first, again = _json(cli(*args)), _json(cli(*args))
    assert first["payload"]["parameters"] == {"prompt": "a cat", "steps": 20}
    assert again["job_id"] == first["job_id"]


def test_usage_errors_exit_2_with_one_line(cli, tmp_path):
    for args, needle in (
        (("--param", "novalue"), "--param: expected KEY=VALUE"),
        (("--params-json", "[1]"), "--params-json: must be a JSON object"),
        (("--params-json", "{bad"), "--params-json: not valid JSON"),
        (("--params-json", "{}", "--params-file", "x"), "exclusive"),
        (("--params-file", str(tmp_path / "missing.json")), "--params-file: cannot read"),
    ):
        r = cli("jobs", "submit", "echo", *args)
        assert r.exit_code == 2, (args, r.stdout, r.stderr)
        assert needle in one_line_error(r)
    r = cli("jobs", "list", "--state", "finished")
    assert r.exit_code == 2 and "state: unknown value 'finished'" in one_line_error(r)


def test_get_list_with_state_filter_and_cancel(cli):
    a = _json(cli("jobs", "submit", "echo", "--json"))["job_id"]
    b = _json(cli("jobs", "submit", "echo", "--json"))["job_id"]
    canceled = _json(cli("jobs", "cancel", b, "--reason", "changed my mind", "--json"))
    assert canceled["state"] == "JOB_STATE_CANCELED"
    got = _json(cli("jobs", "get", a, "--json"))
    assert got["job_id"] == a and got["state"] == "JOB_STATE_QUEUED"
    r = cli("jobs", "get", a)
    assert r.exit_code == 0 and a in r.stdout and "QUEUED" in r.stdout
    listed = _json(cli("jobs", "list", "--state", "canceled", "--json"))
    assert [j["job_id"] for j in listed["jobs"]] == [b]
    listed = _json(cli("jobs", "list", "--state", "queued", "--json"))
    assert [j["job_id"] for j in listed["jobs"]] == [a]
    page = _json(cli("jobs", "list", "--page-size", "1", "--json"))
    assert [j["job_id"] for j in page["jobs"]] == [b] and page["next_page_token"]
    everything = _json(cli("jobs", "list", "--page-size", "1", "--all", "--json"))
    assert [j["job_id"] for j in everything["jobs"]] == [b, a]
    r = cli("jobs", "list")
    assert r.exit_code == 0 and a in r.stdout and b in r.stdout and "CANCELED" in r.stdout
    r = cli("jobs", "cancel", b)  # already terminal
    assert r.exit_code == 1 and b in one_line_error(r)
    # bob cannot see alice's job
    r = cli("jobs", "get", a, who="bob")
    assert r.exit_code == 1 and "not found" in one_line_error(r)


def test_result_before_and_after_completion(coord, cli, tmp_path):
    miner = coord.miner()
    job_id = _json(cli("jobs", "submit", "echo", "--param", "x=1", "--json"))["job_id"]
    a = coord.assignment(miner)
    r = cli("jobs", "result", job_id)
    assert r.exit_code == 1 and "has no result yet (state ASSIGNED)" in one_line_error(r)
    r = cli("jobs", "result", job_id, "--json")
    assert r.exit_code == 1 and json.loads(r.stdout)["state"] == "JOB_STATE_ASSIGNED"
    coord.call(miner.started, a)
    coord.call(miner.result, a, {"answer": 42, "words": ["a", "b"]})
    assert coord.ack(miner).accepted
    r = cli("jobs", "result", job_id)
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout) == {"answer": 42, "words": ["a", "b"]}
    doc = _json(cli("jobs", "result", job_id, "--json"))
    assert doc["state"] == "JOB_STATE_COMPLETED" and doc["result"]["inline"]["answer"] == 42
    out = tmp_path / "result.json"
    r = cli("jobs", "result", job_id, "--output", str(out))
    assert r.exit_code == 0 and json.loads(out.read_text())["answer"] == 42


def _deliver_artifact(coord, miner, url: str, data: bytes, sha: str | None = None) -> str:
    a = coord.assignment(miner)
    coord.call(miner.started, a)
    artifact = job_pb.ArtifactRef(
        url=url,
        size_bytes=len(data),
        sha256=sha or hashlib.sha256(data).hexdigest(),
        content_type="video/mp4",
    )
    delivery = miner_pb.JobResultDelivery(
        lease_id=a.lease_id, job_id=a.job.job_id, result=job_pb.JobResult(artifact=artifact)
    )
    coord.send(miner, result=delivery)
    assert coord.ack(miner).accepted
    return a.job.job_id


def test_artifact_result_is_downloaded_and_checked(coord, cli, tmp_path):
    data = b"\x00\x01frame-bytes" * 1000
    miner = coord.miner(slots=2)
    with serve_bytes(data) as base:
        cli("jobs", "submit", "echo", "--json")
        good = _deliver_artifact(coord, miner, f"{base}/out.mp4", data)
        cli("jobs", "submit", "echo", "--json")
        bad = _deliver_artifact(coord, miner, f"{base}/out.mp4", data, sha="ab" * 32)
        r = cli("jobs", "result", good)
        assert r.exit_code == 0 and f"{base}/out.mp4" in r.stdout
        assert hashlib.sha256(data).hexdigest() in r.stdout and f"{len(data)} bytes" in r.stdout
        out = tmp_path / "video.mp4"
        r = cli("jobs", "result", good, "--output", str(out), "--json")
        saved = _json(r)["saved"]
        assert out.read_bytes() == data and saved["sha256_verified"] is True
        out2 = tmp_path / "tampered.mp4"
        r = cli("jobs", "result", bad, "--output", str(out2))
        assert r.exit_code == 1 and "sha256 mismatch" in one_line_error(r)
        assert not out2.exists() and list(tmp_path.glob(".tampered*")) == []


def _spy_subscription(monkeypatch) -> threading.Event:
    """Set when the CLI's watch stream has delivered its snapshot (the server subscribed)."""
    subscribed = threading.Event()
    original = Client.watch_job

    def watch_job(self, job_id, **kw):
        for item in original(self, job_id, **kw):
            subscribed.set()
            yield item

    monkeypatch.setattr(Client, "watch_job", watch_job)
    return subscribed


async def _run_a_while(coord, miner, a) -> None:
    """The miner starts and the job runs long enough for RUNNING to be written (a job that
    ends within the start delay goes from ASSIGNED straight to its end)."""
    import asyncio

    running = asyncio.Event()
    job_id = a.job.job_id
    coord.app.coordinator.book.listen(
        lambda _old, new: new.job_id == job_id and new.state.value == "RUNNING" and running.set()
    )
    miner.started(a)
    await asyncio.wait_for(running.wait(), 10)


def test_watch_json_lines_to_completion(coord, cli, monkeypatch):
    miner = coord.miner()
    job_id = _json(cli("jobs", "submit", "echo", "--json"))["job_id"]
    a = coord.assignment(miner)
    subscribed = _spy_subscription(monkeypatch)

    async def work():
        import asyncio

        await asyncio.to_thread(subscribed.wait, 10)
        await _run_a_while(coord, miner, a)
        for i in (1, 2):
            miner.send(
                progress=miner_pb.JobProgressUpdate(
                    lease_id=a.lease_id, job_id=job_id, fraction=i / 4, message=f"step {i}"
                )
            )
        miner.result(a, "done")

    fut = coord.loop.spawn(work())
    r = cli("jobs", "watch", job_id, "--json")
    fut.result(10)
    assert r.exit_code == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    events = [(e["event"], e["job"]["state"]) for e in lines]
    assert events[0] == ("snapshot", "JOB_STATE_ASSIGNED")
    assert ("state", "JOB_STATE_RUNNING") in events
    assert events[-1] == ("state", "JOB_STATE_COMPLETED")
    progress = [e["job"]["progress"] for e in lines if e["event"] == "progress"]
    assert [p["message"] for p in progress] == ["step 1", "step 2"]
    assert progress[-1]["fraction"] == 0.5


def test_watch_human_exits_1_when_the_job_fails(coord, cli, monkeypatch):
    miner = coord.miner()
    job_id = _json(cli("jobs", "submit", "echo", "--json"))["job_id"]
    a = coord.assignment(miner)
    subscribed = _spy_subscription(monkeypatch)

    async def work():
        import asyncio

        await asyncio.to_thread(subscribed.wait, 10)
        await _run_a_while(coord, miner, a)
        miner.send(  # miner text that looks like Rich markup is shown, not interpreted
            progress=miner_pb.JobProgressUpdate(
                lease_id=a.lease_id, job_id=job_id, fraction=0.1, message="[/red] decoding"
            )
        )
        miner.fail(a, "bad_input", "cannot decode [bold]the input", retryable=False)

    fut = coord.loop.spawn(work())
    # As on a terminal: the live bar renders while events arrive (not only at the end).
    r = cli("jobs", "watch", job_id, extra_env={"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"})
    fut.result(10)
    assert r.exit_code == 1
    assert "decoding" in r.stdout  # the progress message was on the bar
    assert "FAILED" in r.stdout and "RUNNING" in r.stdout
    err = one_line_error(r)
    assert f"job {job_id} FAILED: bad_input: cannot decode [bold]the input" in err
    assert "cannot decode [bold]the input" in r.stdout  # the panel prints it literally


def test_submit_wait_follows_until_done(coord, cli):
    miner = coord.miner()

    async def work():
        a = (await miner.next("assignment")).assignment
        miner.started(a)
        miner.result(a, [1, 2, 3])

    fut = coord.loop.spawn(work())
    r = cli("jobs", "submit", "echo", "--wait", "--json")
    fut.result(10)
    assert r.exit_code == 0, r.stderr
    last = json.loads(r.stdout.splitlines()[-1])
    assert last["job"]["state"] == "JOB_STATE_COMPLETED"
    assert last["job"]["result"]["inline"] == [1, 2, 3]
    r = cli("jobs", "watch", last["job"]["job_id"])  # already terminal: snapshot only
    assert r.exit_code == 0 and "COMPLETED" in r.stdout


def test_api_errors_are_one_line(cli, coord):
    r = cli("jobs", "list", who=None)
    assert r.exit_code == 1 and "x-api-key" in one_line_error(r).lower()
    r = cli("jobs", "list", "--api-key", "wrong-key-0123456789")
    assert r.exit_code == 1 and one_line_error(r) == "aitbc: error: unknown API key"
    r = cli("jobs", "submit", "no-such-service", "--json")
    assert r.exit_code == 1 and "payload.service" in one_line_error(r)
    assert r.stdout == ""
    r = cli("jobs", "get", "job_" + "0" * 32, "--endpoint", "127.0.0.1:1")
    assert r.exit_code == 1
    assert "cannot reach the coordinator at 127.0.0.1:1" in one_line_error(r)
    r = cli("jobs", "get", "nope")
    assert r.exit_code == 1 and "job_id" in one_line_error(r)


def test_submit_many_reports_each_line(cli, tmp_path):
    f = tmp_path / "jobs.jsonl"
    f.write_text(
        '{"service": "echo", "parameters": {"i": 1}}\n'
        "\n"
        '{"service": "no-such-service"}\n'
        '{"service": "echo", "constraints": {"priority": 2}, "idempotency_key": "m-1"}\n'
    )
    r = cli("jobs", "submit-many", str(f), "--json")
    assert r.exit_code == 1, (r.stdout, r.stderr)
    results = json.loads(r.stdout)["results"]
    assert [x["line"] for x in results] == [1, 3, 4]
    assert results[0]["job"]["payload"]["parameters"] == {"i": 1}
    assert results[1]["error"]["code"] == "INVALID_ARGUMENT"
    assert "payload.service" in results[1]["error"]["message"]
    assert results[2]["job"]["constraints"]["priority"] == 2
    assert "1 of 3 jobs refused (lines 3)" in one_line_error(r)
    ok = tmp_path / "ok.jsonl"
    # The same key and body as line 4 above: the same job again, not a refusal.
    ok.write_text(
        '{"service": "echo"}\n'
        '{"service": "echo", "constraints": {"priority": 2}, "idempotency_key": "m-1"}\n'
    )
    r = cli("jobs", "submit-many", str(ok))
    assert r.exit_code == 0, r.stderr
    assert "QUEUED" in r.stdout and results[2]["job"]["job_id"] in r.stdout
    for text, needle in (
        ("{bad\n", "line 1: not valid JSON"),
        ('{"service": "echo"}\n[1]\n', 'line 2: must be a JSON object with a "service"'),
        ('{"service": "echo", "ttl": 5}\n', "line 1: unknown keys ttl"),
        ('{"service": "echo", "constraints": {"regoin": "x"}}\n', "line 1: constraints: unknown"),
        ("\n\n", "FILE: no jobs in it"),
    ):
        bad = tmp_path / "bad.jsonl"
        bad.write_text(text)
        r = cli("jobs", "submit-many", str(bad))
        assert r.exit_code == 2, (text, r.stdout, r.stderr)
        assert needle in one_line_error(r)
