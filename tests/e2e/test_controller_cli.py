"""The CLI as an API client: deploy --wait (surviving a controller restart), status, history,
rollback, stop --emergency, unlock, --json and exit codes."""
import json
import subprocess

import pytest

from conftest import BIN
from ctlutil import Controller, has_test_hooks, make_app, wait_for

pytestmark = pytest.mark.skipif(not has_test_hooks(), reason="needs a -Dtest_hooks=true build")


@pytest.fixture
def ctl(cairn, tmp_path):
    cairn.state.mkdir(parents=True, exist_ok=True)
    c = Controller(cairn, tmp_path)
    yield c
    c.stop()


def test_deploy_wait_status_history_rollback(cairn, ctl):
    v1 = make_app(cairn, version="1")
    v2 = make_app(cairn, version="2")
    ctl.start()
    app = cairn.cwd / "demo-2"
    p = cairn.run("deploy", v1[:19], "--wait", "--reason", "first", cwd=app, check=0)
    assert "succeeded" in p.stdout and "local: cleanup done" in p.stdout
    j = cairn.json("deploy", cwd=app)  # no REF: the newest release, v2
    assert j["release"] == v2 and j["state"] in ("queued", "running", "succeeded")
    assert ctl.wait_terminal(j["id"])["state"] == "succeeded"
    st = cairn.json("status", cwd=app)
    assert st["current"] == v2 and st["last_good"] == v2
    h = cairn.json("history", cwd=app)
    assert [x["release"] for x in h["jobs"]] == [v2, v1]
    p = cairn.run("history", cwd=app, check=0)
    assert "first" in p.stdout and "succeeded" in p.stdout
    r = cairn.json("rollback", "--wait", cwd=app)
    assert r["kind"] == "rollback" and r["release"] == v1 and r["state"] == "succeeded"
    assert cairn.json("status", cwd=app)["current"] == v1
    # the same deploy of the current good release: a no-op, exit 0, says so
    p = cairn.run("deploy", v1, cwd=app, check=0)
    assert "nothing to do" in p.stdout


def test_deploy_wait_exits_1_when_rolled_back(cairn, ctl):
    v1 = make_app(cairn, version="1")
    v2 = make_app(cairn, version="2")
    ctl.start()
    cairn.run("deploy", v1, "--wait", "--app", "demo", check=0)
    ctl.stop()
    ctl.start(env={"CAIRN_TEST_FAIL_STEP": "health"})
    p = cairn.run("deploy", v2, "--wait", "--app", "demo", check=1)
    assert "rolled_back" in p.stdout and "health on local" in p.stdout


def test_deploy_wait_survives_a_controller_restart(cairn, ctl, tmp_path):
    v1 = make_app(cairn)
    ctl.start(env={"CAIRN_TEST_STEP_DELAY_MS": "150", "CAIRN_TEST_CRASH_AFTER": "health"})
    env = dict(__import__("os").environ, CAIRN_STATE=str(cairn.state))
    w = subprocess.Popen([BIN, "deploy", v1, "--wait", "--app", "demo"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert ctl.proc.wait(timeout=60) == 137
    ctl.start(env={"CAIRN_TEST_STEP_DELAY_MS": "150"})
    out, err = w.communicate(timeout=120)
    assert w.returncode == 0, out + err
    assert "reconnecting" in err
    lines = [l for l in out.splitlines() if "local:" in l]
    # every step shown once as done, none lost or repeated across the restart
    done = [l.split("local: ")[1] for l in lines if l.endswith(" done")]
    assert done == [f"{s} done" for s in ["ensure_objects", "activate", "start", "health",
                                          "accept", "switch", "bake", "cleanup"]]


def test_stop_unlock_and_errors(cairn, ctl):
    make_app(cairn)
    p = cairn.run("status", "--app", "demo", check=1)
    assert "no controller answers" in p.stderr and "cairn serve" in p.stderr
    ctl.start()
    p = cairn.run("stop", "demo", check=2)
    assert "--emergency" in p.stderr
    s = cairn.json("stop", "--emergency", "demo")
    assert s["hosts"][0]["host"] == "local" and s["hosts"][0]["ok"]
    assert "stop app=demo host=local" in ctl.exec_log.read_text()
    u = cairn.json("unlock", "demo")
    assert u["broken"] is False
    p = cairn.run("unlock", "demo", check=0)
    assert "no lease" in p.stdout
    p = cairn.run("deploy", "nosuch", "--app", "demo", check=2)
    assert "no release matches" in p.stderr
    p = cairn.run("status", "--app", "ghost", check=2)
    assert "no app 'ghost'" in p.stderr
    for cmd in ["serve", "deploy", "status", "history", "rollback", "stop", "unlock"]:
        h = cairn.run(cmd, "--help", check=0).stdout
        for sec in ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "EXAMPLES"]:
            assert sec in h, (cmd, sec)


def test_job_shows_one_job_steps_timings_and_why(cairn, ctl):
    """`cairn job N` (and `cairn history N`): the job's steps per host with their durations,
    the user's --reason beside the failure reason; history shows durations and both reasons."""
    v1 = make_app(cairn, version="1")
    v2 = make_app(cairn, version="2")
    ctl.start()
    cairn.run("deploy", v1, "--wait", "--app", "demo", "--reason", "first one", check=0)
    ctl.stop()
    ctl.start(env={"CAIRN_TEST_FAIL_STEP": "health"})
    j = cairn.json("deploy", v2, "--app", "demo", "--reason", "try v2")
    ctl.wait_terminal(j["id"])
    p = cairn.run("job", j["id"], check=0)
    out = p.stdout
    assert f"job {j['id']}: deploy of demo to {v2}" in out and "rolled_back" in out
    assert 'reason: "try v2"' in out and "why:" in out and "health on local" in out
    assert f"replacing: {v1}" in out
    for step in ["ensure_objects", "activate", "start", "health"]:
        assert f"local            {step}" in out, out
    assert "failed" in out and "error:" in out
    # every step line has a duration, the job too
    steps = [l for l in out.splitlines() if l.startswith("  local ")]
    assert steps and all(l.split()[-1].endswith(("ms", "s")) for l in steps), steps
    assert cairn.run("history", j["id"], check=0).stdout == out
    js = cairn.json("job", j["id"])
    assert js["id"] == j["id"] and js["duration_ms"] >= 0 and js["steps"]
    assert all("duration_ms" in s for s in js["steps"] if s["finished_at"])
    # history: a TOOK column, and the user's reason kept beside the failure
    h = cairn.run("history", "--app", "demo", check=0).stdout
    assert "TOOK" in h.splitlines()[0]
    line = [l for l in h.splitlines() if l.startswith(str(j["id"]))][0]
    assert "health on local" in line and '(asked: "try v2")' in line, line
    assert all("duration_ms" in x for x in cairn.json("history", "--app", "demo")["jobs"])
    # errors
    p = cairn.run("job", "99999", check=2)
    assert "no job 99999" in p.stderr and "cairn history" in p.stderr
    p = cairn.run("job", "abc", check=2)
    assert "not a job number" in p.stderr
    cairn.run("job", check=2)
    h = cairn.run("job", "--help", check=0).stdout
    for sec in ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "EXAMPLES"]:
        assert sec in h


def test_deploy_follow_reattaches_and_ctrl_c_says_the_job_goes_on(cairn, ctl):
    """Ctrl-C on `deploy --wait` says the job goes on and how to follow it; `deploy --follow N`
    re-attaches and follows it to the end (exit 0 succeeded, 1 failed), on a finished job too;
    `status` shows the running job with how long it has run."""
    v1 = make_app(cairn)
    ctl.start(env={"CAIRN_TEST_STEP_DELAY_MS": "300"})
    env = dict(__import__("os").environ, CAIRN_STATE=str(cairn.state))
    w = subprocess.Popen([BIN, "deploy", v1, "--wait", "--app", "demo"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        jid = wait_for(lambda: (lambda b: b["jobs"][0]["id"] if b["jobs"] else None)(
            ctl.get("/v1/apps/demo/deploys")[1]), what="the job")
        wait_for(lambda: ctl.job(jid)["steps"], what="a first step")
        st = cairn.run("status", "--app", "demo", check=0).stdout
        assert f"running:    job {jid}, " in st and "so far" in st and f"--follow {jid}" in st
        w.send_signal(__import__("signal").SIGINT)
        out, err = w.communicate(timeout=30)
    finally:
        if w.poll() is None:
            w.kill()
            w.wait()
    assert w.returncode == 130, out + err
    assert f"job {jid} goes on" in err and f"cairn deploy --follow {jid}" in err, err
    assert not ctl.job(jid)["terminal"]  # the job was not touched
    p = cairn.run("deploy", "--follow", jid, "--app", "demo", check=0)
    assert "succeeded" in p.stdout and "local: cleanup done" in p.stdout
    # a finished job: its whole story, then its end
    p = cairn.run("deploy", "--follow", jid, check=0)
    assert "local: cleanup done" in p.stdout and f"job {jid}: succeeded" in p.stdout
    assert cairn.json("deploy", "--follow", jid)["state"] == "succeeded"
    p = cairn.run("deploy", "--follow", "424242", check=2)
    assert "no job 424242" in p.stderr
    cairn.run("deploy", "--follow", jid, v1, check=2)
    cairn.run("deploy", "--follow", "x", check=2)


def test_deploy_wait_across_a_restart_never_prints_a_failure_without_its_reason(cairn, ctl):
    """The controller dies right after a step failed (before the rollback): the restarted one
    finishes the job with the step's recorded reason, and `deploy --wait`, which followed it
    across the restart, prints that reason — not "failed (see its detail)"."""
    v1 = make_app(cairn, version="1")
    v2 = make_app(cairn, version="2")
    ctl.start()
    cairn.run("deploy", v1, "--wait", "--app", "demo", check=0)
    ctl.stop()
    ctl.start(env={"CAIRN_TEST_FAIL_STEP": "health", "CAIRN_TEST_CRASH_AFTER": "failed:local",
                   "CAIRN_TEST_STEP_DELAY_MS": "100"})
    env = dict(__import__("os").environ, CAIRN_STATE=str(cairn.state))
    w = subprocess.Popen([BIN, "deploy", v2, "--wait", "--app", "demo"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert ctl.proc.wait(timeout=60) == 137
        ctl.start()
        out, err = w.communicate(timeout=120)
    finally:
        if w.poll() is None:
            w.kill()
            w.wait()
    assert w.returncode == 1, out + err
    end = [l for l in out.splitlines() if l.startswith("job ") and "rolled_back" in l]
    assert end and "test hook: health fails on local" in end[-1], out
    assert "see its detail" not in out
    job = cairn.json("job", json.loads(cairn.run("history", "--app", "demo", "--json",
                                                 check=0).stdout)["jobs"][0]["id"])
    assert job["state"] == "rolled_back" and "test hook: health fails" in job["error"]


def test_diff_shows_every_run_config_change_and_deploy_says_it_moves_the_port(cairn, ctl):
    """`cairn diff` lists every run-config change (listen, instances, health, gates), not only
    run.command/env; a deploy that changes listen says it will move the port."""
    def build(version, yml):
        d = cairn.cwd / f"mv-{version}"
        d.mkdir()
        (d / "cairn.yml").write_text(yml)
        (d / "app.py").write_text("print('x')\n")
        return cairn.run("build", "--tag", version, cwd=d, check=0).stdout.strip().splitlines()[-1]
    base = 'app: mv\nrun:\n  command: ["python3", "app.py"]\nhosts: [local]\n'
    build("m1", base + "listen: 8080\ninstances: 1\n")
    build("m2", base + "listen: 9090\ninstances: 3\nhealth: { http: /healthz, interval: 2s }\n"
          "rollout:\n  gates: { max_p99: 300ms, min_requests: 50 }\n")
    out = cairn.run("diff", "m1", "m2", check=0).stdout
    for line in ["listen: 127.0.0.1:8080 → 127.0.0.1:9090", "instances: 1 → 3",
                 "health.http: (unset) → /healthz", "health.interval_ms: 1000 → 2000",
                 "rollout.gates.max_p99_ms: 0 → 300", "rollout.gates.min_requests: 20 → 50"]:
        assert line in out, (line, out)
    j = cairn.json("diff", "m1", "m2")
    keys = {c["key"]: c for c in j["config"]}
    assert keys["listen"] == {"key": "listen", "old": "127.0.0.1:8080", "new": "127.0.0.1:9090"}
    assert keys["instances"]["new"] == 3 and "build.command" not in keys
    # the same config: no config change listed
    assert cairn.json("diff", "m1", "m1")["config"] == []
    ctl.start()
    cairn.run("deploy", "m1", "--wait", "--app", "mv", check=0)
    p = cairn.run("deploy", "m2", "--app", "mv", check=0)
    assert "moves mv's port: listen 127.0.0.1:8080 → 127.0.0.1:9090" in p.stdout, p.stdout
    jid = int(p.stdout.split()[1].rstrip(":"))
    ctl.wait_terminal(jid)
    # a deploy that keeps the port says nothing about it
    p = cairn.run("deploy", "m2", "--force", "--app", "mv", "--json", check=0)
    assert "listen_change" not in json.loads(p.stdout)


def test_apps_and_rm(cairn, ctl):
    """`cairn apps` lists the apps and where they stand; `cairn rm APP` takes an app off its
    hosts (refused while a deploy of it runs), keeps its releases and history, and a deploy
    brings it back."""
    v1 = make_app(cairn, version="1")
    make_app(cairn, name="other", version="1")
    ctl.start(env={"CAIRN_TEST_STEP_DELAY_MS": "200"})
    p = cairn.run("apps", check=0)
    assert p.stdout.splitlines()[0].split()[:3] == ["APP", "CURRENT", "LAST"]
    assert any(l.startswith("demo ") and "not deployed" in l for l in p.stdout.splitlines())
    j = cairn.json("deploy", v1, "--app", "demo")
    wait_for(lambda: ctl.job(j["id"])["state"] == "running", what="the deploy to run")
    p = cairn.run("rm", "demo", check=1)
    assert "is running" in p.stderr and f"--follow {j['id']}" in p.stderr, p.stderr
    assert "remove app=demo" not in (ctl.exec_log.read_text() if ctl.exec_log.exists() else "")
    ctl.wait_terminal(j["id"])
    apps = {a["app"]: a for a in cairn.json("apps")["apps"]}
    assert apps["demo"]["current"] == v1 and apps["demo"]["releases"] == 1
    assert apps["other"]["current"] is None
    p = cairn.run("rm", "demo", check=0)
    assert "local" in p.stdout and "runs nowhere now" in p.stdout, p.stdout
    assert "remove app=demo host=local" in ctl.exec_log.read_text()
    st = cairn.json("status", "--app", "demo")
    assert st["current"] is None and st["last_good"] == v1
    assert cairn.json("history", "--app", "demo")["jobs"][0]["id"] == j["id"]
    assert cairn.json("apps")["apps"][0]["current"] is None
    # again: nothing to remove; an app never deployed: the same; an unknown app: exit 2
    r = cairn.json("rm", "demo")
    assert r["hosts"] == [] and "nothing to remove" in r["note"]
    assert "nothing to remove" in cairn.run("rm", "other", check=0).stdout
    p = cairn.run("rm", "ghost", check=2)
    assert "no app 'ghost'" in p.stderr and "cairn apps" in p.stderr
    cairn.run("rm", check=2)
    cairn.run("rm", "--app", "demo", check=2)
    # a deploy of the same release brings it back (not "nothing to do")
    j2 = cairn.json("deploy", v1, "--app", "demo")
    assert ctl.wait_terminal(j2["id"])["state"] == "succeeded"
    assert cairn.json("status", "--app", "demo")["current"] == v1
    for cmd in ["apps", "rm"]:
        h = cairn.run(cmd, "--help", check=0).stdout
        for sec in ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "EXAMPLES"]:
            assert sec in h, (cmd, sec)
def test_a_refused_second_serve_leaves_the_first_reachable(cairn, ctl):
    """issue 10 #1: the second `cairn serve` on a state directory is refused on the lock, and
    touches nothing of the first: its socket stays, and the first keeps answering."""
    ctl.start()
    sock = cairn.state / "cairn.sock"
    assert sock.is_socket()
    env = dict(ctl.env)
    p = subprocess.run([BIN, "serve", "--no-agent"], env=env, capture_output=True, text=True,
                       timeout=30)
    assert p.returncode != 0 and "another controller" in p.stderr, p.stderr
    assert sock.is_socket(), "the refused serve removed the live controller's socket"
    st, _ = ctl.get("/metrics", raw=True)
    assert st == 200
    assert ctl.proc.poll() is None
