"""Helpers for the fault-injection tests: a running `cairn fault serve` on a free port, a tiny
HTTP client for its API, and echo/sink servers in threads. Every process and thread started
here is stopped by the fixture that started it."""
import json
import os
import select
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

from conftest import BIN
from oneway import pct  # noqa: F401 (one percentile for tests and bench)


class Api:
    """Plain HTTP against the Toxiproxy-compatible API."""

    def __init__(self, addr):
        self.addr = addr
        self.base = "http://" + addr

    def call(self, method, path, body=None, raw=None, headers=None):
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.base + path, data=data, method=method)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read().decode(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(), dict(e.headers)

    def json(self, method, path, body=None, want=200, **kw):
        st, text, _ = self.call(method, path, body, **kw)
        assert st == want, f"{method} {path}: {st} {text}"
        return json.loads(text) if text else None

    def proxy(self, name, upstream, listen="127.0.0.1:0", **kw):
        return self.json("POST", "/proxies", dict(name=name, listen=listen, upstream=upstream, **kw),
                         want=201)

    def toxic(self, proxy, type, want=200, **kw):
        return self.json("POST", f"/proxies/{proxy}/toxics", dict(type=type, **kw), want=want)


class Server:
    def __init__(self, proc, addr):
        self.proc = proc
        self.addr = addr
        self.api = Api(addr)


def start_server(*extra, timeout=10):
    p = subprocess.Popen([BIN, "fault", "serve", "--listen", "127.0.0.1:0", *extra],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    line = ""
    while time.monotonic() < deadline:
        r, _, _ = select.select([p.stdout], [], [], 0.2)
        if r:
            line = p.stdout.readline()
            break
        if p.poll() is not None:
            break
    if "listening on" not in line:
        p.kill()
        raise AssertionError(f"cairn fault serve did not start: {line!r} {p.stderr.read()}")
    return Server(p, line.strip().rsplit(" ", 1)[1])


def stop_server(s):
    s.proc.send_signal(signal.SIGTERM)
    try:
        rc = s.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        s.proc.kill()
        s.proc.wait()
        raise AssertionError("cairn fault serve did not stop on SIGTERM")
    err = s.proc.stderr.read()
    assert rc == 0, f"cairn fault serve exited {rc}: {err}"


@pytest.fixture
def fault():
    s = start_server()
    yield s
    stop_server(s)


class TcpServer:
    """A threaded TCP server; handler(conn) runs per connection."""

    def __init__(self, handler):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.addr = f"127.0.0.1:{self.port}"
        self.handler = handler
        self.conns = []
        self.stopping = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            self.handler(c)
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.stopping = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.t.join(5)


def nap_recv(c, n):
    """recv that never sleeps longer than 0.2 ms: a thread that sleeps for milliseconds can wake
    milliseconds late on a busy (virtual) machine, which would be measured as proxy latency."""
    while True:
        r, _, _ = select.select([c], [], [], 0.0002)
        if r:
            return c.recv(n)


def precise_echo_handler(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        d = nap_recv(c, 65536)
        if not d:
            return
        c.sendall(d)


def echo_handler(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        d = c.recv(65536)
        if not d:
            return
        c.sendall(d)


@pytest.fixture
def echo():
    s = TcpServer(echo_handler)
    yield s
    s.close()


def free_port():
    """A loopback port nothing listens on (for a fixed listen address)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def fault_cli(fault, *args, check=0):
    """`cairn fault ARGS --addr` the server; asserts the exit status."""
    p = subprocess.run([BIN, "fault", *args, "--addr", fault.addr], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == check, f"{args}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def connect(listen, timeout=10):
    host, port = listen.rsplit(":", 1)
    c = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


def recv_exact(c, n):
    out = b""
    while len(out) < n:
        d = c.recv(n - len(out))
        if not d:
            raise EOFError(f"EOF after {len(out)} of {n} bytes")
        out += d
    return out


def wait_for(cond, timeout=10, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def rtt(c, payload=b"x"):
    t = time.perf_counter()
    c.sendall(payload)
    recv_exact(c, len(payload))
    return time.perf_counter() - t


def rtt_precise(c, payload=b"x"):
    t = time.perf_counter()
    c.sendall(payload)
    got = 0
    while got < len(payload):
        d = nap_recv(c, len(payload) - got)
        if not d:
            raise EOFError("EOF")
        got += len(d)
    return time.perf_counter() - t


def env_no_proxy():
    e = dict(os.environ)
    for k in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        e.pop(k, None)
    return e
