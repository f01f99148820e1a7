"""End-to-end tests of `cairn proxy --mode http`: the real binary in front of real upstream
servers (a stdlib HTTP/1.1 server defined here, one thread per connection) on 127.0.0.1.
Every wait has a deadline: socket timeouts, or a line the proxy prints."""
import hashlib
import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import BIN

DEADLINE = 10.0


class Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(n) if n else b""

    def reply(self, code, body, extra=()):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_POST(self):
        self.do_GET()

    def do_PUT(self):
        self.do_GET()

    def do_GET(self):
        srv = self.server
        srv.seen.append({"path": self.path, "peer": self.client_address[1],
                         "headers": dict(self.headers.items())})
        body = self.body() if self.command in ("POST", "PUT") else b""
        path = self.path.split("?")[0]
        if path == "/echo":
            self.reply(200, body)
        elif path == "/digest":
            self.reply(200, f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode())
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/big":
            n = int(self.path.split("=")[1])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            block = b"x" * 65536
            left = n
            while left:
                k = min(left, len(block))
                self.wfile.write(block[:k])
                left -= k
        elif path == "/slow":
            srv.release.wait(DEADLINE)  # held until the test lets go (after the 504)
            self.reply(200, b"late")
        elif path == "/stall":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
            self.wfile.flush()
            srv.release.wait(DEADLINE)  # silent mid-body until the test lets go
            self.close_connection = True
        elif path == "/die":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
        elif path == "/close":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
            self.close_connection = True
        elif path == "/drop-after":
            self.reply(200, b"once")  # keep-alive promised, then the connection is closed
            self.wfile.flush()
            self.close_connection = True
        elif path == "/ws":
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            c = self.connection
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d.upper())
            self.close_connection = True
        else:
            self.reply(200, f"{srv.name} {self.path}".encode(),
                       [("X-Upstream", srv.name)])


def start_upstream(name):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    srv.daemon_threads = True
    srv.handle_error = lambda *a: None  # a client the proxy cut is expected here
    srv.name = name
    srv.seen = []
    srv.release = threading.Event()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    srv.addr = f"127.0.0.1:{srv.server_address[1]}"
    return srv


def blackhole():
    """An address whose connects hang: a listener that never accepts, its backlog full."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(0)
    fillers = []
    for _ in range(4):  # the accept queue takes backlog + 1; later SYNs are dropped
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(s.getsockname())
        fillers.append(f)
    return f"127.0.0.1:{s.getsockname()[1]}", [s] + fillers


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return f"127.0.0.1:{port}"


class Proxy:
    def __init__(self, tmp_path, ups, *opts):
        self.file = tmp_path / "upstreams"
        self.write(ups)
        self.p = subprocess.Popen([BIN, "proxy", "--listen", "127.0.0.1:0", "--upstreams-file",
                                   str(self.file), *opts], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        first = self.line()
        assert first.startswith("listening on "), first
        host, port = first.split()[-1].rsplit(":", 1)
        self.host, self.port = host, int(port)

    def _read(self):
        for line in self.p.stdout:
            self.lines.put(line.rstrip("\n"))

    def line(self):
        return self.lines.get(timeout=DEADLINE)

    def write(self, ups):
        self.file.write_text("".join(u + "\n" for u in ups))

    def switch(self, ups):
        self.write(ups)
        self.p.send_signal(signal.SIGHUP)
        assert self.line() == f"upstreams: {len(ups)}"

    def conn(self):
        return http.client.HTTPConnection(self.host, self.port, timeout=DEADLINE)

    def sock(self):
        return socket.create_connection((self.host, self.port), timeout=DEADLINE)

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(timeout=DEADLINE)
        finally:
            if self.p.poll() is None:
                self.p.kill()
                self.p.wait()
        assert self.p.returncode == 0, self.p.stderr.read()


@pytest.fixture
def proxy(tmp_path):
    started = []

    def make(ups, *opts):
        px = Proxy(tmp_path, ups, *opts)
        started.append(px)
        return px
    yield make
    for px in started:
        if px.p.poll() is None:
            px.stop()


def get(conn, path, method="GET", body=None, headers=None):
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    return r.status, r.read(), r


def recv_all(s):
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            return out
        out += d


def test_keepalive_reuse_and_forwarded_headers(proxy):
    up = start_upstream("a")
    px = proxy([f"v1={up.addr}"])
    c = px.conn()
    for i in range(20):
        st, body, _ = get(c, f"/r{i}", headers={"X-Forwarded-For": "1.1.1.1"} if i == 0 else {})
        assert st == 200 and body == f"a /r{i}".encode()
    assert len({s["peer"] for s in up.seen}) == 1  # one pooled upstream connection
    h0, h1 = up.seen[0]["headers"], up.seen[1]["headers"]
    assert h0["X-Forwarded-For"] == "1.1.1.1, 127.0.0.1"
    assert h1["X-Forwarded-For"] == "127.0.0.1"
    assert h1["X-Forwarded-Proto"] == "http"
    assert h1["X-Forwarded-Host"] == f"{px.host}:{px.port}"
    assert h1["Connection"] == "keep-alive"
    px.p.send_signal(signal.SIGUSR1)
    assert px.line().startswith("v1: 20 requests (2xx 20")


def test_round_robin_switch_and_failover(proxy):
    a, b, c_up = start_upstream("a"), start_upstream("b"), start_upstream("c")
    px = proxy([f"old={a.addr}", f"old={b.addr}", f"old={closed_port()}"])
    c = px.conn()
    names = [get(c, "/")[2].getheader("X-Upstream") for _ in range(9)]
    assert set(names) == {"a", "b"}  # the refusing upstream passes its turn on
    px.switch([f"new={c_up.addr}"])
    for _ in range(3):  # the same keep-alive client connection moves at once
        assert get(c, "/")[2].getheader("X-Upstream") == "c"
    px.p.send_signal(signal.SIGUSR1)
    lines = sorted(px.line() for _ in range(2))
    assert lines[0].startswith("new: 3 requests") and lines[1].startswith("old: 9 requests")


def test_chunked_request_and_response(proxy):
    up = start_upstream("a")
    px = proxy([up.addr])
    c = px.conn()
    st, body, _ = get(c, "/chunked")
    assert (st, body) == (200, b"hello chunked world")

    def parts():
        yield b"first,"
        yield b"second,"
        yield b"third"
    c.request("POST", "/echo", body=parts(), encode_chunked=True,
              headers={"Transfer-Encoding": "chunked"})
    r = c.getresponse()
    assert (r.status, r.read()) == (200, b"first,second,third")
    assert get(c, "/after")[1] == b"a /after"  # the connection is still in step


def test_pipelining_in_order(proxy):
    up = start_upstream("a")
    px = proxy([up.addr])
    s = px.sock()
    s.sendall(b"".join(b"GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(5)) +
              b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = recv_all(s)
    bodies = [f"a /p{i}".encode() for i in range(5)] + [b"a /last"]
    pos = 0
    for b in bodies:
        at = data.find(b, pos)
        assert at > pos, (b, data)
        pos = at
    assert data.count(b"HTTP/1.1 200") == 6


def test_large_bodies(proxy):
    up = start_upstream("a")
    px = proxy([up.addr], "--max-body-bytes", str(64 << 20))
    c = px.conn()
    blob = os.urandom(24 << 20)
    st, body, _ = get(c, "/digest", "POST", body=blob)
    assert body.decode() == f"{len(blob)} {hashlib.sha256(blob).hexdigest()}"
    st, body, _ = get(c, "/big?n=%d" % (40 << 20))
    assert st == 200 and len(body) == 40 << 20


def test_head_then_get(proxy):
    up = start_upstream("a")
    px = proxy([up.addr])
    c = px.conn()
    st, body, r = get(c, "/h", "HEAD")
    assert st == 200 and body == b"" and r.getheader("Content-Length") == "4"
    assert get(c, "/g")[1] == b"a /g"


def test_close_delimited_and_100_continue(proxy):
    up = start_upstream("a")
    px = proxy([up.addr])
    s = px.sock()
    s.sendall(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n")
    assert recv_all(s).endswith(b"\r\n\r\nuntil the end")
    s = px.sock()
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
              b"Expect: 100-continue\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 100 Continue")
    s.sendall(b"hello")
    data = b""
    while not data.endswith(b"hello"):
        data += s.recv(1000)
    assert b"200 OK" in data


def test_websocket_upgrade_tunnel(proxy):
    up = start_upstream("a")
    px = proxy([up.addr])
    s = px.sock()
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1000)
    assert head.startswith(b"HTTP/1.1 101")
    assert up.seen[0]["headers"]["Connection"] == "upgrade"
    for msg in (b"ping", b"x" * 100000):
        s.sendall(msg)
        got = b""
        while len(got) < len(msg):
            got += s.recv(65536)
        assert got == msg.upper()
    s.shutdown(socket.SHUT_WR)
    assert recv_all(s) == b""


def err_of(data):
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    assert b"Connection: close" in head
    return status, json.loads(body)["error"]["code"]


def test_own_answers(proxy, tmp_path):
    up = start_upstream("a")
    px = proxy([up.addr], "--max-header-bytes", "4096", "--max-body-bytes", "1000",
               "--header-timeout", "400ms", "--upstream-timeout", "400ms")

    def ask(raw):
        s = px.sock()
        s.sendall(raw)
        return err_of(recv_all(s))
    assert ask(b"NOT HTTP AT ALL\r\n\r\n") == (400, "bad_request")
    assert ask(b"GET / HTTP/1.1\r\nX: " + b"a" * 5000 + b"\r\n\r\n") == (431, "head_too_large")
    assert ask(b"POST / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n") == (413, "body_too_large")
    assert ask(b"GET / HTTP/1.1\r\nHost: slowloris\r\n") == (408, "request_timeout")
    assert ask(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n") == (504, "gateway_timeout")
    up.release.set()
    # the 504 counts against the label of the upstream that took the request
    px.p.send_signal(signal.SIGUSR1)
    assert "5xx 1" in px.line()


def test_framing_ambiguous_heads_refused_and_hop_by_hop_dropped(proxy):
    """Issue 9 item 13: a head the parser reads one way and an upstream may read another is
    answered 400 and never reaches the upstream; headers Connection names are not forwarded."""
    up = start_upstream("a")
    px = proxy([up.addr])
    for raw in (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n"
                b"0\r\n\r\n",
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: x,"
                b"\r\n chunked\r\n\r\nabc",
                b"GET / HTTP/1.1\nHost: x\n\n",
                b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                b"Connection: Content-Length\r\n\r\nabc"):
        s = px.sock()
        s.sendall(raw)
        assert err_of(recv_all(s)) == (400, "bad_request"), raw
        s.close()
    assert up.seen == []
    c = px.conn()
    st, _, _ = get(c, "/h", headers={"X-Secret": "s", "TE": "trailers", "X-Kept": "k",
                                     "Connection": "keep-alive, X-Secret"})
    assert st == 200
    h = up.seen[0]["headers"]
    assert h["X-Kept"] == "k" and "X-Secret" not in h and "TE" not in h
    assert h["Connection"] == "keep-alive"


def test_502_and_503(proxy):
    px = proxy([closed_port(), closed_port()])
    s = px.sock()
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert err_of(recv_all(s)) == (502, "bad_gateway")
    px.switch([])
    s = px.sock()
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert err_of(recv_all(s)) == (503, "unavailable")


def test_upstream_killed_mid_response(proxy):
    up = start_upstream("a")
    px = proxy([up.addr])
    c = px.conn()
    c.request("GET", "/die")
    r = c.getresponse()
    assert r.status == 200
    with pytest.raises(http.client.IncompleteRead):
        r.read()
    c = px.conn()  # the proxy serves on
    assert get(c, "/ok")[1] == b"a /ok"


def test_pooled_connection_closed_by_upstream(proxy):
    up = start_upstream("a")
    px = proxy([up.addr])
    c = px.conn()
    for i in range(10):  # each response leaves a pooled connection the upstream then closes
        st, body, _ = get(c, "/drop-after")
        assert (st, body) == (200, b"once")
    assert len({s["peer"] for s in up.seen}) == 10


def test_threads_and_stop_with_requests(proxy):
    up = start_upstream("a")
    px = proxy([up.addr], "--threads", "2")
    conns = [px.conn() for _ in range(8)]
    for i, c in enumerate(conns):
        assert get(c, f"/t{i}")[0] == 200
    t0 = time.monotonic()
    px.stop()  # idle keep-alive clients do not hold the shutdown up
    assert time.monotonic() - t0 < 5


def test_tcp_mode_and_switch(proxy):
    a, b = start_upstream("a"), start_upstream("b")
    px = proxy([a.addr], "--mode", "tcp")
    c = px.conn()
    assert get(c, "/x")[2].getheader("X-Upstream") == "a"
    px.switch([b.addr])
    assert get(c, "/y")[2].getheader("X-Upstream") == "a"  # tcp: the connection stays
    c2 = px.conn()
    assert get(c2, "/z")[2].getheader("X-Upstream") == "b"  # new connections move


def test_usage_errors(cairn):
    p = cairn.run("proxy", "--upstream", "127.0.0.1:1")
    assert p.returncode == 2 and "--listen" in p.stderr
    p = cairn.run("proxy", "--listen", "127.0.0.1:0", "--upstream", "nonsense")
    assert p.returncode == 2 and "HOST:PORT" in p.stderr
    p = cairn.run("proxy", "--listen", "127.0.0.1:0", "--upstreams-file", "/nonexistent/ups")
    assert p.returncode == 2
    p = cairn.run("proxy", "--help")
    assert p.returncode == 0 and "SYNOPSIS" in p.stdout and "EXIT STATUS" in p.stdout


def test_connect_timeout_passes_on_then_502(proxy):
    up = start_upstream("a")
    hole, keep = blackhole()
    px = proxy([hole, up.addr], "--connect-timeout", "300ms")
    c = px.conn()
    for i in range(4):  # every other request first waits for the black hole, then moves on
        assert get(c, f"/{i}")[1] == f"a /{i}".encode()
    px.switch([hole])
    s = px.sock()
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert err_of(recv_all(s)) == (502, "bad_gateway")
    for k in keep:
        k.close()


def test_silence_inside_response_cuts(proxy):
    up = start_upstream("a")
    px = proxy([up.addr], "--upstream-timeout", "300ms")
    c = px.conn()
    c.request("GET", "/stall")
    r = c.getresponse()
    assert r.status == 200
    with pytest.raises(http.client.IncompleteRead):
        r.read()
    up.release.set()


def test_chunked_body_over_limit(proxy):
    up = start_upstream("a")
    px = proxy([up.addr], "--max-body-bytes", "1000")
    s = px.sock()
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
              b"".join(b"200\r\n" + b"y" * 512 + b"\r\n" for _ in range(4)) + b"0\r\n\r\n")
    assert err_of(recv_all(s)) == (413, "body_too_large")
