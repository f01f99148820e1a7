"""Crash safety of deploy jobs (invariant 3): the controller is killed right after each step
of a two-host deploy is recorded (CAIRN_TEST_CRASH_AFTER, test_hooks builds) and at random
moments with kill -9; after a restart every job ends, and no step ran twice on any host."""
import random
import signal

import pytest

from ctlutil import Controller, has_test_hooks, make_app, wait_for

pytestmark = pytest.mark.skipif(not has_test_hooks(), reason="needs a -Dtest_hooks=true build")

STEPS = ["ensure_objects", "activate", "start", "health", "accept", "switch", "bake", "cleanup"]
HOSTS = "[local, {name: web2, ssh: deploy@10.0.0.5}]"


def post(ctl, rel, key):
    st, b, _ = ctl.request("POST", "/v1/apps/demo/deploys", {"release": rel, "force": True},
                           {"Idempotency-Key": key})
    assert st in (200, 202), b
    return b["id"]


def assert_at_most_once(ctl, jid):
    counts = {k: v for k, v in ctl.steps_run().items() if k[0] == jid}
    assert all(v == 1 for v in counts.values()), counts
    j = ctl.job(jid)
    assert j["terminal"], j
    if j["state"] == "succeeded":
        assert len(counts) == 16, counts
    # the record agrees: one done attempt per (host, step)
    done = [(s["host"], s["step"]) for s in j["steps"] if s["state"] == "done"]
    assert len(done) == len(set(done))
    return j


@pytest.mark.parametrize("host", ["local", "web2"])
def test_kill_after_each_step_boundary(cairn, tmp_path, host):
    cairn.state.mkdir(parents=True, exist_ok=True)
    rel = make_app(cairn, hosts=HOSTS)
    ctl = Controller(cairn, tmp_path)
    try:
        for step in STEPS:
            ctl.start(env={"CAIRN_TEST_CRASH_AFTER": f"{step}:{host}"})
            jid = post(ctl, rel, f"{step}-{host}")
            assert ctl.proc.wait(timeout=60) == 137, ctl.log_text()
            # the client retries after the crash: the same job, never a second one
            ctl.start()
            assert post(ctl, rel, f"{step}-{host}") == jid
            j = ctl.wait_terminal(jid)
            assert j["state"] == "succeeded", j
            assert_at_most_once(ctl, jid)
            ctl.stop()
        ctl.start()
        st, jobs = ctl.get("/v1/jobs")
        assert len(jobs["jobs"]) == len(STEPS)
        st, app = ctl.get("/v1/apps/demo")
        assert app["current"] == rel and app["running_job"] is None
    finally:
        ctl.stop()


def test_twenty_kills_at_random_moments(cairn, tmp_path):
    cairn.state.mkdir(parents=True, exist_ok=True)
    rel = make_app(cairn, hosts=HOSTS)
    ctl = Controller(cairn, tmp_path)
    rnd = random.Random(2)
    jobs = []
    try:
        for i in range(20):
            ctl.start(env={"CAIRN_TEST_STEP_DELAY_MS": "15"})
            jobs.append(post(ctl, rel, f"rand-{i}"))
            # let it get somewhere: a random number of recorded steps (0..15)
            n = rnd.randrange(0, 16)
            wait_for(lambda: len(ctl.job(jobs[-1])["steps"]) >= n, what=f"{n} steps")
            ctl.proc.send_signal(signal.SIGKILL)
            ctl.proc.wait()
        ctl.start()
        for jid in jobs:
            j = ctl.wait_terminal(jid, timeout=120)
            assert j["state"] == "succeeded", j
            assert_at_most_once(ctl, jid)
        st, app = ctl.get("/v1/apps/demo")
        assert app["current"] == rel and app["running_job"] is None
    finally:
        ctl.stop()


def test_failed_step_rolls_back_to_last_good(cairn, tmp_path):
    cairn.state.mkdir(parents=True, exist_ok=True)
    v1 = make_app(cairn, hosts=HOSTS, version="1")
    v2 = make_app(cairn, hosts=HOSTS, version="2")
    ctl = Controller(cairn, tmp_path).start(env={"CAIRN_TEST_FAIL_STEP": "accept:web2"})
    try:
        j1 = post(ctl, v1, "v1")
        # v1 fails too on web2 (nothing to roll back to): failed
        assert ctl.wait_terminal(j1)["state"] == "failed"
        ctl.stop()
        ctl.start()
        j1b = post(ctl, v1, "v1-again")
        assert ctl.wait_terminal(j1b)["state"] == "succeeded"
        ctl.stop()
        ctl.start(env={"CAIRN_TEST_FAIL_STEP": "accept:web2"})
        j2 = post(ctl, v2, "v2")
        j = ctl.wait_terminal(j2)
        assert j["state"] == "rolled_back" and "accept on web2" in j["error"]
        rb = [(s["host"], s["state"]) for s in j["steps"] if s["step"] == "rollback"]
        assert sorted(rb) == [("local", "done"), ("web2", "done")]
        st, app = ctl.get("/v1/apps/demo")
        assert app["current"] == v1 and app["last_good"] == v1
    finally:
        ctl.stop()


def test_sigterm_mid_deploy_resumes_after_restart(cairn, tmp_path):
    cairn.state.mkdir(parents=True, exist_ok=True)
    rel = make_app(cairn, hosts=HOSTS)
    ctl = Controller(cairn, tmp_path)
    try:
        ctl.start(env={"CAIRN_TEST_STEP_DELAY_MS": "100"})
        jid = post(ctl, rel, "term")
        wait_for(lambda: len(ctl.job(jid)["steps"]) >= 5, what="a few steps")
        assert ctl.stop() == 0  # clean shutdown: the job stays running, nothing rolled back
        st = __import__("sqlite3").connect(str(cairn.state / "state.db")).execute(
            "SELECT state FROM jobs WHERE id = ?", (jid,)).fetchone()[0]
        assert st == "running"
        ctl.start()
        j = ctl.wait_terminal(jid)
        assert j["state"] == "succeeded", j
        assert_at_most_once(ctl, jid)
        assert not any(s["step"] == "rollback" for s in j["steps"])
    finally:
        ctl.stop()


def test_crash_right_after_an_interrupted_step_was_closed(cairn, tmp_path):
    """A step interrupted by a crash is closed as "interrupted, runs again" on restart; a second
    crash right after that record (before the next attempt began) must not turn it into a
    failure: the third controller runs the step again and the job succeeds."""
    cairn.state.mkdir(parents=True, exist_ok=True)
    rel = make_app(cairn, hosts=HOSTS)
    ctl = Controller(cairn, tmp_path)
    try:
        ctl.start(env={"CAIRN_TEST_STEP_DELAY_MS": "60000"})
        jid = post(ctl, rel, "interrupted")
        wait_for(lambda: any(s["state"] == "started" for s in ctl.job(jid)["steps"]),
                 what="a step to start")
        ctl.proc.send_signal(signal.SIGKILL)
        ctl.proc.wait()
        try:  # it may die before its socket answers: recovery runs at once
            ctl.start(env={"CAIRN_TEST_CRASH_AFTER": "reconciled:local"})
        except AssertionError:
            pass
        assert ctl.proc.wait(timeout=60) == 137, ctl.log_text()
        assert "test hook: crashing after reconciled on local" in ctl.log_text()
        ctl.start()
        j = ctl.wait_terminal(jid)
        assert j["state"] == "succeeded", j
        first = [s for s in j["steps"] if s["step"] == "ensure_objects" and s["host"] == "local"]
        assert [s["state"] for s in first] == ["failed", "done"], first
        assert "runs again" in first[0]["detail"]["interrupted"]
        assert_at_most_once(ctl, jid)
    finally:
        ctl.stop()
