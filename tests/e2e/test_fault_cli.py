"""`cairn fault` as a client (toxiproxy-cli's verbs, flags and messages, --json, exit codes),
and a toxiproxy-cli session replayed as the plain HTTP calls the Go client makes."""
import json
import socket

from conftest import BIN
from faultkit import (connect, echo, fault, fault_cli as cli, free_port, recv_exact,  # noqa: F401
                      rtt)

import subprocess
import pytest


def test_help_is_a_man_page():
    p = subprocess.run([BIN, "fault", "--help"], capture_output=True, text=True)
    assert p.returncode == 0
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "EXAMPLES"):
        assert section in p.stdout
    p = subprocess.run([BIN, "help", "fault"], capture_output=True, text=True)
    assert "cairn fault toxic add" in p.stdout


def test_cli_verbs_text(fault, echo):
    port = free_port()
    assert cli(fault, "create", "redis", "-l", f"127.0.0.1:{port}", "-u", echo.addr).stdout == \
        "Created new proxy redis\n"
    out = cli(fault, "list").stdout
    assert "redis" in out and f"127.0.0.1:{port}" in out and "enabled" in out
    assert cli(fault, "toxic", "add", "redis", "-t", "latency", "-a", "latency=30").stdout == \
        "Added downstream latency toxic 'latency_downstream' on proxy 'redis'\n"
    c = connect(f"127.0.0.1:{port}")
    assert rtt(c) >= 0.03
    assert cli(fault, "toxic", "add", "redis", "-t", "timeout", "-u", "-n", "cut", "--tox", "0",
               "-a", "timeout=100").stdout == \
        "Added upstream timeout toxic 'cut' on proxy 'redis'\n"
    assert cli(fault, "toxic", "update", "redis", "-n", "latency_downstream",
               "-a", "jitter=2").stdout == "Updated toxic 'latency_downstream' on proxy 'redis'\n"
    out = cli(fault, "inspect", "redis").stdout
    assert "latency_downstream\tlatency\tdownstream" in out and "jitter=2" in out
    assert "cut\ttimeout\tupstream\ttoxicity=0" in out
    assert cli(fault, "toxic", "remove", "redis", "-n", "latency_downstream").stdout == \
        "Removed toxic 'latency_downstream' on proxy 'redis'\n"
    assert rtt(c) < 0.03
    assert cli(fault, "toggle", "redis").stdout == "Proxy redis is now disabled\n"
    with pytest.raises(ConnectionRefusedError):
        connect(f"127.0.0.1:{port}")
    assert cli(fault, "toggle", "redis").stdout == "Proxy redis is now enabled\n"
    cli(fault, "toxic", "add", "redis", "-t", "latency")
    cli(fault, "reset")
    assert fault.api.json("GET", "/proxies/redis")["toxics"] == []
    assert cli(fault, "delete", "redis").stdout == "Deleted proxy redis\n"
    assert fault.api.json("GET", "/proxies") == {}


def test_cli_json(fault, echo):
    j = json.loads(cli(fault, "create", "p", "-l", "127.0.0.1:0", "-u", echo.addr, "--json").stdout)
    assert j["name"] == "p" and j["listen"].startswith("127.0.0.1:")
    j = json.loads(cli(fault, "--json", "toxic", "add", "p", "-t", "slicer",
                       "-a", "average_size=10", "-a", "delay=5").stdout)
    assert j["attributes"] == {"average_size": 10, "size_variation": 0, "delay": 5}
    j = json.loads(cli(fault, "list", "--json").stdout)
    assert list(j) == ["p"] and len(j["p"]["toxics"]) == 1
    j = json.loads(cli(fault, "toggle", "p", "--json").stdout)
    assert j["enabled"] is False
    j = json.loads(cli(fault, "toxic", "add", "p", "-t", "nope", "--json", check=2).stdout)
    assert j["error"]["message"].startswith('HTTP 400: invalid toxic type "nope"; valid types: '
                                            'latency, bandwidth,')


def test_cli_exit_codes(fault, echo):
    p = cli(fault, "inspect", "missing", check=2)
    assert "HTTP 404: proxy not found" in p.stderr
    cli(fault, "create", "p", "-l", "127.0.0.1:0", "-u", echo.addr)
    assert "HTTP 409" in cli(fault, "create", "p", "-l", "127.0.0.1:0", "-u", echo.addr,
                             check=2).stderr
    cli(fault, "create", "q", check=2)  # usage: -l and -u are required
    cli(fault, "toxic", "add", "p", "-t", "latency", "-a", "novalue", check=2)
    cli(fault, "frobnicate", check=2)
    p = subprocess.run([BIN, "fault", "list", "--addr", f"127.0.0.1:{free_port()}"],
                       capture_output=True, text=True)
    assert p.returncode == 1 and "cairn fault serve" in p.stderr


def test_serve_usage_errors():
    p = subprocess.run([BIN, "fault", "serve", "--threads", "0"], capture_output=True, text=True)
    assert p.returncode == 2
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    p = subprocess.run([BIN, "fault", "serve", "--listen", "127.0.0.1:%d" % s.getsockname()[1]],
                       capture_output=True, text=True, timeout=10)
    s.close()
    assert p.returncode != 0 and "address already in use" in p.stderr


def test_serve_config_file_populates(tmp_path, echo):
    from faultkit import start_server, stop_server
    cfg = tmp_path / "toxiproxy.json"
    cfg.write_text(json.dumps([{"name": "db", "listen": "127.0.0.1:0", "upstream": echo.addr}]))
    s = start_server("--config", str(cfg))
    try:
        p = s.api.json("GET", "/proxies/db")
        c = connect(p["listen"])
        c.sendall(b"ok")
        assert recv_exact(c, 2) == b"ok"
    finally:
        stop_server(s)


def test_replay_toxiproxy_cli_session(fault, echo):
    """The HTTP calls toxiproxy-cli (Go client) makes for the README's CLI example, as sent."""
    port = free_port()
    api = fault.api
    # toxiproxy-cli create -l localhost:PORT -u UPSTREAM redis
    st, text, _ = api.call("POST", "/proxies", raw=json.dumps(
        {"name": "redis", "listen": f"localhost:{port}", "upstream": echo.addr, "enabled": True,
         "toxics": None}).encode())
    assert st == 201
    created = json.loads(text)
    assert created["listen"] == f"127.0.0.1:{port}"
    # toxiproxy-cli list
    assert list(api.json("GET", "/proxies")) == ["redis"]
    # toxiproxy-cli toxic add -t latency -a latency=1000 redis  (name "" → default)
    t = api.json("POST", "/proxies/redis/toxics", raw=json.dumps(
        {"name": "", "type": "latency", "stream": "downstream", "toxicity": 1,
         "attributes": {"latency": 1000}}).encode())
    assert t["name"] == "latency_downstream" and t["attributes"]["latency"] == 1000
    # toxiproxy-cli toxic update -n latency_downstream -a latency=20 redis
    t = api.json("PATCH", "/proxies/redis/toxics/latency_downstream", raw=json.dumps(
        {"name": "", "type": "", "toxicity": 1, "attributes": {"latency": 20}}).encode())
    assert t["attributes"] == {"latency": 20, "jitter": 0}
    c = connect(f"127.0.0.1:{port}")
    assert 0.02 <= rtt(c) < 0.5
    # toxiproxy-cli inspect redis
    assert len(api.json("GET", "/proxies/redis")["toxics"]) == 1
    # toxiproxy-cli toggle redis: GET, then the whole proxy back with enabled flipped
    p = api.json("GET", "/proxies/redis")
    p["enabled"] = False
    assert api.json("POST", "/proxies/redis", raw=json.dumps(p).encode())["enabled"] is False
    with pytest.raises(ConnectionRefusedError):
        connect(f"127.0.0.1:{port}")
    p["enabled"] = True
    assert api.json("PATCH", "/proxies/redis", raw=json.dumps(p).encode())["listen"] == \
        f"127.0.0.1:{port}"
    # toxiproxy-cli toxic remove -n latency_downstream redis
    assert api.call("DELETE", "/proxies/redis/toxics/latency_downstream")[0] == 204
    c = connect(f"127.0.0.1:{port}")
    assert rtt(c) < 0.02
    # toxiproxy-cli delete redis
    assert api.call("DELETE", "/proxies/redis")[0] == 204
    assert api.json("GET", "/proxies") == {}
