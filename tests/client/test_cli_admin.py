"""`aitbc miners list` and `aitbc admin stats|jobs` with the admin key."""

from __future__ import annotations

import json

from .conftest import one_line_error


def test_miners_list(coord, cli):
    coord.miner("m1", slots=2, services={"echo": "0.5", "whisper": "1.25"}, region="eu-west")
    r = cli("miners", "list", who="root")
    assert r.exit_code == 0, r.stderr
    assert "m1" in r.stdout and "online" in r.stdout and "eu-west" in r.stdout
    doc = json.loads(cli("miners", "list", "--json", who="root").stdout)
    [m] = doc["miners"]
    assert m["miner_id"] == "m1" and m["status"] == "MINER_STATUS_ONLINE"
    assert m["slots"] == 2 and m["mode"] == "stream"
    assert {s["service"] for s in m["capabilities"]["services"]} == {"echo", "whisper"}
    offline = json.loads(cli("miners", "list", "--status", "offline", "--json", who="root").stdout)
    assert offline == {"miners": []}
    r = cli("miners", "list", "--status", "asleep", who="root")
    assert r.exit_code == 2 and "status: unknown value 'asleep'" in one_line_error(r)
    r = cli("miners", "list")  # a client key is not an admin key
    assert r.exit_code == 1 and one_line_error(r)


def test_admin_stats_and_jobs(coord, cli):
    miner = coord.miner("m1")
    cli("jobs", "submit", "echo", "--json")
    coord.complete(miner, "ok")
    cli("jobs", "submit", "echo", "--json", who="bob")
    stats = json.loads(cli("admin", "stats", "--window", "60", "--json", who="root").stdout)
    # keyed by state name; the proto documents "JOB_STATE_QUEUED", the server says "queued"
    by_state = {k.removeprefix("JOB_STATE_").lower(): v for k, v in stats["jobs_by_state"].items()}
    assert by_state["completed"] == 1 and by_state["assigned"] == 1  # bob's went to m1
    assert stats["miners_online"] == 1 and stats["window_seconds"] == 60
    assert stats["completed_in_window"] == 1
    r = cli("admin", "stats", who="root")
    assert r.exit_code == 0 and "queue depth" in r.stdout and "1 online" in r.stdout
    r = cli("admin", "stats")
    assert r.exit_code == 1 and "admin" in one_line_error(r).lower()
    jobs = json.loads(cli("admin", "jobs", "--client", "bob", "--json", who="root").stdout)
    assert [j["client_id"] for j in jobs["jobs"]] == ["bob"]
    done = json.loads(cli("admin", "jobs", "--state", "completed", "--json", who="root").stdout)
    assert [j["client_id"] for j in done["jobs"]] == ["alice"]
    r = cli("admin", "jobs", who="root")
    assert r.exit_code == 0 and "COMPLETED" in r.stdout and "ASSIGNED" in r.stdout
