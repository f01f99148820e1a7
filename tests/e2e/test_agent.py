"""`cairn agent` end to end: the real binary, real instances (tests/fixtures/apps/envecho),
real sockets. Every test ends with no process of its state directory left (checked in /proc)."""
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from agentlib import Agent, answers, http_get, pid_alive, processes_of, wait_for

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("CAIRN_BIN", str(ROOT / "build" / "cairn"))
APP = ROOT / "tests" / "fixtures" / "apps" / "envecho"
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def build(state, src, extra_yml=None):
    if extra_yml is not None:
        (src / "cairn.yml").write_text(extra_yml)
    p = subprocess.run([BIN, "build", "-c", str(src / "cairn.yml")], capture_output=True,
                       text=True, env=dict(os.environ, CAIRN_STATE=str(state)), timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


@pytest.fixture
def agent(tmp_path):
    a = Agent(BIN, tmp_path / "state")
    a.state.mkdir()
    yield a
    a.cleanup()
    wait_for(lambda: not processes_of(a.state), "no process of the test's state dir")


@pytest.fixture
def rel(agent, tmp_path):
    """The envecho release, built and activated on a running agent."""
    src = tmp_path / "envecho"
    shutil.copytree(APP, src)
    rid = build(agent.state, src)
    agent.start()
    st, body = agent.call("POST", f"/v1/releases/{rid}/activate", {})
    assert st == 200, body
    return rid


def start(agent, rid, count=1, env=None, **kw):
    st, body = agent.call("POST", "/v1/apps/envecho/instances",
                          dict(release=rid, count=count, env=env or {}, **kw))
    assert st == 201, body
    return body["instances"]


def get(agent, iid):
    st, body = agent.call("GET", f"/v1/apps/envecho/instances/{iid}")
    assert st == 200, body
    return body


def test_activate_verifies_every_digest_first(agent, tmp_path):
    src = tmp_path / "envecho"
    shutil.copytree(APP, src)
    rid = build(agent.state, src)
    obj = next(p for p in (agent.state / "objects").rglob("*") if p.is_file()
               and p.read_bytes() == (src / "app.py").read_bytes())
    obj.chmod(0o644)
    obj.write_bytes(obj.read_bytes() + b"# tampered\n")
    agent.start()
    st, body = agent.call("POST", f"/v1/releases/{rid}/activate", {})
    assert st == 422, body
    assert body["error"]["code"] == "corrupt"
    assert "app.py" in body["error"]["message"]
    rels = agent.state / "releases"
    assert not rels.exists() or list(rels.iterdir()) == []  # no half-made dir, no temp dir
    # not activated: starting it is refused, nothing runs
    st, body = agent.call("POST", "/v1/apps/envecho/instances", {"release": rid})
    assert st == 409 and "activate" in body["error"]["message"]


def test_activate_is_read_only_and_idempotent(agent, tmp_path):
    src = tmp_path / "envecho"
    shutil.copytree(APP, src)
    (src / "bin").mkdir()
    (src / "bin" / "run").write_text("#!/bin/sh\necho hi\n")
    (src / "bin" / "run").chmod(0o755)
    os.symlink("bin/run", src / "run-link")
    rid = build(agent.state, src)
    agent.start()
    st, a = agent.call("POST", f"/v1/releases/{rid}/activate", {})
    assert st == 200, a
    d = Path(a["path"])
    assert d == agent.state / "releases" / rid[7:]
    assert a["files"] == 3  # regular files: app.py, cairn.yml, bin/run
    # the top is the agent's alone until an instance opens it to its app's group (0750)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE((d / "bin").stat().st_mode) == 0o555
    assert stat.S_IMODE((d / "app.py").stat().st_mode) == 0o444
    assert stat.S_IMODE((d / "bin" / "run").stat().st_mode) == 0o555
    assert os.readlink(d / "run-link") == "bin/run"
    assert subprocess.run([str(d / "run-link")], capture_output=True, text=True).stdout == "hi\n"
    # the executable is a copy: its object keeps mode 0444 and its bytes
    assert (d / "app.py").stat().st_nlink >= 2
    st, b = agent.call("POST", f"/v1/releases/{rid}/activate", {})
    assert st == 200 and b == a
    assert [p.name for p in (agent.state / "releases").iterdir()] == [rid[7:]]


def test_concurrent_activations_of_one_release(agent, tmp_path):
    import threading
    src = tmp_path / "envecho"
    shutil.copytree(APP, src)
    for k in range(200):  # enough files that the workers overlap
        (src / f"f{k:03d}.txt").write_text(f"file {k}\n" * 50)
    rid = build(agent.state, src)
    agent.start()
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        agent.call("POST", f"/v1/releases/{rid}/activate", {}))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [st for st, _ in results] == [200] * 4, results
    assert [p.name for p in (agent.state / "releases").iterdir()] == [rid[7:]]
    d = agent.state / "releases" / rid[7:]
    assert len(list(d.iterdir())) == 202


def test_three_instances_each_on_its_port_with_env(agent, rel):
    insts = start(agent, rel, count=3, env={"GREETING": "hi there"})
    assert len({i["port"] for i in insts}) == 3
    for i in insts:
        assert i["state"] == "starting" and i["pid"] > 0 and i["release"] == rel
        wait_for(lambda: answers(i["port"]), f"instance {i['id']} to answer")
        st, body = http_get(i["port"], "/env")
        env = json.loads(body)
        assert env["PORT"] == str(i["port"])
        assert env["CAIRN_RELEASE"] == rel
        assert env["CAIRN_INSTANCE"] == i["id"]
        assert env["CAIRN_DATA"] == str(agent.state / "data" / "envecho")
        assert env["FROM_MANIFEST"] == "yes" and env["GREETING"] == "hi there"
        assert "CAIRN_STATE" not in env  # a small, documented base environment only
    st, body = agent.call("GET", "/v1/apps/envecho/instances")
    assert [i["id"] for i in body["instances"]] == [i["id"] for i in insts]
    st, body = agent.call("GET", "/v1/instances")
    assert len(body["instances"]) == 3
    # a probe moves an instance from starting to running
    iid = insts[0]["id"]
    st, p = agent.call("POST", f"/v1/apps/envecho/instances/{iid}/probe", {"http": "/healthz"})
    assert st == 200 and p["ok"] is True and p["status"] == 200, p
    assert get(agent, iid)["state"] == "running"
    st, p = agent.call("POST", f"/v1/apps/envecho/instances/{iid}/probe", {"http": "/nope"})
    assert p["ok"] is False and p["status"] == 404
    st, p = agent.call("POST", f"/v1/apps/envecho/instances/{iid}/probe", {"http": None})
    assert p["ok"] is True and p["status"] is None


def test_crash_is_restarted_with_backoff(agent, rel):
    (i,) = start(agent, rel, env={"MODE": "crash-once"})
    cur = wait_for(lambda: (lambda j: j if j["restarts"] == 1 and j["pid"] else None)(
        get(agent, i["id"])), "one restart")
    assert cur["last_exit"] == "exited with status 3"
    assert cur["pid"] != i["pid"] and cur["port"] == i["port"]
    wait_for(lambda: answers(i["port"]), "the restarted instance to answer")
    st, body = agent.call("GET", f"/v1/apps/envecho/instances/{i['id']}/logs")
    lines = [l["line"] for l in body["lines"]]
    assert "crashing once" in lines and f"started {i['port']}" in lines


def test_crash_loop_fails_instead_of_spinning(agent, rel):
    (i,) = start(agent, rel, env={"MODE": "crash"})
    cur = wait_for(lambda: (lambda j: j if j["state"] == "failed" else None)(get(agent, i["id"])),
                   "the crash loop to be detected")
    assert cur["restarts"] == 4  # 5 exits within 30s
    assert cur["pid"] == 0 and cur["last_exit"] == "exited with status 3"
    # for longer than any backoff so far, nothing moves: a spinning supervisor would show it
    quiet_until = time.monotonic() + 0.8
    while time.monotonic() < quiet_until:
        j = get(agent, i["id"])
        assert j["restarts"] == 4 and j["state"] == "failed" and j["pid"] == 0
    st, body = agent.call("DELETE", f"/v1/apps/envecho/instances/{i['id']}")
    assert st == 200 and body["state"] == "stopped"
    st, body = agent.call("GET", f"/v1/apps/envecho/instances/{i['id']}")
    assert st == 404


def test_exec_failure_is_failed_with_the_message(agent, tmp_path):
    src = tmp_path / "broken"
    src.mkdir()
    (src / "README").write_text("nothing to run\n")
    rid = build(agent.state, src, "app: broken\nbuild: { pins: warn }\nlisten: 18091\n"
                "hosts: [local]\nrun:\n  command: [\"/nonexistent/cairn-prog\"]\n")
    agent.start()
    assert agent.call("POST", f"/v1/releases/{rid}/activate", {})[0] == 200
    st, body = agent.call("POST", "/v1/apps/broken/instances", {"release": rid})
    assert st == 201, body
    (i,) = body["instances"]
    assert i["state"] == "failed" and i["restarts"] == 0
    assert "cannot run /nonexistent/cairn-prog: No such file or directory" in i["last_exit"]
    # a release is started under its own app only
    st, body = agent.call("POST", "/v1/apps/envecho/instances", {"release": rid})
    assert st == 400 and "of 'broken', not of 'envecho'" in body["error"]["message"], body


def test_stop_honours_sigterm_and_kills_the_group(agent, rel):
    (i,) = start(agent, rel, env={"MODE": "child"})
    wait_for(lambda: answers(i["port"]), "the instance to answer")
    group = wait_for(lambda: [p for p in processes_of(agent.state)
                              if p != agent.proc.pid and os.getpgid(p) == i["pid"]]
                     if len([p for p in processes_of(agent.state)
                             if p != agent.proc.pid and os.getpgid(p) == i["pid"]]) >= 2 else None,
                     "the instance and its child")
    t0 = time.monotonic()
    st, body = agent.call("DELETE", f"/v1/apps/envecho/instances/{i['id']}")
    assert st == 200 and body["state"] == "stopped", body
    assert body["last_exit"] == "exited with status 0"  # its SIGTERM handler ran
    assert time.monotonic() - t0 < 5  # did not wait for the stop timeout
    wait_for(lambda: not any(pid_alive(p) for p in group), "the whole group to be gone")


def test_stop_kills_after_stop_timeout(agent, rel):
    (i,) = start(agent, rel, env={"MODE": "ignore-term"}, stop_timeout_ms=400)
    wait_for(lambda: answers(i["port"]), "the instance to answer")
    t0 = time.monotonic()
    st, body = agent.call("DELETE", f"/v1/apps/envecho/instances/{i['id']}")
    took = time.monotonic() - t0
    assert st == 200 and body["state"] == "stopped"
    assert "signal 9" in body["last_exit"]
    assert took >= 0.4
    assert not pid_alive(i["pid"])


def test_logs_are_timestamped_lines(agent, rel):
    (i,) = start(agent, rel)
    wait_for(lambda: answers(i["port"]), "the instance to answer")
    path = f"/v1/apps/envecho/instances/{i['id']}/logs"
    body = wait_for(lambda: (lambda b: b if len(b["lines"]) >= 3 else None)(
        agent.call("GET", path)[1]), "three log lines")
    lines = body["lines"]
    assert {"stream": "stdout", "line": f"started {i['port']}"}.items() <= lines[0].items() or \
        any(l["stream"] == "stdout" and l["line"] == f"started {i['port']}" for l in lines)
    assert any(l["stream"] == "stderr" and l["line"] == "hello stderr" for l in lines)
    assert all(TS.match(l["ts"]) for l in lines)
    st, body = agent.call("GET", path + "?tail=1")
    assert st == 200 and len(body["lines"]) == 1 and body["lines"][0] == lines[-1]
    assert agent.call("GET", path + "?tail=0")[0] == 400
    logfile = agent.state / "logs" / "envecho" / f"{i['id']}.log"
    assert re.match(r"^\S+Z (stdout|stderr) ", logfile.read_text())


def test_kill9_agent_then_readopt(agent, rel):
    insts = start(agent, rel, count=2)
    for i in insts:
        wait_for(lambda: answers(i["port"]), "instances to answer")
    agent.kill9()
    for i in insts:  # nothing depends on the agent being there
        assert answers(i["port"]) and pid_alive(i["pid"])
    agent.start()
    st, body = agent.call("GET", "/v1/apps/envecho/instances")
    got = {i["id"]: i for i in body["instances"]}
    for i in insts:
        g = got[i["id"]]
        assert g["pid"] == i["pid"] and g["port"] == i["port"] and g["adopted"] is True
        assert g["state"] == "starting"
        assert answers(i["port"])
    # logs still flow: the log writers outlived the agent too
    http_get(insts[0]["port"], "/env")
    wait_for(lambda: any("GET /env" in l["line"] for l in agent.call(
        "GET", f"/v1/apps/envecho/instances/{insts[0]['id']}/logs")[1]["lines"]),
        "a request logged after the restart")
    st, body = agent.call("DELETE", f"/v1/apps/envecho/instances/{insts[0]['id']}")
    assert st == 200 and body["state"] == "stopped"
    assert "status unknown" in body["last_exit"]
    wait_for(lambda: not pid_alive(insts[0]["pid"]), "the adopted instance to be gone")
    assert pid_alive(insts[1]["pid"])


def test_adopted_instance_that_dies_is_restarted(agent, rel):
    (i,) = start(agent, rel)
    wait_for(lambda: answers(i["port"]), "the instance to answer")
    agent.kill9()
    os.killpg(i["pid"], signal.SIGKILL)
    wait_for(lambda: not pid_alive(i["pid"]), "the instance to die")
    agent.start()
    cur = wait_for(lambda: (lambda j: j if j["pid"] and j["pid"] != i["pid"] else None)(
        get(agent, i["id"])), "a restart of the instance that died")
    assert cur["restarts"] == 1 and "no agent was running" in cur["last_exit"]
    wait_for(lambda: answers(cur["port"]), "the restarted instance to answer")


def test_sigterm_leaves_instances_running_and_stop_all(agent, rel):
    insts = start(agent, rel, count=2)
    for i in insts:
        wait_for(lambda: answers(i["port"]), "instances to answer")
    assert agent.terminate() == 0
    assert not agent.sock.exists()
    for i in insts:
        assert answers(i["port"])
    p = agent.cli("agent", "--stop-all", "--json")  # no agent: from the instance table
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"stopped": 2}
    for i in insts:
        wait_for(lambda: not pid_alive(i["pid"]), "instances to be gone")
    wait_for(lambda: not processes_of(agent.state), "no log writer left")


def test_stop_all_through_the_agent(agent, rel):
    insts = start(agent, rel, count=2, env={"MODE": "ignore-term"}, stop_timeout_ms=300)
    for i in insts:
        wait_for(lambda: answers(i["port"]), "instances to answer")
    p = agent.cli("agent", "--stop-all")
    assert p.returncode == 0 and "stopped 2 instances" in p.stdout, p.stderr
    assert agent.call("GET", "/v1/instances")[1]["instances"] == []
    assert agent.up()


def test_emergency_stop_kills_within_its_bound(agent, rel):
    insts = start(agent, rel, count=3, env={"MODE": "ignore-term"})
    for i in insts:
        wait_for(lambda: answers(i["port"]), "instances to answer")
    t0 = time.monotonic()
    st, body = agent.call("POST", "/v1/apps/envecho/stop", {"timeout_ms": 2000})
    assert st == 200 and body == {"stopped": 3, "remaining": 0}, body
    assert time.monotonic() - t0 < 2.0  # SIGKILL at once, not the 5s stop timeout
    for i in insts:
        assert not pid_alive(i["pid"])


def test_second_agent_is_refused(agent, rel):
    p = agent.cli("agent", timeout=10)
    assert p.returncode == 1
    assert "another agent is already running" in p.stderr
    assert agent.up()


def test_stale_socket_is_replaced(agent):
    agent.state.mkdir(exist_ok=True)
    import socket as so
    s = so.socket(so.AF_UNIX)
    s.bind(str(agent.sock) if len(str(agent.sock)) < 100 else "/nonexistent/skip")
    s.close()  # the file stays, nobody listens
    agent.start()
    assert stat.S_IMODE(agent.sock.stat().st_mode) == 0o600


def test_status_cli(agent, rel):
    (i,) = start(agent, rel)
    p = agent.cli("agent", "status", "--json")
    assert p.returncode == 0, p.stderr
    s = json.loads(p.stdout)
    assert s["pid"] == agent.proc.pid and s["instances"][0]["id"] == i["id"]
    p = agent.cli("agent", "status")
    assert i["id"] in p.stdout and "starting" in p.stdout
    agent.kill9()
    p = agent.cli("agent", "status")
    assert p.returncode == 1 and "does not answer" in p.stderr


def test_bad_requests_get_json_errors(agent, rel):
    cases = [
        ("POST", "/v1/apps/envecho/instances", "{not json", 400, "input"),
        ("POST", "/v1/apps/envecho/instances", json.dumps({"release": "v1"}), 400, "input"),
        ("POST", "/v1/apps/envecho/instances", json.dumps({"release": rel, "count": 0}), 400,
         "input"),
        ("POST", "/v1/apps/envecho/instances", json.dumps({"release": rel, "bogus": 1}), 400,
         "input"),
        ("POST", "/v1/apps/envecho/instances", json.dumps({"release": rel, "env": {"PORT": "1"}}),
         400, "input"),
        ("POST", "/v1/apps/Bad!/instances", "{}", 400, "input"),
        ("GET", "/v1/apps/envecho/instances/i-nope", None, 404, "not_found"),
        ("GET", "/v2/nothing", None, 404, "not_found"),
        ("POST", "/v1/releases/sha256:" + "0" * 64 + "/activate", "{}", 422, "corrupt"),
    ]
    for method, path, raw, code, kind in cases:
        st, body = agent.call(method, path, raw=raw)
        assert st == code, (path, raw, body)
        assert body["error"]["code"] == kind and body["error"]["message"], body
    try:  # over the body limit: refused (evhttp may close before reading it all)
        st, body = agent.call("POST", "/v1/apps/envecho/instances", raw="x" * (2 * 1024 * 1024))
        assert st in (400, 413)
    except OSError:
        pass
    assert agent.up()
    assert agent.call("GET", "/v1/instances")[1]["instances"] == []


def test_objects_missing_has_the_controllers_parser_and_bounds(agent, rel):
    """POST /v1/objects/missing is parsed by the parser the controller uses
    (objstore_parse_digests): the same 100 000 bound, the same codes (400 a bad body, naming
    the entry; 413 too many) — docs/agent.md and docs/controller.md say the same."""
    have = sorted(p.parent.name + p.name for p in (agent.state / "objects").glob("??/*")
                  if len(p.name) == 62)
    assert have
    h, gone = have[0], "0" * 64
    st, b = agent.call("POST", "/v1/objects/missing", {"digests": [gone, h, gone]})
    assert st == 200 and b == {"missing": [gone, gone]}, b
    st, b = agent.call("POST", "/v1/objects/missing", {"digests": []})
    assert st == 200 and b == {"missing": []}, b
    for raw, want in [(json.dumps({"digests": [h, h[:-1]]}), "digests[1]"),
                      (json.dumps({"digests": [h.upper()]}), "digests[0]"),
                      (json.dumps({"digests": [], "x": 1}), 'unknown key "x"'),
                      (json.dumps({"digests": h}), "must be an array"),
                      ("[", "not JSON")]:
        st, b = agent.call("POST", "/v1/objects/missing", raw=raw)
        assert st == 400 and b["error"]["code"] == "input" and want in b["error"]["message"], b
    st, b = agent.call("POST", "/v1/objects/missing", {"digests": [h] * 100000}, timeout=60)
    assert st == 200 and b == {"missing": []}, b
    st, b = agent.call("POST", "/v1/objects/missing", {"digests": [h] * 100001}, timeout=60)
    assert st == 413 and "at most 100000" in b["error"]["message"], b
    assert agent.up()


def test_port_taken_meanwhile_gets_a_new_port(agent, rel):
    import socket as so
    (i,) = start(agent, rel)
    wait_for(lambda: answers(i["port"]), "the instance to answer")
    agent.kill9()
    os.killpg(i["pid"], signal.SIGKILL)
    wait_for(lambda: not pid_alive(i["pid"]), "the instance to die")
    thief = so.socket()
    thief.setsockopt(so.SOL_SOCKET, so.SO_REUSEADDR, 1)
    thief.bind(("127.0.0.1", i["port"]))
    thief.listen(1)
    try:
        agent.start()
        cur = wait_for(lambda: (lambda j: j if j["port"] != i["port"] and j["pid"] else None)(
            get(agent, i["id"])), "a restart on a fresh port")
        wait_for(lambda: answers(cur["port"]), "the instance on its new port")
        logs = agent.call("GET", f"/v1/apps/envecho/instances/{i['id']}/logs?tail=1000")[1]
        assert any("Address already in use" in l["line"] for l in logs["lines"])
    finally:
        thief.close()


def test_daemon_mode(agent, tmp_path):
    p = agent.cli("agent", "--daemon", timeout=30)
    assert p.returncode == 0, p.stderr
    assert agent.up()  # returns only once the socket answers
    st, info = agent.call("GET", "/v1/agent")
    pid = info["pid"]
    assert os.getsid(pid) == pid  # its own session
    assert (agent.state / "logs" / "agent.log").exists()
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pid_alive(pid), "the daemon to stop on SIGTERM")
    assert not agent.sock.exists()


def test_open_connections_are_bounded(agent):
    from agentlib import UnixHTTP
    agent.start()
    conns = []
    try:
        for _ in range(256):
            c = UnixHTTP(agent.sock, timeout=10)
            c.request("GET", "/v1/agent")
            r = c.getresponse()
            r.read()
            assert r.status == 200
            conns.append(c)  # kept open (HTTP/1.1 keep-alive)
        st, body = agent.call("GET", "/v1/agent")
        assert st == 503 and body["error"]["code"] == "busy", body
    finally:
        for c in conns:
            c.close()
    wait_for(lambda: agent.call("GET", "/v1/agent")[0] == 200, "a free connection slot")


def test_a_reused_pid_is_not_adopted(agent, rel):
    (i,) = start(agent, rel)
    wait_for(lambda: answers(i["port"]), "the instance to answer")
    agent.kill9()
    # the recorded pid now names "another" process: its recorded start time differs
    table = agent.state / "agent" / "instances.json"
    t = json.loads(table.read_text())
    t["instances"][0]["pid_start"] += 1
    table.write_text(json.dumps(t))
    try:
        agent.start()
        cur = wait_for(lambda: (lambda j: j if j["pid"] and j["pid"] != i["pid"] else None)(
            get(agent, i["id"])), "a new process instead of adopting the stranger")
        assert cur["adopted"] is False and "no agent was running" in cur["last_exit"]
        assert pid_alive(i["pid"])  # the stranger is left alone: not ours to signal
    finally:
        os.killpg(i["pid"], signal.SIGKILL)


def test_urlshort_instances_share_their_data(tmp_path):
    """The sample app under the agent: two instances, one CAIRN_DATA, real requests."""
    import http.client
    a = Agent(BIN, tmp_path / "state", env={"PATH": "/usr/bin:/bin"})
    a.state.mkdir()
    try:
        src = tmp_path / "v1"
        shutil.copytree(ROOT / "examples" / "urlshort" / "v1", src)
        rid = build(a.state, src)
        a.start()
        assert a.call("POST", f"/v1/releases/{rid}/activate", {})[0] == 200
        st, body = a.call("POST", "/v1/apps/urlshort/instances", {"release": rid, "count": 2})
        assert st == 201, body
        one, two = body["instances"]
        for i in (one, two):
            wait_for(lambda: answers(i["port"]), "urlshort to answer")
        c = http.client.HTTPConnection("127.0.0.1", one["port"], timeout=5)
        c.request("POST", "/shorten", body=json.dumps({"url": "https://example.com/x"}),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        short = json.loads(r.read())["short"]
        c.close()
        assert r.status == 200
        c = http.client.HTTPConnection("127.0.0.1", two["port"], timeout=5)
        c.request("GET", short)
        r = c.getresponse()
        r.read()
        c.close()
        assert r.status == 302 and r.getheader("Location") == "https://example.com/x"
        assert (a.state / "data" / "urlshort" / "urls.json").exists()
        st, body = a.call("POST", "/v1/apps/urlshort/stop", {"timeout_ms": 2000})
        assert body == {"stopped": 2, "remaining": 0}
    finally:
        a.cleanup()
        wait_for(lambda: not processes_of(a.state), "no process of the test's state dir")


def test_cli_usage_and_help(agent):
    p = agent.cli("agent", "--bogus")
    assert p.returncode == 2 and "cairn agent --help" in p.stderr
    p = agent.cli("agent", "--help")
    assert p.returncode == 0
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "EXAMPLES"):
        assert section in p.stdout
    p = agent.cli("agent", "status", "--json")
    assert p.returncode == 1
    assert json.loads(p.stdout)["error"]["message"]


def test_state_dir_longer_than_sun_path(tmp_path):
    a = Agent(BIN, tmp_path / ("d" * 90) / "state")
    a.state.mkdir(parents=True)
    assert len(str(a.sock)) > 108
    try:
        a.start()
        p = a.cli("agent", "status", "--json")  # the C client reaches it too
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["socket"] == str(a.sock)
        assert a.cli("agent", timeout=10).returncode == 1  # and sees it is taken
    finally:
        a.cleanup()
        wait_for(lambda: not processes_of(a.state), "no process of the test's state dir")


@pytest.fixture
def narrow_ns():
    """A network namespace whose ephemeral range is two ports (40000-40001), so that which port
    the kernel offers next is known and a clash is certain, not a one-in-28 000 chance."""
    ns = f"cairn-ports-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "netns", "exec", ns, "sh", "-c",
                        "echo 40000 40001 > /proc/sys/net/ipv4/ip_local_port_range"], check=True)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_instances_never_get_a_reserved_port(tmp_path, narrow_ns):
    # CI once failed this way: the first deploy's instance took the port the app's proxy was
    # about to bind ("bind: address already in use" at switch). The controller now names the
    # proxy port in reserved_ports and the agent skips it (and every proxy's and instance's port).
    a = Agent("ip", tmp_path / "state")
    a.state.mkdir()
    a.binary = BIN
    src = tmp_path / "envecho"
    shutil.copytree(APP, src)
    rid = build(a.state, src)
    out = open(a.log, "ab")
    a.proc = subprocess.Popen(["ip", "netns", "exec", narrow_ns, BIN, "agent", "--state",
                               str(a.state)], stdout=out, stderr=out, env=a.env,
                              start_new_session=True)
    out.close()
    try:
        wait_for(a.up, "the agent in the namespace to answer")
        assert a.call("POST", f"/v1/releases/{rid}/activate", {})[0] == 200
        for reserved, want in ((40000, 40001), (40001, 40000)):
            (i,) = start(a, rid, reserved_ports=[reserved])
            assert i["port"] == want, (reserved, i)
            st, body = a.call("DELETE", f"/v1/apps/envecho/instances/{i['id']}")
            assert st in (200, 202), body
            wait_for(lambda: a.call("GET", f"/v1/apps/envecho/instances/{i['id']}")[0] == 404,
                     "the instance to be removed")
        # one instance holds 40001; the only other port is reserved: a clear error, no instance
        (i,) = start(a, rid, reserved_ports=[40000])
        st, body = a.call("POST", "/v1/apps/envecho/instances",
                          dict(release=rid, count=1, reserved_ports=[40000]))
        assert st >= 500 and "no free loopback port" in body["error"]["message"], body
        assert [x["id"] for x in a.call("GET", "/v1/apps/envecho/instances")[1]["instances"]] \
            == [i["id"]]
        for bad in ([0], [65536], ["80"], list(range(1, 10)), 80):
            st, body = a.call("POST", "/v1/apps/envecho/instances",
                              dict(release=rid, reserved_ports=bad))
            assert st == 400 and "reserved_ports" in body["error"]["message"], (bad, body)
    finally:
        a.cleanup()
    wait_for(lambda: not processes_of(a.state), "no process of the test's state dir")


def test_object_upload_whole_and_in_parts(agent):
    import hashlib
    agent.start()
    data = random_bytes(5 << 20)
    hexd = hashlib.sha256(data).hexdigest()
    obj = agent.state / "objects" / hexd[:2] / hexd[2:]
    part = agent.state / "tmp" / f"part-{hexd}"
    size = len(data)
    cut = [0, 2 << 20, 4 << 20, size]

    def put(off, chunk, sz=size, d=hexd):
        return agent.call("PUT", f"/v1/objects/{d}?offset={off}&size={sz}", raw=chunk)

    # parts in order: 202 with what the agent holds, then 201 once the last one is hashed
    st, b = put(0, data[:cut[1]])
    assert (st, b) == (202, {"digest": hexd, "received": cut[1], "size": size}), b
    assert not obj.exists()
    # a part at the wrong offset: 409 with where to resume; what was received stays
    st, b = put(cut[2], data[cut[2]:])
    assert st == 409 and b["received"] == cut[1] and b["error"]["code"] == "conflict", b
    st, b = put(cut[1], data[cut[1]:cut[2]])
    assert st == 202 and b["received"] == cut[2], b
    st, b = put(cut[2], data[cut[2]:])
    assert (st, b) == (201, {"digest": hexd, "size": size, "added": True}), b
    assert obj.read_bytes() == data and not part.exists()
    assert oct(obj.stat().st_mode & 0o777) == "0o444"
    # once stored, any part answers that the object is whole
    assert put(0, data[:10])[1]["added"] is False
    # bytes that do not hash to the name: 422 when the last part lands, nothing stored
    bad = bytearray(data)
    bad[-1] ^= 1
    other = hashlib.sha256(b"other" + data).hexdigest()
    assert put(0, bytes(bad[:cut[2]]), d=other)[0] == 202
    st, b = put(cut[2], bytes(bad[cut[2]:]), d=other)
    assert st == 422 and b["error"]["code"] == "corrupt", b
    assert not (agent.state / "objects" / other[:2] / other[2:]).exists()
    assert not (agent.state / "tmp" / f"part-{other}").exists()
    # offset 0 starts over, whatever a part file held
    assert put(0, bytes(bad[:cut[1]]), d=other)[0] == 202
    assert put(0, data[:cut[1]], d=other)[1]["received"] == cut[1]
    # a part that overruns the size, and queries that are not a part: 400, nothing changes
    for q in ("offset=0", "size=5", "offset=-1&size=5", "offset=5&size=5", "offset=x&size=9",
              f"offset=0&size={1 << 41}"):
        st, b = agent.call("PUT", f"/v1/objects/{hexd}?{q}", raw=b"abc")
        assert st == 400 and b["error"]["code"] == "input", (q, b)
    st, b = put(size - 2, b"abc", d=other)
    assert st == 400, b
    # the whole-object form still works beside it
    small = b"hello parts\n"
    sd = hashlib.sha256(small).hexdigest()
    assert agent.call("PUT", f"/v1/objects/{sd}", raw=small)[0] == 201
    # a part file an agent was killed over is dropped when the next one starts
    assert (agent.state / "tmp" / f"part-{other}").exists()
    agent.kill9()
    agent.start()
    assert not (agent.state / "tmp" / f"part-{other}").exists()


def random_bytes(n):
    import random
    return random.Random(n).randbytes(n)
