"""The bake on the default path (issue 10, defects 5 and 6): the cairn.yml `cairn init` writes
for a stdlib Python HTTP app runs the proxy in HTTP mode, so a release that answers 500 on its
real endpoint is rolled back; a bake that cannot judge (a slow release under one client, TCP
mode) never looks like one that passed — it repeats the acceptance checks (bounded), then fails
or passes *unjudged* as rollout.unjudged says, visibly in history, status and the release's
state; an old state database learns which of its "good" releases were never judged."""
import json
import re
import shutil
import sqlite3

import pytest

from rolloutlib import KNOBS, Fleet, Load, state_pids


@pytest.fixture
def fleet(cairn, tmp_path):
    f = Fleet(cairn, tmp_path)
    yield f
    f.teardown()
    assert state_pids(cairn.state) == []


def init_variant(fleet, name, bake="3s", unjudged=None, **knobs):
    """The knobs app (a stdlib http.server app) with the cairn.yml `cairn init` writes for it.
    Only the port (a free one), the bake (shorter than the default 30 s) and, when given,
    rollout.unjudged are changed."""
    d = fleet.tmp / "src" / name / "knobs"  # the directory's name is the app's name
    shutil.copytree(KNOBS, d)
    (d / "knobs.json").write_text(json.dumps(dict(variant=name, **knobs)))
    fleet.cairn.run("init", d, check=0)
    yml = (d / "cairn.yml").read_text()
    yml = re.sub(r"(?m)^listen: 8080$", f"listen: {fleet.port}", yml)
    yml = re.sub(r"(?m)^  bake: 30s ", f"  bake: {bake} ", yml)
    if unjudged:
        yml, n = re.subn(r"(?m)^  unjudged: fail$", f"  unjudged: {unjudged}", yml)
        assert n == 1, yml
    (d / "cairn.yml").write_text(yml)
    p = fleet.cairn.run("build", "--tag", name, cwd=d, check=0)
    fleet.ids[name] = p.stdout.strip().splitlines()[-1]
    fleet.dir = d
    return d


def releases(fleet):
    return {r["id"]: r for r in fleet.cairn.json("releases", cwd=fleet.dir)["releases"]}


def bake_step(job):
    return [s for s in job["steps"] if s["step"] == "bake"][-1]


def test_init_writes_an_http_health_check_for_an_http_app(cairn, tmp_path):
    d = tmp_path / "svc"
    shutil.copytree(KNOBS, d)
    out = cairn.json("init", d)
    assert out["health_http"] == "/healthz"
    assert out["http_evidence"] == "http.server in app.py"
    assert cairn.json("check", "-c", d / "cairn.yml")["health"]["http"] == "/healthz"
    # an HTTP app without a health route the files name: / is probed, and the comment says so
    e = tmp_path / "flasky"
    e.mkdir()
    (e / "app.py").write_text("import os\nfrom flask import Flask\napp = Flask(__name__)\n")
    out = cairn.json("init", e)
    assert out["health_http"] == "/" and out["http_evidence"] == "flask in app.py"
    assert "No health route was found" in (e / "cairn.yml").read_text()
    # nothing that speaks HTTP: TCP mode, left commented, and the comment says what is lost
    w = tmp_path / "worker"
    w.mkdir()
    (w / "main.py").write_text("import socket\n")
    out = cairn.json("init", w)
    assert out["health_http"] is None and out["http_evidence"] is None
    text = (w / "cairn.yml").read_text()
    assert "  # http: /healthz" in text and "a release answering 500 to every request" in text
    assert cairn.json("check", "-c", w / "cairn.yml")["health"]["http"] is None
    p = cairn.run("init", w, "--force", check=0)
    assert "health.http:   not set (TCP mode" in p.stdout


def test_init_config_rolls_back_a_release_that_500s_on_its_real_endpoint(fleet):
    """Story 003 on the default path: init, build, deploy, with one user's loop running."""
    init_variant(fleet, "v1")
    init_variant(fleet, "bad", mode="err500")
    fleet.ctl.start()
    with Load(fleet.port, threads=1, interval=0.01) as load:
        p = fleet.deploy("v1")
        assert fleet.job(p)["state"] == "succeeded", fleet.job(p)
        assert fleet.proxy()["mode"] == "http"
        load.wait_count(len(load.results) + 20)
        p = fleet.deploy("bad", check=1)
        load.wait_count(len(load.results) + 20)
    job = fleet.job(p)
    assert job["state"] == "rolled_back", job
    assert "error gate" in job["error"], job["error"]
    assert releases(fleet)[fleet.ids["bad"]]["state"] == "bad"
    assert releases(fleet)[fleet.ids["v1"]]["state"] == "good"
    assert all(r[1] == 200 and r[2] == fleet.ids["v1"] for r in load.results[-10:])


def test_slow_release_under_one_client_is_not_marked_good(fleet):
    """0.8 s slower under one client: too few requests in the bake and no acceptance check to
    repeat. The default (rollout.unjudged: fail) keeps v1; the release is unjudged, not good."""
    init_variant(fleet, "v1")
    init_variant(fleet, "slow", delay_ms=800)
    fleet.ctl.start()
    with Load(fleet.port, threads=1, interval=0.01) as load:
        assert fleet.job(fleet.deploy("v1"))["state"] == "succeeded"
        load.wait_count(len(load.results) + 10)
        p = fleet.deploy("slow", check=1)
        load.wait_count(len(load.results) + 5)
    job = fleet.job(p)
    assert job["state"] == "rolled_back", job
    assert "not judged: too little traffic" in job["error"], job["error"]
    assert "rollout.unjudged is fail" in job["error"]
    assert "no acceptance checks to repeat" in job["error"]
    assert job["unjudged"] and "not judged" in job["unjudged"]
    b = bake_step(job)
    assert b["state"] == "failed" and b["detail"]["verdict"] == "unjudged", b
    assert 0 < b["detail"]["new"]["requests"] < 20
    rel = releases(fleet)
    assert rel[fleet.ids["slow"]]["state"] == "unjudged"  # not bad: nothing judged it bad
    assert rel[fleet.ids["v1"]]["state"] == "good"
    assert fleet.cairn.json("status", cwd=fleet.dir)["current"] == fleet.ids["v1"]
    assert fleet.live("slow") == [] and len(fleet.live("v1")) == 1


def test_unjudged_pass_ships_visibly_unjudged(fleet):
    """rollout.unjudged: pass ships it, and says so: job, history, status, releases."""
    init_variant(fleet, "v1")
    init_variant(fleet, "slow", delay_ms=800, unjudged="pass")
    fleet.ctl.start()
    with Load(fleet.port, threads=1, interval=0.01) as load:
        assert fleet.job(fleet.deploy("v1"))["state"] == "succeeded"
        load.wait_count(len(load.results) + 10)
        p = fleet.cairn.run("deploy", "slow", "--wait", cwd=fleet.dir, check=0, timeout=180)
        load.wait_count(len(load.results) + 3)
    assert re.search(r"job \d+: succeeded, passed unjudged on local: not judged", p.stdout), \
        p.stdout
    job = fleet.cairn.json("history", cwd=fleet.dir)["jobs"][0]
    assert job["state"] == "succeeded" and job["error"] is None, job
    assert job["unjudged"].startswith("on local: not judged: too little traffic"), job
    steps = fleet.ctl.job(job["id"])["steps"]
    assert [x for x in steps if x["step"] == "bake"][-1]["detail"]["verdict"] == "unjudged"
    assert releases(fleet)[fleet.ids["slow"]]["state"] == "unjudged"
    text = fleet.cairn.run("releases", cwd=fleet.dir, check=0).stdout
    assert re.search(r"slow\s.*unjudged", text), text
    hist = fleet.cairn.run("history", cwd=fleet.dir, check=0).stdout
    line = [ln for ln in hist.splitlines() if ln.split()[:1] == [str(job["id"])]][0]
    assert "succeeded" in line and "passed unjudged: on local: not judged" in line, hist
    st = fleet.cairn.run("status", cwd=fleet.dir, check=0).stdout
    assert "(passed unjudged: no bake judged it)" in st, st
    # deploying it again is no no-op: it runs, to be judged this time
    again = fleet.cairn.json("deploy", "slow", cwd=fleet.dir)
    assert "note" not in again and again["id"] != job["id"], again
    fleet.ctl.wait_terminal(again["id"])


def test_bake_repeats_the_acceptance_checks_until_it_can_judge(fleet):
    """No user traffic at all: the bake sends the acceptance checks itself (bounded by what the
    gates need), judges them, and the release is good."""
    fleet.variant("v1", bake="1s")
    fleet.ctl.start()
    job = fleet.job(fleet.deploy("v1"))
    assert job["state"] == "succeeded" and job["unjudged"] is None, job
    b = bake_step(job)
    assert b["detail"]["verdict"] == "pass", b
    assert b["detail"]["new"]["requests"] == 20  # min_requests, no more
    assert "the bake's own repeats of the acceptance checks" in b["detail"]["reason"]
    assert releases(fleet)[fleet.ids["v1"]]["state"] == "good"


def test_tcp_mode_says_what_it_cannot_judge(fleet):
    """TCP mode (no health.http): a release answering 500 to every request is not waved
    through: the bake sees connections only, says so, and (unjudged: fail) keeps v1."""
    fleet.variant("v1", tcp=True, bake="1s")  # its acceptance check, repeated, judges it
    fleet.variant("bad", tcp=True, mode="err500", acceptance=False, bake="2s")
    fleet.ctl.start()
    job1 = fleet.job(fleet.deploy("v1"))
    assert job1["state"] == "succeeded" and job1["unjudged"] is None, job1
    assert "TCP mode: users' answers are not seen" in bake_step(job1)["detail"]["reason"]
    assert fleet.proxy()["mode"] == "tcp"
    with Load(fleet.port, threads=1, interval=0.01) as load:
        load.wait_count(5)
        job = fleet.job(fleet.deploy("bad", check=1))
        load.wait_count(len(load.results) + 5)
    assert job["state"] == "rolled_back", job
    err = job["error"]
    assert "TCP mode (no health.http): the proxy sees connections, not answers" in err, err
    assert "no answer (5xx, latency) was judged" in err and "set health.http" in err
    assert releases(fleet)[fleet.ids["bad"]]["state"] == "unjudged"
    assert all(r[1] == 200 and r[2] == fleet.ids["v1"] for r in load.results[-3:])


def test_unjudged_key_is_checked(cairn, tmp_path):
    base = "app: x\nrun:\n  command: [a]\nlisten: 1\nrollout:\n"
    (tmp_path / "cairn.yml").write_text(base + "  unjudged: maybe\n")
    err = cairn.json("check", "-c", tmp_path / "cairn.yml", check=2)["error"]
    assert (err["line"], err["col"]) == (6, 13), err
    assert 'rollout.unjudged: "maybe" is not one of fail, pass' in err["message"], err
    (tmp_path / "cairn.yml").write_text(base + "  unjudgd: pass\n")
    err = cairn.json("check", "-c", tmp_path / "cairn.yml", check=2)["error"]
    assert 'did you mean "unjudged"' in err["message"] and err["line"] == 6, err
    (tmp_path / "cairn.yml").write_text(base + "  unjudged: pass\n")
    assert cairn.json("check", "-c", tmp_path / "cairn.yml")["rollout"]["unjudged"] == "pass"


def test_old_state_db_learns_which_good_releases_were_never_judged(cairn, tmp_path):
    """A state database of a cairn before this change (schema 4) marked a release good after a
    bake with too little traffic; opening it marks that release unjudged and notes the job."""
    src = tmp_path / "app"
    shutil.copytree(KNOBS, src)
    (src / "cairn.yml").write_text("app: knobs\nrun:\n  command: [python3, app.py]\nlisten: 1\n")
    (src / "knobs.json").write_text("{}")
    rid = cairn.run("build", cwd=src, check=0).stdout.strip().splitlines()[-1]
    (src / "knobs.json").write_text('{"v": 2}')
    rid2 = cairn.run("build", cwd=src, check=0).stdout.strip().splitlines()[-1]
    db = sqlite3.connect(cairn.state / "state.db")
    db.executescript("ALTER TABLE jobs DROP COLUMN unjudged; PRAGMA user_version=4;")
    for jid, rel, verdict in ((1, rid, "too_little_traffic"), (2, rid2, "pass")):
        db.execute("INSERT INTO jobs (id, app, kind, release, state, created_at) "
                   "VALUES (?, 'knobs', 'deploy', ?, 'succeeded', 1)", (jid, rel))
        db.execute("INSERT INTO job_steps (job_id, host, step, attempt, state, started_at, detail) "
                   "VALUES (?, 'local', 'bake', 1, 'done', 1, ?)",
                   (jid, json.dumps({"verdict": verdict, "reason": f"{verdict} reason"})))
        db.execute("UPDATE releases SET state = 'good' WHERE id = ?", (rel,))
    db.commit()
    db.close()
    rel = {r["id"]: r for r in cairn.json("releases", cwd=src)["releases"]}
    assert rel[rid]["state"] == "unjudged" and rel[rid2]["state"] == "good", rel
    db = sqlite3.connect(cairn.state / "state.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] >= 5
    notes = dict(db.execute("SELECT id, unjudged FROM jobs"))
    db.close()
    assert notes == {1: "too_little_traffic reason", 2: ""}


def test_rollback_to_a_judged_release_is_not_refused_for_want_of_traffic(fleet):
    """rollout.unjudged: fail keeps an unjudged release from shipping; a release a bake judged
    good before (here: `cairn rollback` with nobody sending requests) still goes back, its
    job noting that this bake could not judge, and it stays good."""
    init_variant(fleet, "v1")
    init_variant(fleet, "v2")
    fleet.ctl.start()
    with Load(fleet.port, threads=1, interval=0.01) as load:
        for name in ("v1", "v2"):
            n = len(load.results)
            assert fleet.job(fleet.deploy(name))["state"] == "succeeded"
            load.wait_count(n + 5)
    p = fleet.cairn.run("rollback", "--wait", "--json", cwd=fleet.dir, check=0, timeout=180)
    job = fleet.job(p)
    assert job["state"] == "succeeded" and job["release"] == fleet.ids["v1"], job
    assert job["unjudged"] and "not judged: too little traffic" in job["unjudged"], job
    rel = releases(fleet)
    assert rel[fleet.ids["v1"]]["state"] == "good" and rel[fleet.ids["v2"]]["state"] == "good"


def test_ratio_gate_compares_the_same_checks_on_both_releases_without_traffic(fleet):
    """No user traffic, max_p99_ratio set: the bake sends the acceptance checks to the new
    instances and to the previous release's (still warm) ones, and compares like with like —
    an equally fast release passes, a 15× slower one is rolled back by the ratio gate."""
    # p99 of 20 answers is their maximum: the margins (5× allowed, 15× slower) leave room for
    # a loaded machine's stalls on either side
    fleet.variant("v1", delay_ms=20, bake="1s")
    fleet.variant("v2", delay_ms=20, ratio=5, bake="1s")
    fleet.variant("slow", mode="slow", delay_ms=20, slow_factor=15, ratio=5, bake="1s")
    fleet.ctl.start()
    fleet.deploy("v1")
    job = fleet.job(fleet.deploy("v2"))
    assert job["state"] == "succeeded" and job["unjudged"] is None, job
    reason = bake_step(job)["detail"]["reason"]
    assert "the same checks sent to its instances" in reason, reason
    assert bake_step(job)["detail"]["previous"]["requests"] >= 20
    job = fleet.job(fleet.deploy("slow", check=1))
    assert job["state"] == "rolled_back", job
    assert "latency gate: p99" in job["error"] and "previous release's" in job["error"], job
    assert releases(fleet)[fleet.ids["slow"]]["state"] == "bad"
    assert len(fleet.live("v2")) == 2 and fleet.live("slow") == []


def test_tcp_mode_connection_gate_fails_a_release_that_resets_connections(fleet):
    """TCP mode sees connections: a release whose instances reset them is rolled back by the
    connection gate while users are on it."""
    fleet.variant("v1", tcp=True, bake="1s")
    fleet.variant("rst", tcp=True, mode="reset", acceptance=False, bake="20s")
    fleet.ctl.start()
    fleet.deploy("v1")
    with Load(fleet.port, threads=1, interval=0.005) as load:
        load.wait_count(5)
        job = fleet.job(fleet.deploy("rst", check=1))
        load.wait_count(len(load.results) + 5)
    assert job["state"] == "rolled_back", job
    assert "connection gate" in job["error"] and "reset by it" in job["error"], job["error"]
    assert bake_step(job)["detail"]["baked_ms"] < 20000  # it did not wait for the bake's end
    assert releases(fleet)[fleet.ids["rst"]]["state"] == "bad"
    assert all(r[1] == 200 for r in load.results[-3:]), load.results[-3:]
