"""The controller with the real agent: urlshort v1 deploys (three instances pass health and
acceptance), v2 (story 003's bug) fails acceptance and is rolled back to v1, and a controller
killed right after `start` resumes without starting the instances a second time."""
import json
import os
import shutil
import signal

import pytest

from conftest import EXAMPLES
from agentlib import answers
from ctlutil import has_test_hooks, wait_for
from rolloutlib import AgentController, stop_local_agent

needs_hooks = pytest.mark.skipif(not has_test_hooks(), reason="needs a -Dtest_hooks=true build")


def agent_instances(cairn):
    p = cairn.run("agent", "status", "--json", check=0)
    return json.loads(p.stdout)


@pytest.fixture
def urlshort(cairn, tmp_path):
    cairn.state.mkdir(parents=True, exist_ok=True)
    src = tmp_path / "urlshort"
    shutil.copytree(EXAMPLES / "urlshort", src)
    ids = {}
    for v in ("v1", "v2"):
        out = cairn.run("build", "--tag", v, cwd=src / v, check=0).stdout
        ids[v] = out.strip().splitlines()[-1]
    ctl = AgentController(cairn, tmp_path)
    yield ctl, ids, src
    ctl.stop()
    stop_local_agent(cairn)


def serving(ids, cairn, rel):
    return [i for i in agent_instances(cairn)["instances"]
            if i["release"] == ids[rel] and i["state"] in ("running", "starting")]


def test_deploy_then_bad_release_rolls_back(cairn, urlshort):
    ctl, ids, src = urlshort
    ctl.start()
    p = cairn.run("deploy", "v1", "--wait", cwd=src / "v1", check=0, timeout=180)
    assert "succeeded" in p.stdout
    assert len(serving(ids, cairn, "v1")) == 3
    p = cairn.run("deploy", "v2", "--wait", cwd=src / "v1", check=1, timeout=180)
    assert "rolled_back" in p.stdout and "acceptance 'shorten'" in p.stdout
    st = cairn.json("status", cwd=src / "v1")
    assert st["current"] == ids["v1"] and st["last_good"] == ids["v1"]
    assert len(serving(ids, cairn, "v1")) == 3 and serving(ids, cairn, "v2") == []
    ups = st["upstreams"]["upstreams"]
    assert len(ups) == 3 and {u["release"] for u in ups} == {ids["v1"]}
    hosts = st["hosts"]
    assert [h["host"] for h in hosts] == ["local"] and hosts[0]["ok"]
    assert {i["release"] for i in hosts[0]["instances"]} == {ids["v1"]}
    p = cairn.run("status", cwd=src / "v1", check=0)
    assert "host local:" in p.stdout and p.stdout.count("running") == 3
    assert "not the current release" not in p.stdout


@needs_hooks
@pytest.mark.parametrize("step", ["ensure_objects", "activate", "start", "health", "accept",
                                  "switch", "bake", "cleanup"])
def test_crash_after_each_step_does_not_repeat_it(cairn, urlshort, step):
    ctl, ids, src = urlshort
    ctl.start(env={"CAIRN_TEST_CRASH_AFTER": f"{step}:local"})
    st, b, _ = ctl.request("POST", "/v1/apps/urlshort/deploys", {"release": "v1"},
                           {"Idempotency-Key": "once"})
    assert st == 202
    assert ctl.proc.wait(timeout=120) == 137
    # the instances keep serving while the controller is down: a client sees no failure
    inst = serving(ids, cairn, "v1")
    assert len(inst) == (3 if step not in ("ensure_objects", "activate") else 0)
    for i in inst:
        wait_for(lambda: answers(i["port"]), what="instance to answer")
    failed = sum(1 for _ in range(30) for i in inst if not answers(i["port"]))
    assert failed == 0
    ctl.start()
    j = ctl.wait_terminal(b["id"], timeout=180)
    assert j["state"] == "succeeded", j
    for name in ("ensure_objects", "activate", "start", "health", "accept", "switch", "bake",
                 "cleanup"):
        runs = [s for s in j["steps"] if s["step"] == name]
        assert len(runs) == 1 and runs[0]["state"] == "done", (name, j["steps"])
    assert len(serving(ids, cairn, "v1")) == 3
    assert len(agent_instances(cairn)["instances"]) == 3
