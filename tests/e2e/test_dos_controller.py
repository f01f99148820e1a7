"""The controller under hostile clients (issue 9, items 4, 8 and 9): a slowloris on the TCP
listener must not take the unix socket down nor fill the disk with log lines; a client without
the token is answered before it can make the controller buffer a large body; an event-stream
catch-up is sent in pages as the client reads. Every attack is bounded in connections, bytes
and time; the controller runs with a low descriptor limit so a few hundred connections
suffice."""
import hashlib
import http.client
import json
import os
import resource
import socket
import sqlite3
import time

import pytest

from conftest import BIN
from ctlutil import Controller, UnixHTTPConnection, has_test_hooks, wait_for
from test_controller import read_events

pytestmark = pytest.mark.skipif(not has_test_hooks(), reason="needs a -Dtest_hooks=true build")

# The ASan+UBSan build runs the same attacks to find memory errors; its allocator keeps freed
# memory in quarantine and pads every block, so the memory bounds hold on the plain build only.
SANITIZED = b"__asan_init" in open(BIN, "rb").read()
NOFILE = 320       # the controller's descriptor limit (soft = hard) in these tests
ATTACKERS = 400    # more connections than it has descriptors
HEAD_TIMEOUT_S = 10  # CTL_HEAD_TIMEOUT_S


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def low_nofile():
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def tcp_controller(cairn, tmp_path):
    cairn.state.mkdir(parents=True, exist_ok=True)
    port = free_port()
    token_file = tmp_path / "token"
    ctl = Controller(cairn, tmp_path, preexec=low_nofile,
                     args=["--listen", f"127.0.0.1:{port}", "--token-file", str(token_file)])
    ctl.start()
    return ctl, port, token_file.read_text().strip()


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def metric(ctl, name):
    st, text = ctl.get("/metrics", raw=True)
    assert st == 200
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


def unix_answer_s(ctl, timeout=10):
    """Seconds GET /v1/jobs takes on the unix socket (the bound is the feature)."""
    t0 = time.monotonic()
    c = UnixHTTPConnection(ctl.sock, timeout=timeout)
    try:
        c.request("GET", "/v1/jobs")
        r = c.getresponse()
        r.read()
        assert r.status == 200
    finally:
        c.close()
    return time.monotonic() - t0


class Slowloris:
    """n connections to port, each sending one byte of a never-ending head per trickle()."""
    HEAD = b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\n"

    def __init__(self, port, n):
        self.socks = []
        for _ in range(n):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            self.socks.append([s, 0, False])  # socket, bytes sent, closed by the server

    def trickle(self):
        for ent in self.socks:
            s, k, gone = ent
            if gone:
                continue
            b = self.HEAD[k:k + 1] if k < len(self.HEAD) else b"X"
            try:
                s.send(b)
                ent[1] += 1
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:  # reset by the server
                ent[2] = True
                continue
            try:
                if s.recv(4096) == b"":
                    ent[2] = True
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                ent[2] = True

    def open_count(self):
        return sum(1 for _, _, gone in self.socks if not gone)

    def close(self):
        for s, _, _ in self.socks:
            s.close()


@pytest.fixture
def raised_nofile():
    """The test process itself holds a few hundred sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 4096)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_slowloris_on_tcp_leaves_the_unix_socket_and_the_disk_alone(cairn, tmp_path,
                                                                      raised_nofile):
    ctl, port, token = tcp_controller(cairn, tmp_path)
    att = None
    try:
        log = ctl.logs[-1]
        log0 = os.path.getsize(log)
        att = Slowloris(port, ATTACKERS)
        worst = 0.0
        # a byte per connection every 0.25 s for 3 s: more connections than descriptors
        end = time.monotonic() + 3
        while time.monotonic() < end:
            att.trickle()
            worst = max(worst, unix_answer_s(ctl))
            time.sleep(0.25)
        assert worst < 3.0, f"the unix socket took {worst:.2f} s to answer during the attack"
        heads = metric(ctl, 'cairn_connections{kind="heads"}')
        tcp = metric(ctl, 'cairn_connections{kind="tcp"}')
        assert tcp <= NOFILE - 128 and heads <= 128, (tcp, heads)
        # the whole head has a deadline: trickling does not keep a connection
        wait_for(lambda: (att.trickle(), att.open_count() == 0 or
                          metric(ctl, "cairn_head_timeouts_total") >= 128)[1],
                 timeout=3 * HEAD_TIMEOUT_S, what="the slow heads to be cut")
        # the unix socket kept answering throughout, and the log did not grow per retry
        assert unix_answer_s(ctl) < 3.0
        grew = os.path.getsize(log) - log0
        assert grew < 16 * 1024, f"the log grew {grew} bytes during the attack"
        att.close()
        att = None
        # the TCP listener serves again once the attackers are gone
        def tcp_ok():
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                c.request("GET", "/v1/jobs", headers={"Authorization": f"Bearer {token}"})
                return c.getresponse().status == 200
            except OSError:
                return False
            finally:
                c.close()
        wait_for(tcp_ok, timeout=30, what="the TCP listener to answer again")
    finally:
        if att:
            att.close()
        ctl.stop()


def raw_tcp(port, data, timeout=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        ans = b""
        while b"\r\n\r\n" not in ans:
            b = s.recv(4096)
            if not b:
                break
            ans += b
        return ans
    finally:
        s.close()


def test_no_token_is_answered_before_a_large_body(cairn, tmp_path):
    ctl, port, token = tcp_controller(cairn, tmp_path)
    try:
        hexd = "a" * 64
        # an object PUT may carry 256 MiB — not for a client without the token: the answer
        # comes right after the head, before a byte of the body is sent
        for auth in (b"", b"Authorization: Bearer wrong-token-0123456789\r\n"):
            ans = raw_tcp(port, b"PUT /v1/objects/" + hexd.encode() + b" HTTP/1.1\r\nHost: x\r\n" +
                          auth + b"Content-Length: 268435456\r\n\r\n")
            assert ans.split(b" ")[1] in (b"401", b"413"), ans[:200]
        # a small body without the token: 401, and the connection is not kept
        ans = raw_tcp(port, b"POST /v1/apps/demo/deploys HTTP/1.1\r\nHost: x\r\n"
                            b"Content-Length: 2\r\n\r\n{}")
        assert ans.startswith(b"HTTP/1.1 401") and b"Connection: close" in ans, ans[:300]
        # with the token the same head is let through to its body (here: a small object)
        body = b"hello"
        d = hashlib.sha256(body).hexdigest().encode()
        ans = raw_tcp(port, b"PUT /v1/objects/" + d + b" HTTP/1.1\r\nHost: x\r\n"
                      b"Authorization: Bearer " + token.encode() + b"\r\n"
                      b"Content-Length: 5\r\n\r\n" + body)
        assert ans.split(b" ")[1] in (b"200", b"201"), ans[:300]
        # a 2 MiB object through TCP with the token: over the default 1 MiB, under the object's
        big = os.urandom(2 * 1024 * 1024)
        d = hashlib.sha256(big).hexdigest().encode()
        ans = raw_tcp(port, b"PUT /v1/objects/" + d + b" HTTP/1.1\r\nHost: x\r\n"
                      b"Authorization: Bearer " + token.encode() + b"\r\n"
                      b"Content-Length: " + str(len(big)).encode() + b"\r\n\r\n" + big,
                      timeout=30)
        assert ans.split(b" ")[1] in (b"200", b"201"), ans[:300]
    finally:
        ctl.stop()


def test_event_catch_up_is_paged_as_the_client_reads(cairn, tmp_path):
    cairn.state.mkdir(parents=True, exist_ok=True)
    ctl = Controller(cairn, tmp_path)
    ctl.start()
    ctl.stop()
    n, pad = 12000, "x" * 3000  # a 36 MB event log
    db = sqlite3.connect(cairn.state / "state.db")
    now = int(time.time() * 1000)
    db.executemany("INSERT INTO events (at, type, job_id, data) VALUES (?, 'step', ?, ?)",
                   ((now, 1 + i % 7, json.dumps({"i": i, "pad": pad})) for i in range(n)))
    db.commit()
    db.close()
    ctl.start()
    socks = []
    try:
        rss0 = rss_kb(ctl.proc.pid)
        # six clients ask for the whole log and never read it
        for _ in range(6):
            s = socket.socket(socket.AF_UNIX)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(ctl.sock)
            s.sendall(b"GET /v1/events?after=0 HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(s)
        wait_for(lambda: metric(ctl, "cairn_event_streams") == 6, what="six streams")
        worst = max(unix_answer_s(ctl) for _ in range(5))
        assert worst < 2.0, f"GET /v1/jobs took {worst:.2f} s while streams catch up"
        grew = rss_kb(ctl.proc.pid) - rss0
        assert SANITIZED or grew < 24 * 1024, f"six idle catch-ups cost {grew} KiB"
        # a client that reads gets the whole log, in order, and one job's events alone
        got = [i for i, _, _ in read_events(ctl, "/v1/events?after=0", {}, lambda ev: len(ev) == n)]
        assert got == sorted(got) and len(set(got)) == n
        got = read_events(ctl, "/v1/events?after=0&job=3", {}, lambda ev: len(ev) == n // 7)
        assert all(d["i"] % 7 == 2 for _, _, d in got)
        for s in socks:
            s.close()
        socks = []
        wait_for(lambda: metric(ctl, "cairn_event_streams") == 0, what="the streams to end")
        assert SANITIZED or rss_kb(ctl.proc.pid) - rss0 < 24 * 1024
    finally:
        for s in socks:
            s.close()
        ctl.stop()


def test_out_of_descriptors_rests_the_listener_and_logs_once(cairn, tmp_path, raised_nofile):
    """Unix clients past the descriptor limit: accept() fails with EMFILE. The listener rests
    (no busy loop, one log line per episode) and serves again when descriptors are free."""
    cairn.state.mkdir(parents=True, exist_ok=True)
    ctl = Controller(cairn, tmp_path, preexec=low_nofile)
    ctl.start()
    socks = []
    try:
        log = ctl.logs[-1]
        log0 = os.path.getsize(log)
        end = time.monotonic() + 10
        while len(socks) < NOFILE + 80 and time.monotonic() < end:
            s = socket.socket(socket.AF_UNIX)
            s.setblocking(False)
            try:
                s.connect(ctl.sock)
                socks.append(s)
            except BlockingIOError:  # the backlog is full for now
                s.close()
                time.sleep(0.01)
        fds = lambda: len(os.listdir(f"/proc/{ctl.proc.pid}/fd"))
        wait_for(lambda: fds() >= NOFILE - 2, timeout=10,
                 what="the controller to run out of descriptors")
        # a few seconds out of descriptors: the log does not grow per retry
        t0 = time.monotonic()
        end = t0 + 2
        while time.monotonic() < end:
            time.sleep(0.1)
        lines = [l for l in ctl.log_text().splitlines() if "accept" in l]
        assert len(lines) <= 3, lines[:5]
        assert os.path.getsize(log) - log0 < 8 * 1024
        for s in socks[:200]:
            s.close()
        del socks[:200]
        wait_for(lambda: unix_answer_s(ctl) < 3.0, timeout=20, what="the unix socket to answer")
    finally:
        for s in socks:
            s.close()
        ctl.stop()
