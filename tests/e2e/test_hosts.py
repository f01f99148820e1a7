"""Deploys to hosts reached over SSH (network namespaces with sshd, hostlib.py): urlshort goes
to web1 and web2 with its objects pushed (a second release pushes only what changed), the
instances serve inside each namespace, a killed ssh link is re-established mid-job, a host
whose sshd is down fails the job with a message naming the host and what to do, and `cairn
status` answers at once with a host down or hung, showing the others."""
import json
import os
import random
import re
import shutil
import signal
import time

import pytest

from conftest import BIN, EXAMPLES
from hostlib import ssh_hosts  # noqa: F401 (fixture)
from rolloutlib import AgentController, stop_local_agent
from ctlutil import wait_for


def app_tree(src, hosts, bin_path, version):
    """urlshort v1 with `hosts:` set to the test hosts. Its acceptance check stays: each host's
    agent sends it to its own instances (POST …/instances/{iid}/check)."""
    yml = (src / "cairn.yml").read_text()
    yml = re.sub(r"(?m)^hosts:.*$", "hosts:\n" + "".join(
        f"  - {h.yaml(bin_path)}\n" for h in hosts), yml)
    yml = re.sub(r"(?m)^instances: 3", "instances: 2", yml)
    yml = re.sub(r"(?m)^listen: \d+", f"listen: {18000 + os.getpid() % 1000}", yml)
    (src / "cairn.yml").write_text(yml)
    if version:
        with open(src / "app.py", "a") as f:
            f.write(f"\n# {version}\n")


@pytest.fixture
def fleet(cairn, tmp_path, ssh_hosts):  # noqa: F811
    hosts = ssh_hosts(2)
    cairn.state.mkdir(parents=True, exist_ok=True)
    ids = {}
    for v, extra in (("v1", None), ("v1b", "v1b: one changed file")):
        src = tmp_path / f"urlshort-{v}"
        shutil.copytree(EXAMPLES / "urlshort" / "v1", src)
        app_tree(src, hosts, BIN, extra)
        # a larger file too, the same in both releases: 3 MiB through the ssh forward once
        (src / "static.bin").write_bytes(random.Random(7).randbytes(3 << 20))
        ids[v] = cairn.run("build", "--tag", v, cwd=src, check=0).stdout.strip().splitlines()[-1]
    ctl = AgentController(cairn, tmp_path)
    ctl.base_env.update(ssh_hosts.env)
    yield ctl, ids, hosts, tmp_path / "urlshort-v1"
    ctl.stop()
    ssh_left = [p for p in os.listdir("/proc") if p.isdigit() and
                str(cairn.state / "hosts") in _cmdline(p)]
    assert ssh_left == [], "ssh processes outlived the controller"
    stop_local_agent(cairn)


def _cmdline(pid):
    try:
        return open(f"/proc/{pid}/cmdline").read().replace("\0", " ")
    except OSError:
        return ""


def deploy(ctl, rel, key):
    st, b, _ = ctl.request("POST", "/v1/apps/urlshort/deploys", {"release": rel},
                           {"Idempotency-Key": key})
    assert st in (200, 202), b
    return b["id"]


def step_detail(job, host, step):
    done = [s for s in job["steps"] if s["host"] == host and s["step"] == step and
            s["state"] == "done"]
    assert len(done) == 1, job["steps"]
    d = done[0]["detail"]
    return json.loads(d) if isinstance(d, str) else d


def ssh_pid(cairn, host):
    p = cairn.state / "hosts" / f"{host}.pid"
    return int(p.read_text()) if p.exists() else 0


def test_two_host_deploy_pushes_objects_and_serves(cairn, fleet):
    ctl, ids, hosts, src = fleet
    ctl.start()
    t0 = time.monotonic()
    j = ctl.wait_terminal(deploy(ctl, ids["v1"], "v1"), timeout=180)
    took = time.monotonic() - t0
    assert j["state"] == "succeeded", json.dumps(j, indent=1)
    print(f"two-host deploy of urlshort v1 (2 instances per host): {took:.2f} s;",
          ", ".join(f"{s['host']}/{s['step']} {s['duration_ms']} ms" for s in j["steps"]))
    for h in hosts:
        d = step_detail(j, h.name, "ensure_objects")
        # a fresh host lacks everything: the manifest and every object it names
        assert d["missing"] == d["objects"] == d["pushed"] > 3 and d["verified"], d
        assert d["pushed_bytes"] > 3 << 20, d
        assert (h.state / "objects").is_dir()
    st = cairn.json("status", cwd=src)
    assert [x["host"] for x in st["hosts"]] == ["web1", "web2"], st
    for h, hs in zip(hosts, st["hosts"]):
        assert hs["ok"], hs
        inst = [i for i in hs["instances"] if i["release"] == ids["v1"]]
        assert len(inst) == 2 and all(i["state"] == "running" for i in inst), hs
        for i in inst:
            # the instance lives in the host's namespace: its port answers there
            status, body = h.http(i["port"])
            assert status == 200, (h.name, body)
            # ... and its process is one of the namespace's
            assert i["pid"] in h.pids()
    # a release that shares all files but one: only that object and the manifest travel
    j2 = ctl.wait_terminal(deploy(ctl, ids["v1b"], "v1b"), timeout=180)
    assert j2["state"] == "succeeded", json.dumps(j2, indent=1)
    for h in hosts:
        d = step_detail(j2, h.name, "ensure_objects")
        assert d["pushed"] == 2 and d["missing"] == 2 and d["objects"] > 3, d
    st = cairn.json("status", cwd=src)
    for hs in st["hosts"]:
        assert {i["release"] for i in hs["instances"]} == {ids["v1b"]}, hs


def test_object_bigger_than_one_request_goes_in_parts(cairn, fleet, tmp_path):
    # an agent takes at most 64 MiB per request: a 70 MiB file (a fat binary, a model, a jar)
    # travels in 32 MiB parts and is hashed whole on the host before anything uses it
    ctl, ids, hosts, _ = fleet
    src = tmp_path / "urlshort-big"
    shutil.copytree(EXAMPLES / "urlshort" / "v1", src)
    app_tree(src, hosts, BIN, "big: one 70 MiB file")
    big = random.Random(70).randbytes(70 << 20)
    (src / "model.bin").write_bytes(big)
    rel = cairn.run("build", "--tag", "big", cwd=src, check=0).stdout.strip().splitlines()[-1]
    ctl.start()
    j = ctl.wait_terminal(deploy(ctl, rel, "big"), timeout=300)
    assert j["state"] == "succeeded", json.dumps(j, indent=1)
    for h in hosts:
        d = step_detail(j, h.name, "ensure_objects")
        assert d["pushed_bytes"] > 70 << 20 and d["verified"], d
        served = h.state / "releases" / rel.split(":")[1] / "model.bin"
        assert served.stat().st_size == len(big) and served.read_bytes() == big
        assert not list((h.state / "tmp").glob("part-*")), "a part file was left behind"


def test_killed_ssh_link_is_reestablished_mid_job(cairn, fleet):
    ctl, ids, hosts, src = fleet
    # each step takes a little longer, so the kill lands in the middle of the job
    ctl.start(env={"CAIRN_TEST_STEP_DELAY_MS": "300"})
    jid = deploy(ctl, ids["v1"], "v1")

    def web1_started():
        j = ctl.job(jid)
        return any(s["host"] == "web1" and s["step"] == "start" and s["state"] == "done"
                   for s in j["steps"])
    wait_for(web1_started, timeout=120, what="web1's start step")
    old = ssh_pid(cairn, "web1")
    assert old > 0
    os.kill(old, signal.SIGKILL)
    j = ctl.wait_terminal(jid, timeout=180)
    assert j["state"] == "succeeded", json.dumps(j, indent=1)
    new = ssh_pid(cairn, "web1")
    assert new > 0 and new != old
    assert "connecting again" in ctl.log_text() or "repairing the link" in ctl.log_text()
    st = cairn.json("status", cwd=src)
    assert all(hs["ok"] and len(hs["instances"]) == 2 for hs in st["hosts"]), st


def test_host_with_sshd_down_fails_the_job_naming_it(cairn, fleet):
    ctl, ids, hosts, src = fleet
    hosts[1].stop_sshd()
    ctl.start()
    j = ctl.wait_terminal(deploy(ctl, ids["v1"], "v1"), timeout=180)
    assert j["state"] in ("failed", "rolled_back"), j
    text = json.dumps(j)
    assert "host web2: cannot reach it over SSH" in text, text
    assert "check that sshd runs there" in text and "deploy again" in text
    # web1 was done first and is left as the job's rules say: nothing runs half-way on web2
    assert not (hosts[1].state / "agent.sock").exists()


def test_remote_agent_killed_mid_job_is_started_again(cairn, fleet):
    ctl, ids, hosts, src = fleet
    ctl.start(env={"CAIRN_TEST_STEP_DELAY_MS": "300"})
    jid = deploy(ctl, ids["v1"], "v1")

    def web1_started():
        return any(s["host"] == "web1" and s["step"] == "start" and s["state"] == "done"
                   for s in ctl.job(jid)["steps"])
    wait_for(web1_started, timeout=120, what="web1's start step")
    lock = hosts[0].state / "agent" / "lock"
    old = int(lock.read_text().split()[0])
    os.kill(old, signal.SIGKILL)
    j = ctl.wait_terminal(jid, timeout=180)
    assert j["state"] == "succeeded", json.dumps(j, indent=1)
    # the agent's keeper started it again at once (or, without one, the controller's repair of
    # the link would have); it re-adopted the instances
    new = int(lock.read_text().split()[0])
    assert new != old and new in hosts[0].pids()
    assert f"keeper: the agent (pid {old}) killed by signal 9" in (
        hosts[0].state / "logs" / "agent.log").read_text()
    st = cairn.json("status", cwd=src)
    web1 = st["hosts"][0]
    assert web1["ok"] and len(web1["instances"]) == 2, web1
    assert {i["release"] for i in web1["instances"]} == {ids["v1"]}


def test_host_without_cairn_says_how_to_fix_it(cairn, fleet, tmp_path):
    ctl, ids, hosts, src = fleet
    bad = tmp_path / "urlshort-nocairn"
    shutil.copytree(EXAMPLES / "urlshort" / "v1", bad)
    app_tree(bad, hosts, "/nonexistent/cairn", "no cairn there")
    rel = cairn.run("build", cwd=bad, check=0).stdout.strip().splitlines()[-1]
    ctl.start()
    j = ctl.wait_terminal(deploy(ctl, rel, "nocairn"), timeout=120)
    assert j["state"] == "failed", j
    text = json.dumps(j)
    assert "host web1: cannot start the agent there" in text, text
    assert "/nonexistent/cairn" in text and "install cairn on web1" in text


def test_status_answers_with_a_host_down_or_hung(cairn, fleet):
    """`cairn status` shows the reachable host's instances, marks the other UNREACHABLE with
    the reason and exits 1 — with web2's sshd gone (refused at once) and with it hung (the
    TCP handshake completes, nothing answers: ssh would wait its 5 s ConnectTimeout)."""
    ctl, ids, hosts, src = fleet
    web1, web2 = hosts
    ctl.start()
    j = ctl.wait_terminal(deploy(ctl, ids["v1"], "v1"), timeout=180)
    assert j["state"] == "succeeded", json.dumps(j, indent=1)

    def check(why):
        t0 = time.monotonic()
        p = cairn.run("status", cwd=src, check=1)
        took = time.monotonic() - t0
        out = p.stdout
        w1 = out[out.index("host web1:"):out.index("host web2:")]
        assert w1.splitlines()[0] == "host web1:", out
        assert w1.count(" running ") == 2 and ids["v1"][7:19] in w1, out
        assert f"host web2: UNREACHABLE: host web2: {why}" in out, out
        st = json.loads(cairn.run("status", "--json", cwd=src, check=1).stdout)
        h1, h2 = st["hosts"]
        assert h1["host"] == "web1" and h1["ok"], h1
        assert [i["state"] for i in h1["instances"]] == ["running", "running"], h1
        assert h2["host"] == "web2" and not h2["ok"] and why in h2["error"], h2
        assert "instances" not in h2
        return took

    # down: web2's sshd is gone, and the ssh link the controller had with it
    web2.stop_sshd()
    os.kill(ssh_pid(cairn, "web2"), signal.SIGKILL)
    check("cannot reach it over SSH")
    # hung: an sshd that takes connections but never answers. ssh gives up after its 5 s
    # ConnectTimeout, and status used to wait for it, host after host; now each host gets
    # 1.5 s. Not a performance bar: a generous bound below the old wait.
    web2.start_sshd()
    os.kill(web2.sshd.pid, signal.SIGSTOP)
    try:
        took = check("no SSH connection to")
        assert took < 4, f"status took {took:.1f} s with a hung host"
    finally:
        os.kill(web2.sshd.pid, signal.SIGCONT)
