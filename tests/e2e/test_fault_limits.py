"""What the fault API refuses (issue 9 items 11 and 14, issue 10's `cairn fault` messages):
listen addresses off loopback and on privileged ports, upstreams that are the API itself or
lead back to the proxy, attribute values out of range (negative, or large enough to overflow
the engine's time arithmetic), unknown attributes and toxic types — each with a message that
says what would have been right, and nothing changed."""
import json
import socket
import subprocess

import pytest

from conftest import BIN
from faultkit import (connect, echo, fault, fault_cli as cli, free_port, recv_exact,  # noqa: F401
                      start_server, stop_server)


def err(text):
    return json.loads(text)["error"]


# ---- item 14: attribute ranges ----

@pytest.mark.parametrize("type,attr,value", [
    ("latency", "latency", -1),
    ("latency", "jitter", -5),
    ("latency", "latency", 2 ** 62),          # UBSan: signed overflow, and no delay at all
    ("latency", "latency", 2 ** 31),
    ("slicer", "delay", 2 ** 62),             # us * 1000 overflowed
    ("slicer", "average_size", -3),
    ("slow_close", "delay", 2 ** 62),
    ("timeout", "timeout", -1),
    ("reset_peer", "timeout", 2 ** 63 - 1),
    ("bandwidth", "rate", -1),
    ("limit_data", "bytes", -1),
    ("limit_data", "bytes", 2 ** 53 + 1),
])
def test_attribute_out_of_range_refused(fault, echo, type, attr, value):
    fault.api.proxy("x", echo.addr)
    st, text, _ = fault.api.call("POST", "/proxies/x/toxics",
                                 {"type": type, "attributes": {attr: value}})
    assert st == 400, text
    assert f"attribute {attr} of a {type} toxic is {value}; it must be from 0 to" in err(text)
    assert fault.api.json("GET", "/proxies/x/toxics") == []  # nothing was added


def test_attribute_bounds_accepted_and_update_checked(fault, echo):
    fault.api.proxy("x", echo.addr)
    t = fault.api.toxic("x", "latency", attributes={"latency": 2 ** 31 - 1, "jitter": 0})
    assert t["attributes"] == {"latency": 2 ** 31 - 1, "jitter": 0}
    assert fault.api.toxic("x", "limit_data", attributes={"bytes": 2 ** 53})["attributes"] == \
        {"bytes": 2 ** 53}
    # an update out of range changes nothing
    st, text, _ = fault.api.call("PATCH", "/proxies/x/toxics/latency_downstream",
                                 {"attributes": {"latency": -7}})
    assert st == 400 and "is -7; it must be from 0 to 2147483647 ms" in err(text)
    assert fault.api.json("GET", "/proxies/x/toxics/latency_downstream")["attributes"][
        "latency"] == 2 ** 31 - 1


def test_huge_latency_through_the_engine_holds_the_bytes(fault, echo):
    """The largest accepted latency delays (it used to wrap to no delay at 2^62)."""
    p = fault.api.proxy("x", echo.addr)
    fault.api.toxic("x", "latency", attributes={"latency": 2 ** 31 - 1})
    c = connect(p["listen"])
    c.sendall(b"hi")
    c.settimeout(0.5)
    with pytest.raises(socket.timeout):
        c.recv(2)
    c.close()


# ---- issue 10: attributes and types in cairn's words ----

def test_unknown_attribute_refused_with_suggestion(fault, echo):
    fault.api.proxy("x", echo.addr)
    st, text, _ = fault.api.call("POST", "/proxies/x/toxics",
                                 {"type": "latency", "attributes": {"latency": 5, "jiter": 1}})
    assert st == 400
    assert err(text) == ('bad request body: a latency toxic has no attribute "jiter"; did you '
                         'mean "jitter"? (its attributes: latency, jitter)')
    st, text, _ = fault.api.call("POST", "/proxies/x/toxics",
                                 {"type": "noop", "attributes": {"x": 1}})
    assert st == 400 and err(text) == 'bad request body: a noop toxic has no attributes; remove "x"'
    assert fault.api.json("GET", "/proxies/x/toxics") == []


def test_cli_messages_speak_cairn(fault, echo):
    cli(fault, "create", "p", "-l", "127.0.0.1:0", "-u", echo.addr)
    p = cli(fault, "toxic", "add", "p", "-t", "latncy", "-a", "latency=5", check=2)
    assert 'invalid toxic type "latncy"; valid types: latency, bandwidth, slow_close, timeout, ' \
           'reset_peer, slicer, limit_data, noop; did you mean "latency"?' in p.stderr
    p = cli(fault, "toxic", "add", "p", "-t", "latency", "-a", "latency=abc", check=2)
    assert "Go struct" not in p.stderr and "unmarshal" not in p.stderr
    assert 'attribute latency of a latency toxic must be a whole number of ms from 0 to ' \
           '2147483647, not the text "abc"' in p.stderr
    p = cli(fault, "toxic", "add", "p", "-t", "latency", "-a", "latency=1.5", check=2)
    assert "must be a whole number of ms from 0 to 2147483647, not 1.5" in p.stderr
    p = cli(fault, "toxic", "add", "p", "-t", "latency", "-a", "latenc=5", check=2)
    assert 'has no attribute "latenc"; did you mean "latency"?' in p.stderr
    p = cli(fault, "toxic", "add", "p", "-t", "down", check=2)
    assert "down is not a toxic: disable the proxy" in p.stderr
    assert json.loads(cli(fault, "inspect", "p", "--json").stdout)["toxics"] == []


# ---- item 14: loops; item 11: the API as an upstream ----

def test_upstream_that_is_the_proxy_itself_refused(fault, echo):
    port = free_port()
    for up in (f"127.0.0.1:{port}", f"localhost:{port}", f"0.0.0.0:{port}"):
        st, text, _ = fault.api.call("POST", "/proxies", {
            "name": "self", "listen": f"127.0.0.1:{port}", "upstream": up})
        assert st == 400, (up, text)
        assert "is this proxy's own listen address" in err(text)
    assert fault.api.json("GET", "/proxies") == {}
    # an update that would close the loop changes nothing
    p = fault.api.proxy("a", echo.addr)
    st, text, _ = fault.api.call("PATCH", "/proxies/a", {"upstream": p["listen"]})
    assert st == 400 and "own listen address" in err(text)
    q = fault.api.json("GET", "/proxies/a")
    assert q["upstream"] == echo.addr and q["listen"] == p["listen"] and q["enabled"]
    c = connect(p["listen"])
    c.sendall(b"ok")
    assert recv_exact(c, 2) == b"ok"
    c.close()


def test_loop_through_another_proxy_refused(fault, echo):
    pa, pb = free_port(), free_port()
    fault.api.proxy("a", f"127.0.0.1:{pb}", listen=f"127.0.0.1:{pa}")
    st, text, _ = fault.api.call("POST", "/proxies", {
        "name": "b", "listen": f"127.0.0.1:{pb}", "upstream": f"127.0.0.1:{pa}"})
    assert st == 400 and "(through proxy 'a')" in err(text), text
    # populate stops at the loop; the proxies before it stay, as for any populate failure
    st, text, _ = fault.api.call("POST", "/populate", [
        {"name": "c", "listen": "127.0.0.1:0", "upstream": echo.addr},
        {"name": "b", "listen": f"127.0.0.1:{pb}", "upstream": f"127.0.0.1:{pa}"}])
    assert st == 400 and [p["name"] for p in json.loads(text)["proxies"]] == ["c"]
    assert sorted(fault.api.json("GET", "/proxies")) == ["a", "c"]


def test_upstream_that_is_the_api_refused(fault, echo):
    host, port = fault.addr.rsplit(":", 1)
    for up in (fault.addr, f"localhost:{port}", f"0.0.0.0:{port}"):
        st, text, _ = fault.api.call("POST", "/proxies", {
            "name": "api", "listen": "127.0.0.1:0", "upstream": up})
        assert st == 403, (up, text)
        assert "is the fault API's own address" in err(text)
    p = fault.api.proxy("a", echo.addr)
    st, text, _ = fault.api.call("PATCH", "/proxies/a", {"upstream": fault.addr})
    assert st == 403
    assert fault.api.json("GET", "/proxies/a")["upstream"] == echo.addr
    p = cli(fault, "create", "b", "-l", "127.0.0.1:0", "-u", fault.addr, check=2)
    assert "HTTP 403: upstream" in p.stderr
    assert sorted(fault.api.json("GET", "/proxies")) == ["a"]


# ---- item 11: where proxies may listen ----

@pytest.mark.parametrize("listen", ["0.0.0.0:0", "[::]:0", "0.0.0.0:%d", "[::1]:80",
                                    "127.0.0.1:80", "192.0.2.1:0"])
def test_listen_off_loopback_or_privileged_refused(fault, echo, listen):
    if "%d" in listen:
        listen = listen % free_port()
    st, text, _ = fault.api.call("POST", "/proxies", {"name": "x", "listen": listen,
                                                      "upstream": echo.addr})
    assert st == 403, text
    msg = err(text)
    assert ("not a loopback address" in msg and "--allow-listen" in msg) or \
        "privileged port" in msg, msg
    # disabled, as a populate entry, or as an update: refused all the same, nothing made
    st, _, _ = fault.api.call("POST", "/proxies", {"name": "x", "listen": listen,
                                                   "upstream": echo.addr, "enabled": False})
    assert st == 403
    st, text, _ = fault.api.call("POST", "/populate", [
        {"name": "ok", "listen": "127.0.0.1:0", "upstream": echo.addr},
        {"name": "x", "listen": listen, "upstream": echo.addr}])
    assert st == 403 and json.loads(text)["proxies"] is None
    assert fault.api.json("GET", "/proxies") == {}
    p = fault.api.proxy("y", echo.addr)
    st, _, _ = fault.api.call("PATCH", "/proxies/y", {"listen": listen})
    assert st == 403
    assert fault.api.json("GET", "/proxies/y")["listen"] == p["listen"]


def test_allow_listen(echo):
    s = start_server("--allow-listen", "0.0.0.0", "--allow-listen", "::1/128")
    try:
        p = s.api.proxy("any", echo.addr, listen="0.0.0.0:0")
        assert p["listen"].startswith("0.0.0.0:")
        c = connect("127.0.0.1:" + p["listen"].rsplit(":", 1)[1])
        c.sendall(b"hi")
        assert recv_exact(c, 2) == b"hi"
        c.close()
        st, text, _ = s.api.call("POST", "/proxies", {"name": "v6", "listen": "[::]:0",
                                                      "upstream": echo.addr})
        assert st == 403, text   # :: is not in 0.0.0.0/32 nor ::1/128
        # an allowed listener still may not lead to the API
        st, text, _ = s.api.call("POST", "/proxies", {"name": "api", "listen": "0.0.0.0:0",
                                                      "upstream": s.addr})
        assert st == 403, text
    finally:
        stop_server(s)
    p = subprocess.run([BIN, "fault", "serve", "--allow-listen", "10.0.0.0/33"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "is not an address or ADDRESS/BITS" in p.stderr


def test_config_proxy_to_the_api_refused(tmp_path, echo):
    port = free_port()
    cfg = tmp_path / "cairn.yml"
    cfg.write_text(f"faults:\n  listen: \"127.0.0.1:{port}\"\n  proxies:\n"
                   f"    - {{name: loop, listen: \"127.0.0.1:0\", upstream: \"127.0.0.1:{port}\"}}\n")
    p = subprocess.run([BIN, "fault", "serve", "-c", str(cfg)], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode != 0 and "is the fault API's own address" in p.stderr, p.stderr
    cfg.write_text("faults:\n  proxies:\n"
                   f"    - {{name: open, listen: \"0.0.0.0:0\", upstream: \"{echo.addr}\"}}\n")
    p = subprocess.run([BIN, "fault", "serve", "--listen", "127.0.0.1:0", "-c", str(cfg)],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "cairn.yml:3:" in p.stderr and "not a loopback address" in \
        p.stderr, p.stderr
