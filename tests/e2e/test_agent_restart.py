"""kill -9 of the agent (issue 9 item 6): the keeper of `cairn agent --daemon` restarts it at
once, the successor re-adopts the instances and serves on the listeners the keeper kept — the
proxy's and the API's — so no client is refused meanwhile; a deploy whose agent is killed in the
middle goes on, and a job's rollback works once the agent is back. Real controller, agent, app
processes and a bounded load client; no process outlives its test."""
import json
import os
import signal

from ctlutil import wait_for
from rolloutlib import Load
from test_rollout import fleet  # noqa: F401 (the fixture: controller, agent, no process left)


def agent_pid(fleet):
    p = fleet.cairn.run("agent", "status", "--json", check=None)
    return json.loads(p.stdout)["pid"] if p.returncode == 0 else None


def gone(pid):
    """The process has exited (a zombie, or reaped already — also between our two looks)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:  # ENOENT, or ESRCH when it is reaped while we read
        return True


def kill9(pid):
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: gone(pid), what=f"agent {pid} gone")


def refused(load):
    return [r for r in load.results if "ConnectionRefused" in str(r[1])]


def test_killed_agent_is_back_at_once_and_no_client_is_refused(fleet):
    fleet.variant("v1")
    fleet.ctl.start()
    fleet.deploy("v1")
    before = {i["id"]: i["pid"] for i in fleet.live("v1")}
    assert len(before) == 2
    old = agent_pid(fleet)
    with Load(fleet.port, threads=2, interval=0.002, max_s=90) as load:
        load.wait_count(50)
        n_kill = len(load.results)
        kill9(old)
        # nobody but the keeper restarts it here: the controller makes no call meanwhile
        new = wait_for(lambda: (lambda p: p if p and p != old else None)(agent_pid(fleet)),
                       timeout=20, what="a new agent")
        load.wait_count(len(load.results) + 100)
    # re-adopted, not restarted; the proxy back on its address with the same upstreams
    assert {i["id"]: i["pid"] for i in fleet.live("v1")} == before
    assert all(i["adopted"] for i in fleet.instances("v1"))
    px = fleet.proxy()
    assert px["listen"].endswith(f":{fleet.port}") and len(px["upstreams"]) == 2
    assert new != old
    assert refused(load) == [], refused(load)[:5]
    # a request the dead agent's proxy was forwarding is cut (at most one per load thread);
    # every other one, before and after, was answered
    bad = load.failures()
    assert len(bad) <= 2, bad[:5]
    assert all(r[0] >= load.results[n_kill - 1][0] - 1 for r in bad), bad
    log = (fleet.cairn.state / "logs" / "agent.log").read_text()
    assert f"keeper: the agent (pid {old}) killed by signal 9" in log
    assert "serving the API socket the last agent listened on" in log


def test_agent_killed_during_a_deploy_the_deploy_goes_on(fleet):
    fleet.variant("v1")
    fleet.variant("v2")
    # each step waits 1.5 s before it runs: the kill lands between start and the first probe
    fleet.ctl.start(env={"CAIRN_TEST_STEP_DELAY_MS": "1500"})
    fleet.deploy("v1")
    old = agent_pid(fleet)
    p = fleet.cairn.run("deploy", "v2", "--json", cwd=fleet.dir, check=0)
    jid = json.loads(p.stdout)["id"]

    def in_health():
        steps = {s["step"]: s["state"] for s in fleet.ctl.job(jid)["steps"]}
        return steps.get("start") == "done" and "health" in steps

    wait_for(in_health, timeout=60, what="the health step")
    kill9(old)
    job = fleet.ctl.wait_terminal(jid, timeout=120)
    assert job["state"] == "succeeded", job
    assert agent_pid(fleet) not in (None, old)
    insts = fleet.instances()
    assert [i for i in insts if i["state"] == "starting"] == []
    assert len(fleet.live("v2")) == 2 and fleet.live("v1") == []
    with Load(fleet.port) as load:
        load.wait_count(20)
    assert load.failures() == [] and set(load.by_release()) == {fleet.ids["v2"]}


def test_keeper_and_agent_killed_controller_starts_a_new_one(fleet):
    """Without the keeper too (both killed), the controller's next call starts the agent; the
    job's steps, and its rollback, work with it."""
    fleet.variant("v1")
    fleet.variant("v2")
    fleet.ctl.start(env={"CAIRN_TEST_STEP_DELAY_MS": "1500"})
    fleet.deploy("v1")
    old = agent_pid(fleet)
    keeper = int(open(f"/proc/{old}/stat").read().rsplit(")", 1)[1].split()[1])
    p = fleet.cairn.run("deploy", "v2", "--json", cwd=fleet.dir, check=0)
    jid = json.loads(p.stdout)["id"]
    wait_for(lambda: any(s["step"] == "activate" for s in fleet.ctl.job(jid)["steps"]),
             timeout=60, what="the activate step")
    os.kill(keeper, signal.SIGKILL)
    kill9(old)
    job = fleet.ctl.wait_terminal(jid, timeout=120)
    assert job["state"] == "succeeded", job
    assert agent_pid(fleet) not in (None, old)
    assert [i for i in fleet.instances() if i["state"] == "starting"] == []
    assert "starting it again" in fleet.ctl.log_text()


def test_sigterm_stops_agent_and_keeper(fleet):
    fleet.variant("v1")
    fleet.ctl.start()
    fleet.deploy("v1")
    pid = agent_pid(fleet)
    keeper = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    assert "agent" in open(f"/proc/{keeper}/cmdline").read()
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not os.path.exists(f"/proc/{keeper}"), what="the keeper to end")
    assert not (fleet.cairn.state / "agent.sock").exists()
    # instances keep running (the next agent re-adopts them); a second keeper is refused while
    # the first runs
    p = fleet.cairn.run("agent", "--daemon", check=None)
    assert p.returncode == 0, p.stderr
    p = fleet.cairn.run("agent", "--daemon", check=None)
    assert p.returncode == 1 and "keeper already runs" in (
        fleet.cairn.state / "logs" / "agent.log").read_text()
    assert len(fleet.live("v1")) == 2


def test_rollback_works_once_the_agent_is_back_and_leaves_nothing_starting(fleet):
    """Keeper and agent killed while a release that never gets healthy is probed: the next probe
    starts the agent again, the health step fails at its deadline, and the rollback — through
    the new agent — removes the new release's instances (re-adopted in `starting`)."""
    fleet.variant("v1")
    fleet.variant("bad", mode="never_healthy", deadline="5s")
    fleet.ctl.start(env={"CAIRN_TEST_STEP_DELAY_MS": "1500"})
    fleet.deploy("v1")
    old = agent_pid(fleet)
    keeper = int(open(f"/proc/{old}/stat").read().rsplit(")", 1)[1].split()[1])
    p = fleet.cairn.run("deploy", "bad", "--json", cwd=fleet.dir, check=0)
    jid = json.loads(p.stdout)["id"]

    def in_health():
        steps = {s["step"]: s["state"] for s in fleet.ctl.job(jid)["steps"]}
        return steps.get("start") == "done" and "health" in steps
    wait_for(in_health, timeout=60, what="the health step")
    assert [i for i in fleet.instances("bad") if i["state"] == "starting"]
    os.kill(keeper, signal.SIGKILL)
    kill9(old)
    job = fleet.ctl.wait_terminal(jid, timeout=120)
    assert job["state"] == "rolled_back", job
    assert "not healthy" in job["error"], job
    assert agent_pid(fleet) not in (None, old)
    assert fleet.instances("bad") == [] or all(
        i["state"] in ("stopped",) for i in fleet.instances("bad"))
    assert len(fleet.live("v1")) == 2
    with Load(fleet.port) as load:
        load.wait_count(20)
    assert load.failures() == [] and set(load.by_release()) == {fleet.ids["v1"]}
