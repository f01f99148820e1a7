"""End-to-end tests of `cairn serve`: idempotent deploy requests under concurrency, the job
state machine, events with resume, limits and errors. The controller runs with the test-only
log executor (CAIRN_TEST_EXECUTOR=log, test_hooks builds), which records every step it runs."""
import json
import threading

import pytest

from ctlutil import Controller, UnixHTTPConnection, has_test_hooks, make_app, wait_for

pytestmark = pytest.mark.skipif(not has_test_hooks(), reason="needs a -Dtest_hooks=true build")


@pytest.fixture
def ctl(cairn, tmp_path):
    cairn.state.mkdir(parents=True, exist_ok=True)
    c = Controller(cairn, tmp_path, args=["--queue-max", "64"])
    yield c
    c.stop()


def deploy(ctl, app, body, key=None):
    h = {"Content-Type": "application/json"}
    if key:
        h["Idempotency-Key"] = key
    return ctl.request("POST", f"/v1/apps/{app}/deploys", body, h)


def test_200_concurrent_clients_20_keys_make_20_jobs(cairn, ctl):
    rel = make_app(cairn)
    ctl.start()
    results = {}
    lock = threading.Lock()

    def client(i):
        key = f"key-{i % 20}"
        body = {"release": rel, "reason": f"r{i % 20}", "force": True}
        for _ in range(200):  # 409 = the same key is still being recorded: retry
            st, b, h = deploy(ctl, "demo", body, key)
            if st != 409:
                break
        with lock:
            results.setdefault(key, []).append((st, b["id"], h.get("Location")))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 20
    ids = set()
    for key, rs in results.items():
        assert len(rs) == 10
        assert {r[1] for r in rs} == {rs[0][1]}, f"{key}: clients got different jobs"
        assert sorted(r[0] for r in rs).count(202) == 1, f"{key}: {rs}"
        assert all(r[0] in (200, 202) for r in rs)
        assert rs[0][2] == f"/v1/jobs/{rs[0][1]}"
        ids.add(rs[0][1])
    assert len(ids) == 20
    st, jobs = ctl.get("/v1/jobs?limit=1000")
    assert len(jobs["jobs"]) == 20
    for jid in ids:
        assert ctl.wait_terminal(jid)["state"] == "succeeded"
    # every job ran each step exactly once
    counts = ctl.steps_run()
    assert len(counts) == 20 * 8 and set(counts.values()) == {1}


def test_same_key_other_body_is_422(cairn, ctl):
    rel = make_app(cairn)
    ctl.start()
    st, b, _ = deploy(ctl, "demo", {"release": rel, "reason": "a"}, "k1")
    assert st == 202
    st, b2, _ = deploy(ctl, "demo", {"release": rel, "reason": "b"}, "k1")
    assert st == 422 and b2["error"]["code"] == "idempotency_mismatch"
    # the same meaning spelled differently is a replay, not a mismatch
    st, b3, _ = deploy(ctl, "demo", json.dumps({"reason": "a", "force": False, "release": rel}), "k1")
    assert st == 200 and b3["id"] == b["id"]


def test_concurrent_duplicate_is_409(cairn, tmp_path):
    cairn.state.mkdir(parents=True, exist_ok=True)
    rel = make_app(cairn)
    ctl = Controller(cairn, tmp_path).start(env={"CAIRN_TEST_RECORD_DELAY_MS": "1500"})
    try:
        first = {}
        t = threading.Thread(target=lambda: first.update(r=deploy(ctl, "demo", {"release": rel}, "dup")))
        t.start()
        wait_for(lambda: "cairn_idempotency_inflight 1" in ctl.get("/metrics", raw=True)[1],
                 what="the first request to be in flight")
        st, b, _ = deploy(ctl, "demo", {"release": rel}, "dup")
        assert st == 409 and b["error"]["code"] == "in_progress"
        t.join()
        assert first["r"][0] == 202
        st, b, _ = deploy(ctl, "demo", {"release": rel}, "dup")
        assert st == 200 and b["id"] == first["r"][1]["id"]
    finally:
        ctl.stop()


def test_noop_deploy_of_current_good_release(cairn, ctl):
    rel = make_app(cairn)
    ctl.start()
    st, b, _ = deploy(ctl, "demo", {"release": rel}, "a")
    assert st == 202
    assert ctl.wait_terminal(b["id"])["state"] == "succeeded"
    st, b2, _ = deploy(ctl, "demo", {"release": rel[:19]}, "b")
    assert st == 200 and b2["id"] == b["id"] and "already current" in b2["note"]
    st, b3, _ = deploy(ctl, "demo", {"release": rel, "force": True}, "c")
    assert st == 202 and b3["id"] != b["id"]
    st, app = ctl.get("/v1/apps/demo")
    assert app["current"] == rel and app["last_good"] == rel


def test_post_answers_before_the_deploy_runs(cairn, tmp_path):
    cairn.state.mkdir(parents=True, exist_ok=True)
    rel = make_app(cairn)
    ctl = Controller(cairn, tmp_path).start(env={"CAIRN_TEST_STEP_DELAY_MS": "300"})
    try:
        st, b, h = deploy(ctl, "demo", {"release": rel})
        assert st == 202 and b["state"] in ("queued", "running") and not b["terminal"]
        assert h["Location"] == f"/v1/jobs/{b['id']}"
        assert b["release"] == rel and b["app"] == "demo" and "steps" in b and b["created_at"]
        j = ctl.wait_terminal(b["id"])
        assert j["state"] == "succeeded" and len(j["steps"]) == 8
        assert [s["step"] for s in j["steps"]] == ["ensure_objects", "activate", "start", "health",
                                                   "accept", "switch", "bake", "cleanup"]
    finally:
        ctl.stop()


def read_events(ctl, path, headers, until):
    """Reads SSE events until `until(events)` is true; returns [(id, type, data)]."""
    c = UnixHTTPConnection(ctl.sock, timeout=20)
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Content-Type") == "text/event-stream"
    events, cur = [], {}
    while not until(events):
        line = r.fp.readline().decode().rstrip("\n")
        if line.startswith("id: "):
            cur["id"] = int(line[4:])
        elif line.startswith("event: "):
            cur["type"] = line[7:]
        elif line.startswith("data: "):
            cur["data"] = json.loads(line[6:])
        elif line == "" and cur:
            events.append((cur["id"], cur["type"], cur["data"]))
            cur = {}
    c.close()
    return events


def test_events_resume_with_last_event_id_across_restart(cairn, ctl):
    rel = make_app(cairn)
    ctl.start()
    st, b, _ = deploy(ctl, "demo", {"release": rel})
    jid = b["id"]
    done = lambda ev: any(t == "job" and d["state"] == "succeeded" for _, t, d in ev)
    allev = read_events(ctl, f"/v1/events?job={jid}&after=0", {}, done)
    ids = [i for i, _, _ in allev]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    assert [d["state"] for _, t, d in allev if t == "job"] == ["queued", "running", "succeeded"]
    assert sum(1 for _, t, _ in allev if t == "step") == 16
    ctl.stop()
    ctl.start()  # the log is persisted: resuming works after a restart
    k = 5
    rest = read_events(ctl, f"/v1/events?job={jid}", {"Last-Event-ID": str(ids[k - 1])},
                       lambda ev: len(ev) == len(allev) - k)
    assert rest == allev[k:]


def raw_status(ctl, data):
    """Sends raw bytes; returns the answer's status, or None when the server just closed."""
    import socket
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(ctl.sock)
    try:
        s.sendall(data)
        ans = s.recv(4096)
    except (BrokenPipeError, ConnectionResetError):
        ans = b""
    finally:
        s.close()
    return int(ans.split()[1]) if ans.startswith(b"HTTP/1.1 ") else None


def test_errors_limits_and_routes(cairn, ctl):
    rel = make_app(cairn)
    ctl.start()
    st, b, _ = ctl.request("GET", "/v1/nope")
    assert st == 404 and b["error"]["code"] == "not_found"
    st, b, h = ctl.request("DELETE", "/v1/apps/demo/deploys")
    assert st == 405 and b["error"]["code"] == "method_not_allowed" and "POST" in h["Allow"]
    st, b, _ = deploy(ctl, "demo", "{not json")
    assert st == 400 and b["error"]["code"] == "input"
    st, b, _ = deploy(ctl, "demo", {"release": rel, "colour": "red"})
    assert st == 400 and "unknown key" in b["error"]["message"]
    st, b, _ = deploy(ctl, "demo", {"release": 5})
    assert st == 400
    st, b, _ = deploy(ctl, "demo", {"release": "nosuchtag"})
    assert st == 404 and b["error"]["code"] == "not_found"
    st, b, _ = deploy(ctl, "demo", {"release": rel}, key="bad key with spaces")
    assert st == 400
    assert raw_status(ctl, b"POST /v1/apps/demo/deploys HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Length: 2097152\r\n\r\n") == 413
    st, b = ctl.get("/v1/jobs/999")
    assert st == 404
    st, text = ctl.get("/metrics", raw=True)
    assert 'cairn_jobs{state="queued"}' in text
    # counted when the answer has been written: wait for the last one
    wait_for(lambda: 'cairn_api_requests_total{route="deploys",status="400"} 4' in
             ctl.get("/metrics", raw=True)[1], what="request counts")
    assert raw_status(ctl, b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 20000 +
                      b"\r\n\r\n") in (400, 413, 431, None)
    # no job came from any of the bad requests
    st, jobs = ctl.get("/v1/jobs")
    assert jobs["jobs"] == []


def test_queue_bound_is_409(cairn, tmp_path):
    cairn.state.mkdir(parents=True, exist_ok=True)
    rel = make_app(cairn)
    ctl = Controller(cairn, tmp_path, args=["--queue-max", "2"]).start(
        env={"CAIRN_TEST_STEP_DELAY_MS": "200"})
    try:
        st, first, _ = deploy(ctl, "demo", {"release": rel, "force": True})
        assert st == 202
        wait_for(lambda: ctl.job(first["id"])["state"] == "running", what="the first job to run")
        sts = [deploy(ctl, "demo", {"release": rel, "force": True})[0] for _ in range(4)]
        assert sts == [202, 202, 409, 409], sts  # one running, two queued, then refused
        st, b, _ = deploy(ctl, "demo", {"release": rel, "force": True})
        assert st == 409 and b["error"]["code"] == "queue_full"
    finally:
        ctl.stop()


def test_open_connections_are_bounded(cairn, ctl):
    ctl.start()
    conns = []
    try:
        for _ in range(1024):  # CTL_CONN_MAX: each keeps its connection open after one request
            c = UnixHTTPConnection(ctl.sock, timeout=20)
            c.request("GET", "/v1/jobs")
            r = c.getresponse()
            r.read()
            assert r.status == 200
            conns.append(c)
        extra = UnixHTTPConnection(ctl.sock, timeout=20)
        extra.request("GET", "/v1/jobs")
        r = extra.getresponse()
        assert r.status == 503 and json.loads(r.read())["error"]["code"] == "busy"
        extra.close()
        conns.pop().close()
        wait_for(lambda: ctl.request("GET", "/v1/jobs")[0] == 200, what="a free slot")
    finally:
        for c in conns:
            c.close()
