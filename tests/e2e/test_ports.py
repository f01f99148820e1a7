"""A port has one owner (issue 10 #2): a second `cairn proxy` (either mode, any thread count)
on a port a proxy already listens on fails with "address already in use" and the first keeps
every connection; a proxy with several loops still spreads its connections over them; on an
agent, two apps with the same `listen` are refused with the name of the app that holds it,
and `cairn check` and deploy refuse it before anything starts."""
import subprocess

import pytest

from conftest import BIN
from rolloutlib import fleet  # noqa: F401 (a fixture)
from test_hproxy import get, proxy, start_upstream  # noqa: F401 (proxy: a fixture)


@pytest.mark.parametrize("mode,threads", [("http", "1"), ("http", "2"), ("tcp", "1"), ("tcp", "2")])
def test_second_proxy_on_a_port_is_refused(proxy, tmp_path, mode, threads):
    a, b = start_upstream("a"), start_upstream("b")
    first = proxy([a.addr], "--mode", mode, "--threads", threads)
    ups = tmp_path / "ups-b"
    ups.write_text(b.addr + "\n")
    for m2, t2 in [("http", "1"), ("http", "2"), ("tcp", "1"), ("tcp", "2")]:
        p = subprocess.run([BIN, "proxy", "--listen", f"127.0.0.1:{first.port}", "--upstreams-file",
                            str(ups), "--mode", m2, "--threads", t2], capture_output=True,
                           text=True, timeout=30)
        assert p.returncode != 0, (m2, t2, p.stdout)
        assert "listening" not in p.stdout and "address already in use" in p.stderr, p.stderr
    # every request still reaches the first proxy's upstream
    for i in range(20):
        c = first.conn()
        st, _, r = get(c, f"/n{i}", headers={"Connection": "close"})
        assert st == 200 and r.getheader("X-Upstream") == "a"
        c.close()


def test_several_loops_share_the_connections(proxy):
    """Two loops on one shared listener (no SO_REUSEPORT) still serve: 16 keep-alive clients,
    three rounds each. (How evenly the loops share the work is measured, not tested: see
    bench/proxy.)"""
    a = start_upstream("a")
    px = proxy([a.addr], "--threads", "2")
    conns = [px.conn() for _ in range(16)]
    for rnd in range(3):
        for i, c in enumerate(conns):
            assert get(c, f"/r{rnd}-{i}")[0] == 200
    for c in conns:
        c.close()


@pytest.fixture
def agent(tmp_path):
    from agentlib import Agent
    a = Agent(BIN, tmp_path / "state")
    a.start()
    yield a
    a.terminate()
    a.cleanup()


@pytest.mark.parametrize("mode,stopped", [("http", False), ("tcp", False), ("tcp", True)])
def test_agent_refuses_a_second_app_on_a_port_with_the_owners_name(agent, mode, stopped):
    """The agent knows every app's proxy on its host: a second app asking for a port another
    app's proxy holds is refused (409) naming that app — also when the holder is a tcp proxy
    stopped by an emergency stop, which holds no socket — and the first keeps it."""
    from rolloutlib import free_port
    port = free_port()
    a = {"listen": f"127.0.0.1:{port}", "mode": mode, "upstreams": [], "stopped": stopped}
    st, ans = agent.call("PUT", "/v1/apps/alpha/proxy", a)
    assert st == 200, ans
    for listen in (f"127.0.0.1:{port}", f"0.0.0.0:{port}"):
        st, ans = agent.call("PUT", "/v1/apps/beta/proxy", dict(a, listen=listen, stopped=False))
        assert st == 409, ans
        msg = ans["error"]["message"]
        assert "address already in use" in msg and "alpha" in msg, msg
    st, ans = agent.call("GET", "/v1/apps/beta/proxy")
    assert st == 404
    st, ans = agent.call("GET", "/v1/apps/alpha/proxy")
    assert st == 200 and ans["listen"] == f"127.0.0.1:{port}"
    # the owner itself may switch in place, and another port is free for beta
    assert agent.call("PUT", "/v1/apps/alpha/proxy", a)[0] == 200
    st, ans = agent.call("PUT", "/v1/apps/beta/proxy",
                         dict(a, listen=f"127.0.0.1:{free_port()}", stopped=False))
    assert st == 200, ans


def test_two_apps_on_one_host_same_listen_refused_by_check_and_deploy(fleet, tmp_path):
    """The user's story: two apps with the same listen both deployed and split the traffic.
    Now `cairn check` (a controller answers) and `cairn deploy` refuse the second, naming the
    first; the first keeps every request."""
    from rolloutlib import Load
    import shutil
    fleet.variant("v1")
    fleet.ctl.start()
    fleet.deploy("v1")
    other = tmp_path / "other"
    shutil.copytree(fleet.dir, other)
    yml = other / "cairn.yml"
    yml.write_text(yml.read_text().replace("app: knobs", "app: other"))
    p = fleet.cairn.run("check", cwd=other, check=1)
    assert "address already in use" in p.stderr and "app knobs" in p.stderr, p.stderr
    err = fleet.cairn.json("check", cwd=other, check=1)["error"]
    assert "app knobs" in err["message"]
    fleet.cairn.run("build", cwd=other, check=0)
    p = fleet.cairn.run("deploy", "--wait", cwd=other, check=1)
    assert "address already in use" in p.stderr and "app knobs" in p.stderr, p.stderr
    h = fleet.cairn.run("history", "--app", "other", "--json")
    assert h.returncode == 2 or json_jobs(h.stdout) == []  # nothing was queued
    assert [i for i in fleet.instances() if i["app"] == "other"] == []
    with Load(fleet.port) as load:
        load.wait_count(20)
    assert load.failures() == [] and set(load.by_release()) == {fleet.ids["v1"]}
    # another port is fine
    yml.write_text(yml.read_text().replace(f"listen: {fleet.port}", f"listen: {free_port_()}"))
    p = fleet.cairn.run("check", cwd=other, check=0)
    assert "no other app listens there" in p.stdout


def json_jobs(text):
    import json
    return json.loads(text).get("jobs", [])


def free_port_():
    from rolloutlib import free_port
    return free_port()
