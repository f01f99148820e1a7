"""The faults: section of cairn.yml: `cairn fault serve -c FILE` and `cairn serve -c FILE` run the
declared proxies with their toxics (and `cairn serve` the Toxiproxy-compatible API on
faults.listen); a bad section is refused with FILE:LINE:COL before anything listens."""
import json
import os
import select
import signal
import socket
import subprocess
import time

import pytest

from conftest import BIN
from faultkit import Api, connect, echo, free_port, recv_exact  # noqa: F401 (fixture)

APP = """app: demo
run:
  command: ["python3", "app.py"]
listen: 8080
"""


def faults_yml(upstream, api="127.0.0.1:0", latency=60):
    return f"""faults:
  listen: {api}
  proxies:
    - name: redis
      listen: 127.0.0.1:0
      upstream: {upstream}
      enabled: true
      toxics:
        - {{ name: lag, type: latency, stream: downstream, toxicity: 1.0, attributes: {{ latency: {latency}, jitter: 0 }} }}
    - name: cut
      listen: 127.0.0.1:0
      upstream: {upstream}
      enabled: false
    - name: plain
      listen: 127.0.0.1:0
      upstream: {upstream}
      toxics:
        - {{ type: limit_data, attributes: {{ bytes: 5 }} }}
        - {{ type: slow_close, stream: upstream }}
"""


def read_line(p, stream, want, timeout=10, seen=None):
    """Reads lines of a child's stream until one contains `want`; returns it (every line read
    is appended to `seen`)."""
    deadline = time.monotonic() + timeout
    seen = [] if seen is None else seen
    while time.monotonic() < deadline:
        r, _, _ = select.select([stream], [], [], 0.2)
        if r:
            line = stream.readline()
            if not line:
                break
            seen.append(line)
            if want in line:
                return line.strip()
        elif p.poll() is not None:
            break
    p.kill()
    raise AssertionError(f"no {want!r} line; got {seen!r}, stderr {p.stderr.read()!r}")


def stop(p):
    p.send_signal(signal.SIGTERM)
    rc = p.wait(timeout=20)
    assert rc == 0, f"exit {rc}: {p.stderr.read()}"


def rtt(listen):
    c = connect(listen)
    try:
        t = time.monotonic()
        c.sendall(b"x")
        assert recv_exact(c, 1) == b"x"
        return time.monotonic() - t
    finally:
        c.close()


def check_proxies(api):
    """The three declared proxies, as a Toxiproxy client sees them, and their effect."""
    ps = api.json("GET", "/proxies")
    assert sorted(ps) == ["cut", "plain", "redis"]
    red = ps["redis"]
    assert red["enabled"] is True
    assert red["toxics"] == [{"attributes": {"latency": 60, "jitter": 0}, "name": "lag",
                              "type": "latency", "stream": "downstream", "toxicity": 1}]
    assert [(t["name"], t["stream"]) for t in ps["plain"]["toxics"]] == [
        ("slow_close_upstream", "upstream"), ("limit_data_downstream", "downstream")]
    assert ps["cut"]["enabled"] is False
    # latency: every round trip takes at least the configured 60 ms
    times = [rtt(red["listen"]) for _ in range(3)]
    assert min(times) >= 0.060, times
    assert min(times) < 0.5, times
    # down: refused
    with pytest.raises(OSError):
        connect(ps["cut"]["listen"], timeout=2)
    # limit_data: the connection closes after 5 bytes downstream
    c = connect(ps["plain"]["listen"])
    c.sendall(b"0123456789")
    got = b""
    c.settimeout(10)
    while True:
        d = c.recv(100)
        if not d:
            break
        got += d
    c.close()
    assert got == b"01234"
    return ps


def test_fault_serve_config_file(tmp_path, echo):  # noqa: F811
    """A full cairn.yml: its faults.listen is the API address when --listen is not given."""
    (tmp_path / "cairn.yml").write_text(APP + faults_yml(echo.addr))
    p = subprocess.Popen([BIN, "fault", "serve", "-c", str(tmp_path / "cairn.yml")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = read_line(p, p.stdout, "listening on")
        check_proxies(Api(line.rsplit(" ", 1)[1]))
    finally:
        stop(p)


def test_fault_serve_faults_only_file_and_listen_flag(tmp_path, echo):  # noqa: F811
    """A file holding only faults: is enough; --listen wins over faults.listen."""
    port = free_port()
    f = tmp_path / "faults.yml"
    f.write_text(faults_yml(echo.addr, api="127.0.0.1:1"))
    p = subprocess.Popen([BIN, "fault", "serve", "--config", str(f), "--listen",
                          f"127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        line = read_line(p, p.stdout, "listening on")
        assert line.endswith(f"127.0.0.1:{port}")
        api = Api(f"127.0.0.1:{port}")
        check_proxies(api)
        # reset brings the declared proxies back to a clean state, as Toxiproxy's does
        assert api.call("POST", "/reset")[0] == 204
        assert api.json("GET", "/proxies/redis")["toxics"] == []
        assert api.json("GET", "/proxies/cut")["enabled"] is True
    finally:
        stop(p)


@pytest.mark.parametrize("text,line,col,want", [
    ("faults:\n  proxies:\n    - {name: a, listen: \"127.0.0.1:0\", upstream: \"127.0.0.1:1\","
     " toxics: [{type: latncy}]}\n", 3, 81, 'type: "latncy" is not one of noop, latency'),
    ("faults:\n  proxies:\n    - {name: a, listen: \"127.0.0.1:0\", upstream: \"127.0.0.1:1\","
     " toxics: [{type: latency, attributes: {jitter: 1, latncy: 2}}]}\n", 3, 114,
     'unknown key "latncy" in faults.proxies[0].toxics[0].attributes; did you mean "latency"?'),
    ("faults:\n  proxies:\n    - {name: a, listen: \"127.0.0.1\", upstream: \"127.0.0.1:1\"}\n",
     3, 25, 'faults.proxies[0].listen: "127.0.0.1" is not HOST:PORT'),
    ("faults:\n  proxies:\n    - {name: a, listen: \"127.0.0.1:0\", upstream: \"h:1\"}\n"
     "    - {name: a, listen: \"127.0.0.1:0\", upstream: \"h:1\"}\n", 4, 7,
     'proxy name "a" is used twice (first at line 3)'),
])
def test_bad_section_is_refused_with_position(tmp_path, text, line, col, want):
    f = tmp_path / "cairn.yml"
    f.write_text(text)
    for argv in (["fault", "serve", "-c", str(f)],
                 ["serve", "--state", str(tmp_path / "st"), "--no-agent", "-c", str(f)]):
        p = subprocess.run([BIN, *argv], capture_output=True, text=True, timeout=30)
        assert p.returncode == 2, (argv, p.stderr)
        assert p.stderr.startswith(f"{f}:{line}:{col}: error: "), p.stderr
        assert want in p.stderr, p.stderr
    p = subprocess.run([BIN, "fault", "serve", "-c", str(f), "--json"], capture_output=True,
                       text=True, timeout=30)
    err = json.loads(p.stdout)["error"]
    assert (err["file"], err["line"], err["col"]) == (str(f), line, col)
    assert p.returncode == 2


def test_address_in_use_names_the_entry(tmp_path, echo):  # noqa: F811
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    f = tmp_path / "cairn.yml"
    f.write_text("faults:\n  proxies:\n"
                 f"    - {{name: a, listen: \"127.0.0.1:0\", upstream: \"{echo.addr}\"}}\n"
                 f"    - {{name: b, listen: \"127.0.0.1:{port}\", upstream: \"{echo.addr}\"}}\n")
    try:
        p = subprocess.run([BIN, "fault", "serve", "-c", str(f), "--listen", "127.0.0.1:0"],
                           capture_output=True, text=True, timeout=30)
    finally:
        busy.close()
    assert p.returncode == 1, p.stderr
    assert p.stderr.startswith(f"{f}:4:7: error: faults.proxies[1] (b): "), p.stderr
    assert "address already in use" in p.stderr


def test_check_shows_the_section(cairn, tmp_path, echo):  # noqa: F811
    (tmp_path / "cairn.yml").write_text(APP + faults_yml(echo.addr))
    c = cairn.json("check", "-c", str(tmp_path / "cairn.yml"))
    f = c["faults"]
    assert f["listen"] == "127.0.0.1:0"
    assert [p["name"] for p in f["proxies"]] == ["redis", "cut", "plain"]
    assert f["proxies"][0]["toxics"][0] == {"name": "lag", "type": "latency",
                                            "stream": "downstream", "toxicity": 1.0,
                                            "attributes": {"latency": 60, "jitter": 0}}
    assert f["proxies"][1]["enabled"] is False


def test_cairn_serve_runs_the_fault_api(tmp_path, echo):  # noqa: F811
    (tmp_path / "cairn.yml").write_text(APP + faults_yml(echo.addr))
    env = dict(os.environ, CAIRN_STATE=str(tmp_path / "state"))
    p = subprocess.Popen([BIN, "serve", "--no-agent", "-c", str(tmp_path / "cairn.yml")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = read_line(p, p.stderr, "fault API on")
        api = Api(line.rsplit(" ", 1)[1])
        check_proxies(api)
        assert api.json("GET", "/version") == {"version": "2.12.0"}
        # the API is the full one: a toxic added at run time works on the declared proxy
        api.toxic("plain", "latency", name="more", attributes={"latency": 40})
        plain = api.json("GET", "/proxies/plain")
        assert [t["name"] for t in plain["toxics"]] == ["slow_close_upstream",
                                                      "limit_data_downstream", "more"]
    finally:
        stop(p)


def test_cairn_serve_without_faults_listen_has_no_api(tmp_path, echo):  # noqa: F811
    """Proxies declared without faults.listen still run; nothing answers the API."""
    port = free_port()
    (tmp_path / "cairn.yml").write_text(
        APP + f"faults:\n  proxies:\n    - {{name: r, listen: \"127.0.0.1:{port}\", "
        f"upstream: \"{echo.addr}\"}}\n")
    env = dict(os.environ, CAIRN_STATE=str(tmp_path / "state"))
    p = subprocess.Popen([BIN, "serve", "--no-agent", "-c", str(tmp_path / "cairn.yml")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        seen = []
        read_line(p, p.stderr, "ready on", seen=seen)
        assert not [x for x in seen if "fault API" in x], seen
        assert rtt(f"127.0.0.1:{port}") < 5
    finally:
        stop(p)
