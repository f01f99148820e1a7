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
