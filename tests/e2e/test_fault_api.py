"""The Toxiproxy-compatible API, quirk by quirk (shared/reference/toxiproxy-api.md §1.1–1.5):
status codes, JSON shapes and key order, error bodies, validation order, populate. Each test
names the section it checks."""
import json
import socket

import pytest

from faultkit import Api, connect, echo, fault, recv_exact, wait_for  # noqa: F401

LATENCY = {"attributes": {"latency": 0, "jitter": 0}, "name": "latency_downstream",
           "type": "latency", "stream": "downstream", "toxicity": 1}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# ---- §1.1 process and HTTP behaviour ----

def test_request_id_header_on_every_response(fault):
    for method, path in [("GET", "/proxies"), ("GET", "/nope"), ("GET", "/proxies/x"),
                         ("GET", "/version")]:
        _, _, h = fault.api.call(method, path)
        assert h.get("X-Toxiproxy-Request-Id"), (method, path, h)


def test_browser_user_agent_gets_403(fault):
    st, text, h = fault.api.call("GET", "/proxies", headers={"User-Agent": "Mozilla/5.0 (X11)"})
    assert (st, text) == (403, "User agent not allowed\n")
    st, _, _ = fault.api.call("GET", "/proxies", headers={"User-Agent": "curl/7.88"})
    assert st == 200


def test_unknown_path_is_plain_404_and_wrong_method_405(fault):
    st, text, h = fault.api.call("GET", "/nope")
    assert (st, text) == (404, "404 page not found\n")
    assert h["Content-Type"].startswith("text/plain")
    assert fault.api.call("GET", "/proxies/")[0] == 404
    assert fault.api.call("DELETE", "/proxies")[0] == 405
    assert fault.api.call("GET", "/reset")[0] == 405
    assert fault.api.call("PUT", "/proxies/x/toxics")[0] == 405


def test_api_binds_loopback_by_default():
    from faultkit import BIN
    import subprocess
    p = subprocess.run([BIN, "fault", "--help"], capture_output=True, text=True)
    assert "127.0.0.1:8474" in p.stdout and p.returncode == 0


# ---- §1.2 JSON objects ----

def test_proxy_shape_and_key_order(fault, echo):
    p = fault.api.proxy("redis", echo.addr, listen="localhost:0")
    assert list(p) == ["name", "listen", "upstream", "enabled", "toxics"]
    assert p["listen"].startswith("127.0.0.1:") and not p["listen"].endswith(":0")
    assert p["toxics"] == [] and p["enabled"] is True and p["upstream"] == echo.addr


def test_empty_listen_binds_loopback(fault, echo):
    # Go binds every interface for "" (and ":PORT"); cairn keeps proxies on loopback
    p = fault.api.proxy("any", echo.addr, listen="")
    host, port = p["listen"].rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 0
    assert fault.api.proxy("colon", echo.addr, listen=":0")["listen"].startswith("127.0.0.1:")
    c = connect(f"127.0.0.1:{port}")
    c.sendall(b"hi")
    assert recv_exact(c, 2) == b"hi"


def test_disabled_proxy_keeps_listen_as_given(fault, echo):
    p = fault.api.proxy("d", echo.addr, listen="localhost:0", enabled=False)
    assert p["listen"] == "localhost:0" and p["enabled"] is False
    p = fault.api.json("PATCH", "/proxies/d", {"enabled": True})
    assert p["listen"].startswith("127.0.0.1:") and p["enabled"] is True


def test_toxic_shape_every_attribute_and_chain_order(fault, echo):
    fault.api.proxy("p", echo.addr)
    t = fault.api.toxic("p", "latency")
    assert t == LATENCY and list(t) == ["attributes", "name", "type", "stream", "toxicity"]
    assert json.dumps(t["toxicity"]) == "1"
    fault.api.toxic("p", "slicer", stream="upstream", attributes={"average_size": 10})
    fault.api.toxic("p", "bandwidth", stream="downstream", name="bw", attributes={"rate": 5})
    fault.api.toxic("p", "limit_data", stream="upstream", toxicity=0.5)
    names = [t["name"] for t in fault.api.json("GET", "/proxies/p/toxics")]
    assert names == ["slicer_upstream", "limit_data_upstream", "latency_downstream", "bw"]
    t = fault.api.json("GET", "/proxies/p/toxics/slicer_upstream")
    assert t["attributes"] == {"average_size": 10, "size_variation": 0, "delay": 0}
    _, text, _ = fault.api.call("GET", "/proxies/p/toxics/limit_data_upstream")
    assert '"toxicity":0.5}' in text
    assert fault.api.toxic("p", "noop")["attributes"] == {}


def test_stream_echoed_as_sent_and_parsed_case_insensitively(fault, echo):
    fault.api.proxy("p", echo.addr)
    t = fault.api.toxic("p", "latency", stream="UPSTREAM")
    assert t["stream"] == "UPSTREAM" and t["name"] == "latency_UPSTREAM"
    toxics = fault.api.json("GET", "/proxies/p/toxics")
    assert toxics[0]["stream"] == "UPSTREAM"


def test_error_body_is_json_with_newline_but_text_plain(fault):
    st, text, h = fault.api.call("GET", "/proxies/missing")
    assert st == 404
    assert text == '{"error":"proxy not found","status":404}\n'
    assert h["Content-Type"] == "text/plain; charset=utf-8"
    assert h["X-Content-Type-Options"] == "nosniff"


def test_bind_failure_is_500_with_go_text(fault, echo):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    st, text, _ = fault.api.call("POST", "/proxies", {"name": "x", "listen": f"127.0.0.1:{port}",
                                                      "upstream": echo.addr})
    s.close()
    assert st == 500
    assert json.loads(text) == {"error": f"listen tcp 127.0.0.1:{port}: bind: address already in use",
                                "status": 500}
    assert fault.api.json("GET", "/proxies") == {}


@pytest.mark.parametrize("body,status,msg", [
    ("{", 400, "bad request body"),
    ("", 400, "bad request body: EOF"),
    ('{"upstream":"a:1"}', 400, "missing required field: name"),
    ('{"name":"x"}', 400, "missing required field: upstream"),
    ('{"name":5,"upstream":"a:1"}', 400, "bad request body: json: cannot unmarshal number"),
    ('[1]', 400, "bad request body"),
])
def test_create_errors(fault, body, status, msg):
    st, text, _ = fault.api.call("POST", "/proxies", raw=body.encode())
    assert st == status
    j = json.loads(text)
    assert j["status"] == status and j["error"].startswith(msg), j


# ---- §1.3 endpoints ----

def test_list_is_object_sorted_by_name(fault, echo):
    assert fault.api.json("GET", "/proxies") == {}
    for n in ["b", "a", "c"]:
        fault.api.proxy(n, echo.addr)
    _, text, _ = fault.api.call("GET", "/proxies")
    assert list(json.loads(text)) == ["a", "b", "c"]


def test_create_duplicate_409_and_upstream_not_dialled(fault):
    p = fault.api.proxy("x", "nowhere.invalid:1")
    assert p["upstream"] == "nowhere.invalid:1"
    st, text, _ = fault.api.call("POST", "/proxies", {"name": "x", "upstream": "a:1",
                                                      "listen": "127.0.0.1:0"})
    assert (st, json.loads(text)["error"]) == (409, "proxy already exists")


def test_unreachable_upstream_accepts_then_closes(fault):
    dead = free_port()
    p = fault.api.proxy("x", f"127.0.0.1:{dead}")
    c = connect(p["listen"])  # the connect succeeds ...
    try:
        assert c.recv(10) == b""  # ... then EOF (or RST), never ECONNREFUSED
    except ConnectionResetError:
        pass


def test_update_subset_ignores_name_and_extra_keys(fault, echo):
    p = fault.api.proxy("x", echo.addr)
    fault.api.toxic("x", "latency")
    full = dict(p, name="other", toxics=[{"junk": 1}], unknown=3)
    for method in ("POST", "PATCH"):
        q = fault.api.json(method, "/proxies/x", full)
        assert q["name"] == "x" and q["listen"] == p["listen"] and len(q["toxics"]) == 1
    q = fault.api.json("PATCH", "/proxies/x", {})
    assert q["upstream"] == echo.addr and q["enabled"] is True


def test_update_upstream_drops_connections_and_restarts(fault, echo):
    other = type(echo)(lambda c: c.sendall(b"OTHER") or c.recv(10))
    try:
        p = fault.api.proxy("x", echo.addr)
        c = connect(p["listen"])
        c.sendall(b"a")
        assert recv_exact(c, 1) == b"a"
        q = fault.api.json("PATCH", "/proxies/x", {"upstream": other.addr})
        assert q["listen"] == p["listen"] and q["enabled"] is True
        assert c.recv(10) == b""  # dropped
        c2 = connect(p["listen"])
        assert recv_exact(c2, 5) == b"OTHER"
    finally:
        other.close()


def test_disable_closes_listener_and_connections_enable_relistens(fault, echo):
    p = fault.api.proxy("x", echo.addr)
    c = connect(p["listen"])
    c.sendall(b"a")
    assert recv_exact(c, 1) == b"a"
    assert fault.api.json("PATCH", "/proxies/x", {"enabled": False})["enabled"] is False
    assert c.recv(10) == b""
    with pytest.raises(ConnectionRefusedError):
        connect(p["listen"])
    fault.api.json("PATCH", "/proxies/x", {"enabled": True})
    c = connect(p["listen"])
    c.sendall(b"b")
    assert recv_exact(c, 1) == b"b"


def test_delete_is_204_and_closes_connections(fault, echo):
    p = fault.api.proxy("x", echo.addr)
    c = connect(p["listen"])
    c.sendall(b"a")
    recv_exact(c, 1)
    st, text, _ = fault.api.call("DELETE", "/proxies/x")
    assert (st, text) == (204, "")
    assert c.recv(10) == b""
    assert fault.api.call("DELETE", "/proxies/x")[0] == 404


def test_toxic_create_is_200_also_on_disabled_proxy(fault, echo):
    fault.api.proxy("x", echo.addr, enabled=False)
    st, _, _ = fault.api.call("POST", "/proxies/x/toxics", {"type": "timeout"})
    assert st == 200
    st, text, _ = fault.api.call("GET", "/proxies/x/toxics/nope")
    assert (st, json.loads(text)["error"]) == (404, "toxic not found")
    st, text, _ = fault.api.call("POST", "/proxies/nope/toxics", {"type": "timeout"})
    assert (st, json.loads(text)["error"]) == (404, "proxy not found")


def test_toxic_update_merges_attributes_keeps_toxicity_and_identity(fault, echo):
    fault.api.proxy("x", echo.addr)
    fault.api.toxic("x", "latency", attributes={"latency": 100, "jitter": 7}, toxicity=0.25)
    t = fault.api.json("PATCH", "/proxies/x/toxics/latency_downstream",
                       {"attributes": {"latency": 5}, "name": "new", "type": "timeout",
                        "stream": "upstream"})
    assert t["attributes"] == {"latency": 5, "jitter": 7}
    assert (t["name"], t["type"], t["stream"], t["toxicity"]) == \
        ("latency_downstream", "latency", "downstream", 0.25)
    t = fault.api.json("POST", "/proxies/x/toxics/latency_downstream", {"toxicity": 1})
    assert t["toxicity"] == 1 and t["attributes"]["latency"] == 5
    st, _, _ = fault.api.call("PATCH", "/proxies/x/toxics/nope", {"toxicity": 1})
    assert st == 404


def test_toxic_delete_204(fault, echo):
    fault.api.proxy("x", echo.addr)
    fault.api.toxic("x", "latency")
    assert fault.api.call("DELETE", "/proxies/x/toxics/latency_downstream")[:2] == (204, "")
    assert fault.api.call("DELETE", "/proxies/x/toxics/latency_downstream")[0] == 404
    assert fault.api.json("GET", "/proxies/x/toxics") == []


def test_reset_reenables_and_removes_toxics_with_empty_body(fault, echo):
    fault.api.proxy("x", echo.addr, enabled=False)
    fault.api.proxy("y", echo.addr)
    fault.api.toxic("y", "latency")
    fault.api.toxic("x", "timeout", stream="upstream")
    st, text, _ = fault.api.call("POST", "/reset", raw=b"")
    assert (st, text) == (204, "")
    for p in fault.api.json("GET", "/proxies").values():
        assert p["enabled"] is True and p["toxics"] == []


def test_version_exact_bytes_and_type(fault):
    st, text, h = fault.api.call("GET", "/version")
    assert (st, text) == (200, '{"version": "2.12.0"}\n')
    assert h["Content-Type"] == "application/json;charset=utf-8"


def test_metrics_not_registered_by_default(fault):
    assert fault.api.call("GET", "/metrics")[0] == 404


# ---- compatibility gotchas (§1.3) ----

def test_no_content_type_required(fault, echo):
    body = json.dumps({"name": "x", "listen": "127.0.0.1:0", "upstream": echo.addr}).encode()
    st, _, _ = fault.api.call("POST", "/proxies", raw=body,
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert st == 201


def test_null_means_absent(fault, echo):
    p = fault.api.json("POST", "/proxies", {"name": "x", "listen": "127.0.0.1:0",
                                            "upstream": echo.addr, "enabled": None}, want=201)
    assert p["enabled"] is True
    t = fault.api.toxic("x", "latency", stream=None, toxicity=None, attributes=None)
    assert (t["stream"], t["toxicity"]) == ("downstream", 1)


@pytest.mark.parametrize("value,ok", [(1000, True), (1.5, False), ("1000", False), (1000.0, False)])
def test_integer_attributes_must_be_integral(fault, echo, value, ok):
    fault.api.proxy("x", echo.addr)
    st, text, _ = fault.api.call("POST", "/proxies/x/toxics",
                                 raw=('{"type":"latency","attributes":{"latency":%s}}'
                                      % json.dumps(value)).encode())
    assert st == (200 if ok else 400), text


def test_unknown_keys_ignored_and_keys_case_insensitive(fault, echo):
    p = fault.api.json("POST", "/proxies", {"NAME": "x", "Listen": "127.0.0.1:0",
                                            "upstream": echo.addr, "bogus": [1, 2]}, want=201)
    assert p["name"] == "x"
    t = fault.api.toxic("x", "latency", attributes={"LATENCY": 3}, whatever=True)
    assert t["attributes"]["latency"] == 3
    # an unknown *attribute* is refused (Go ignores it: a typo silently did nothing)
    fault.api.toxic("x", "latency", name="typo", attributes={"other": 1}, want=400)


# ---- §1.4 toxic validation order ----

@pytest.mark.parametrize("body,status,msg", [
    ({"type": "latency", "stream": "sideways"}, 400,
     "stream was invalid, can be either upstream or downstream"),
    ({"type": "latency", "stream": ""}, 400, "stream was invalid, can be either upstream or downstream"),
    ({"type": "bogus", "stream": "sideways"}, 400,
     "stream was invalid, can be either upstream or downstream"),
    ({"type": "bogus"}, 400, "invalid toxic type"),
    ({"type": "bogus", "name": "taken"}, 400, "invalid toxic type"),
    ({"type": "latency", "name": "taken", "attributes": {"latency": "x"}}, 409,
     "toxic already exists"),
    ({"type": "timeout", "name": "taken", "stream": "upstream"}, 409, "toxic already exists"),
    ({"type": "latency", "attributes": {"latency": "x"}}, 400, "bad request body"),
])
def test_toxic_validation_order(fault, echo, body, status, msg):
    fault.api.proxy("x", echo.addr)
    fault.api.toxic("x", "slow_close", name="taken")
    st, text, _ = fault.api.call("POST", "/proxies/x/toxics", body)
    j = json.loads(text)
    assert (st, j["status"]) == (status, status) and j["error"].startswith(msg), j


# ---- §1.5 populate ----

def test_populate_validates_everything_first(fault, echo):
    body = [{"name": "a", "listen": "127.0.0.1:0", "upstream": echo.addr},
            {"listen": "127.0.0.1:0", "upstream": echo.addr}]
    st, text, _ = fault.api.call("POST", "/populate", body)
    assert st == 400
    assert json.loads(text) == {"error": "missing required field: name at proxy 2", "status": 400,
                                "proxies": None}
    body[1] = {"name": "b", "listen": "127.0.0.1:0"}
    st, text, _ = fault.api.call("POST", "/populate", body)
    assert json.loads(text)["error"] == "missing required field: upstream at proxy 2"
    assert fault.api.json("GET", "/proxies") == {}


def test_populate_creates_keeps_and_replaces(fault, echo):
    port = free_port()
    r = fault.api.json("POST", "/populate", [
        {"name": "keep", "listen": f"127.0.0.1:{port}", "upstream": echo.addr},
        {"name": "zero", "listen": "127.0.0.1:0", "upstream": echo.addr, "enabled": None},
        {"name": "off", "listen": "127.0.0.1:0", "upstream": echo.addr, "enabled": False},
    ], want=201)
    assert [p["name"] for p in r["proxies"]] == ["keep", "zero", "off"]
    assert [p["enabled"] for p in r["proxies"]] == [True, True, False]
    fault.api.toxic("keep", "latency")
    fault.api.toxic("zero", "latency")
    fault.api.json("PATCH", "/proxies/keep", {"enabled": False})
    r = fault.api.json("POST", "/populate", [
        {"name": "keep", "listen": f"localhost:{port}", "upstream": echo.addr, "enabled": True},
        {"name": "zero", "listen": "127.0.0.1:0", "upstream": echo.addr},
    ], want=201)
    keep, zero = r["proxies"]
    # same resolved listen and upstream: untouched, toxics and disabled state kept
    assert keep["toxics"] and keep["enabled"] is False
    # port 0 always replaces: the toxics are gone
    assert zero["toxics"] == []


def test_populate_stops_at_first_failure_and_keeps_the_done(fault, echo):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    busy = s.getsockname()[1]
    st, text, _ = fault.api.call("POST", "/populate", [
        {"name": "a", "listen": "127.0.0.1:0", "upstream": echo.addr},
        {"name": "b", "listen": f"127.0.0.1:{busy}", "upstream": echo.addr},
        {"name": "c", "listen": "127.0.0.1:0", "upstream": echo.addr},
    ])
    s.close()
    j = json.loads(text)
    assert st == 500 and j["status"] == 500 and "address already in use" in j["error"]
    assert [p["name"] for p in j["proxies"]] == ["a"]
    assert list(fault.api.json("GET", "/proxies")) == ["a"]


def test_populate_empty_and_bad_bodies(fault):
    assert fault.api.json("POST", "/populate", [], want=201) == {"proxies": []}
    st, text, _ = fault.api.call("POST", "/populate", {"name": "x"})
    assert st == 400 and json.loads(text)["proxies"] is None


def test_metrics_with_proxy_metrics_flag(echo):
    from faultkit import start_server, stop_server
    s = start_server("--proxy-metrics")
    try:
        p = s.api.proxy("m", echo.addr)
        c = connect(p["listen"])
        c.sendall(b"hello")
        assert recv_exact(c, 5) == b"hello"
        st, text, h = s.api.call("GET", "/metrics")
        assert st == 200 and h["Content-Type"].startswith("text/plain")
        lab = f'listener="{p["listen"]}",proxy="m",upstream="{echo.addr}"'
        for metric in ("received", "sent"):
            assert f"# TYPE toxiproxy_proxy_{metric}_bytes_total counter" in text
            for d in ("upstream", "downstream"):
                assert f'toxiproxy_proxy_{metric}_bytes_total{{direction="{d}",{lab}}} 5' in text, text
    finally:
        stop_server(s)
