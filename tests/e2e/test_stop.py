"""The kill switch (issue 10): `cairn stop --emergency` kills every instance of the app on
every host whatever its job was doing (a bake, a start that is not healthy yet) and nothing
starts them again; a deploy afterwards brings the app back, even of the release that was
current; the stop is in `cairn history`. Real controller, real agent, real processes."""

import pytest

from ctlutil import wait_for
from rolloutlib import Load, fleet, state_pids  # noqa: F401 (fleet: a fixture)


def instance_pids(state):
    """Live app processes of this state directory (/proc: the agent gave them CAIRN_INSTANCE)."""
    out = []
    for pid in state_pids(state):
        try:
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if any(v.startswith(b"CAIRN_INSTANCE=") for v in env):
            out.append(pid)
    return out


def job_at(fleet, jid, step):
    st, j = fleet.ctl.get(f"/v1/jobs/{jid}")
    assert st == 200, j
    if j["terminal"]:
        raise AssertionError(f"job ended before {step}: {j}")
    return any(s["step"] == step and s["state"] == "started" for s in j.get("steps", []))


@pytest.mark.parametrize("during", ["bake", "health"])
def test_stop_during_a_deploy_kills_every_instance(fleet, during):
    """Stop while the new release bakes (v1 and v2 both run) or while its instances are still
    `starting` (never healthy): no instance pid is left, none comes back after the job ends,
    and status shows none."""
    fleet.variant("v1")
    if during == "bake":
        fleet.variant("v2", bake="60s", min_requests=1)
    else:
        fleet.variant("v2", mode="never_healthy", deadline="60s")
    fleet.ctl.start()
    fleet.deploy("v1")
    with Load(fleet.port, interval=0.02) as load:
        j = fleet.cairn.json("deploy", "v2", cwd=fleet.dir)
        wait_for(lambda: job_at(fleet, j["id"], during), timeout=90, what=f"the {during} step")
        wait_for(lambda: len(fleet.live("v2")) == 2, what="v2's instances")
        s = fleet.cairn.json("stop", "--emergency", "knobs", cwd=fleet.dir)
        assert all(h["ok"] for h in s["hosts"]), s
        assert instance_pids(fleet.cairn.state) == [], "instances outlived the stop's answer"
        end = fleet.ctl.wait_terminal(j["id"], timeout=60)
    assert end["state"] == "cancelled", end
    # the job's end (its rollback included) started nothing again
    assert instance_pids(fleet.cairn.state) == []
    assert [i for i in fleet.instances() if i["state"] in ("running", "starting", "backoff")] == []
    st = fleet.cairn.json("status", cwd=fleet.dir)
    live = [i for h in st.get("hosts", []) for i in h.get("instances", [])
            if i.get("state") in ("running", "starting", "backoff")]
    assert live == [], st


def test_deploy_after_a_stop_serves_again(fleet):
    """After a stop the current release serves nothing: deploying it is real work, not a
    no-op, and the app answers again with the configured number of instances."""
    v1 = fleet.variant("v1")
    fleet.ctl.start()
    fleet.deploy("v1")
    fleet.cairn.run("stop", "--emergency", "knobs", cwd=fleet.dir, check=0)
    assert fleet.cairn.json("status", cwd=fleet.dir)["current"] == v1
    p = fleet.deploy("v1")
    assert "nothing to do" not in p.stdout
    assert fleet.job(p)["state"] == "succeeded", p.stdout
    assert len(fleet.live("v1")) == 2 and len(fleet.instances()) == 2, fleet.instances()
    assert fleet.proxy()["stopped"] is False
    with Load(fleet.port) as load:
        load.wait_count(20)
    assert load.failures() == [], load.failures()[:5]
    assert not fleet.cairn.json("status", cwd=fleet.dir).get("stopped")
    # now it is current and serving: the same deploy is a no-op again
    p = fleet.cairn.run("deploy", "v1", cwd=fleet.dir, check=0)
    assert "nothing to do" in p.stdout


def test_history_records_emergency_stops(fleet):
    fleet.variant("v1")
    fleet.ctl.start()
    fleet.deploy("v1")
    fleet.cairn.run("stop", "--emergency", "knobs", "--reason", "db on fire", cwd=fleet.dir,
                    check=0)
    st = fleet.cairn.json("status", cwd=fleet.dir)
    assert st["stopped"] is True, st
    assert "STOPPED" in fleet.cairn.run("status", cwd=fleet.dir, check=0).stdout
    h = fleet.cairn.json("history", cwd=fleet.dir)
    stops = [x for x in h["jobs"] if x["kind"] == "stop"]
    assert len(stops) == 1, h
    s = stops[0]
    assert s["state"] == "succeeded" and s["reason"] == "db on fire" and s["created_by"], s
    assert s["created_at"] and h["jobs"][0] is s  # newest first
    p = fleet.cairn.run("history", cwd=fleet.dir, check=0)
    line = [ln for ln in p.stdout.splitlines() if "stop" in ln and "db on fire" in ln]
    assert line and f"(by {s['created_by']})" in line[0], p.stdout
    assert "@" in s["created_by"]  # user@host
