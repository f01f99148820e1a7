"""The agent under hostile clients of an app's public port (issue 9, items 5 and 16): a
slowloris on the proxy must leave the agent's API answerable and its log small; slow partial
heads cost the proxy bounded memory, returned when their clients leave. Bounded in connections,
bytes and time; the agent runs with a low descriptor limit so a few hundred connections
suffice."""
import os
import resource
import socket
import time
from pathlib import Path

import pytest

from agentlib import Agent, UnixHTTP, processes_of, wait_for

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("CAIRN_BIN", str(ROOT / "build" / "cairn"))
NOFILE = 640  # the agent's descriptor limit (soft = hard) in the slowloris test
# The ASan+UBSan build runs the same attacks to find memory errors; its allocator keeps freed
# memory in quarantine and pads every block, so the memory bounds hold on the plain build only.
SANITIZED = b"__asan_init" in open(BIN, "rb").read()


@pytest.fixture
def raised_nofile():
    """The test process itself holds a few thousand sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 8192)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def start_agent(tmp_path, nofile=None):
    pre = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))) if nofile else None
    a = Agent(BIN, tmp_path / "state", preexec=pre)
    a.state.mkdir()
    a.start()
    st, body = a.call("PUT", "/v1/apps/demo/proxy",
                      {"listen": "127.0.0.1:0", "mode": "http", "upstreams": []})
    assert st in (200, 201), body
    port = int(body["listen"].rsplit(":", 1)[1])
    return a, port


def stop_agent(a):
    a.cleanup()
    wait_for(lambda: not processes_of(a.state), "no process of the test's state dir")


def api_answer_s(a, timeout=10):
    """Seconds GET /v1/agent takes (the bound is the feature)."""
    t0 = time.monotonic()
    c = UnixHTTP(a.sock, timeout=timeout)
    try:
        c.request("GET", "/v1/agent")
        r = c.getresponse()
        r.read()
        assert r.status == 200
    finally:
        c.close()
    return time.monotonic() - t0


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def connect_many(port, n, first=b""):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        socks.append([s, first])
    return socks


def push(socks):
    """Sends what each socket still owes (non-blocking); drops the ones the server closed."""
    for ent in socks:
        s, data = ent
        if not data:
            continue
        try:
            k = s.send(data)
            ent[1] = data[k:]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            ent[1] = b""


def test_slowloris_on_an_app_port_leaves_the_agent_api_alone(tmp_path, raised_nofile):
    a, port = start_agent(tmp_path, NOFILE)
    socks = []
    try:
        log0 = a.log.stat().st_size
        socks = connect_many(port, NOFILE + 200, b"GET / HTTP/1.1\r\nHost: x\r\n")
        worst = 0.0
        end = time.monotonic() + 3
        while time.monotonic() < end:
            for ent in socks:  # one byte per connection per round
                s, data = ent
                if data:
                    try:
                        s.send(data[:1])
                        ent[1] = data[1:]
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError:
                        ent[1] = b""
            worst = max(worst, api_answer_s(a))
            time.sleep(0.25)
        assert worst < 3.0, f"the agent's API took {worst:.2f} s to answer during the attack"
        # probes and instances need descriptors too: the process keeps a reserve
        fds = len(os.listdir(f"/proc/{a.proc.pid}/fd"))
        assert fds < NOFILE - 64, f"the agent holds {fds} of its {NOFILE} descriptors"
        grew = a.log.stat().st_size - log0
        assert grew < 16 * 1024, f"the agent's log grew {grew} bytes during the attack"
    finally:
        for s, _ in socks:
            s.close()
        stop_agent(a)


def test_slow_partial_heads_cost_bounded_memory_returned_after(tmp_path, raised_nofile):
    a, port = start_agent(tmp_path)
    socks = []
    try:
        # warm up: the proxy's loop and its first buffers exist before the baseline
        socks = connect_many(port, 50, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        end = time.monotonic() + 2
        while time.monotonic() < end and any(d for _, d in socks):
            push(socks)
            time.sleep(0.01)
        for s, _ in socks:
            s.close()
        socks = []
        time.sleep(0.2)
        rss0 = rss_kb(a.proc.pid)
        # 1500 clients, each 60 KB into a head that never ends (under the 64 KiB head limit)
        head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 60000
        socks = connect_many(port, 1500, head)
        end = time.monotonic() + 8
        while time.monotonic() < end and any(d for _, d in socks):
            push(socks)
            time.sleep(0.01)
        # each connection's 16 KiB buffer, plus the loop's 8 MiB for heads past that, plus slack
        peak = rss_kb(a.proc.pid) - rss0
        bound = 1500 * 16 + 8 * 1024 + 6 * 1024
        assert SANITIZED or peak < bound, f"1500 partial heads cost {peak} KiB (bound {bound} KiB)"
        assert api_answer_s(a) < 3.0
        for s, _ in socks:
            s.close()
        socks = []
        # the memory goes back once they are gone
        def returned():
            return rss_kb(a.proc.pid) - rss0 < 12 * 1024
        if not SANITIZED:
            wait_for(returned, "the proxy's memory to be returned", deadline=15)
    finally:
        for s, _ in socks:
            s.close()
        stop_agent(a)


def test_instances_keep_the_usual_descriptor_limit(tmp_path):
    """The agent raises its own soft limit; what it starts gets the one it was given."""
    import shutil
    from test_agent import APP, build
    a = Agent(BIN, tmp_path / "state",
              preexec=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (1000, 4000)))
    a.state.mkdir()
    try:
        src = tmp_path / "envecho"
        shutil.copytree(APP, src)
        rid = build(a.state, src)
        a.start()
        st, body = a.call("POST", f"/v1/releases/{rid}/activate", {})
        assert st == 200, body
        st, body = a.call("POST", "/v1/apps/envecho/instances", {"release": rid, "count": 1})
        assert st == 201, body
        pid = body["instances"][0]["pid"]

        def soft_limit(p):
            for line in open(f"/proc/{p}/limits"):
                if line.startswith("Max open files"):
                    return int(line.split()[3]), int(line.split()[4])
        assert soft_limit(a.proc.pid) == (4000, 4000)
        assert soft_limit(pid) == (1000, 4000)
    finally:
        stop_agent(a)
