#!/usr/bin/env python3
"""bench/proxy/switch.py: how fast traffic moves.

1. switch latency — a client requests continuously (a new connection per request) through a
   proxy; the proxy's upstream changes from A to B and back, N times. Measured: from the change
   being asked for to the first answer from the new upstream. cairn: `PUT /v1/apps/{app}/proxy`
   on the agent. Peer: nginx, upstream rewritten and `nginx -s reload` (how people switch with
   it). Goal: cairn < 50 ms.
2. rollback time — the controller deploys a release whose real endpoint answers 500 (acceptance
   off: only the bake gate stands guard) under load, R times; measured: from the first bad
   response a user got to the proxy being back on the old release (the agent's switched_at).

Bounded: N switches, R deploys, each with deadlines. Prints a table and writes
bench/out/proxy-switch.json.
  bench/proxy/switch.py [--switches N] [--rollbacks R]
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("CAIRN_BIN", str(ROOT / "build" / "cairn"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def upstream(name):
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "1")
            self.end_headers()
            self.wfile.write(name.encode())

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv.server_address[1]


class Unix(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path)


def agent_call(sock, method, path, body=None):
    c = Unix(sock)
    c.request(method, path, body=json.dumps(body) if body is not None else None)
    r = c.getresponse()
    data = json.loads(r.read() or b"null")
    c.close()
    if r.status >= 300:
        raise RuntimeError(f"{method} {path}: {r.status} {data}")
    return data


class Watcher:
    """Requests the proxy continuously; remembers (start time, body) of each answer."""

    def __init__(self, port):
        self.port, self.seen, self.stop = port, [], threading.Event()
        self.lock = threading.Lock()
        self.th = threading.Thread(target=self.run, daemon=True)
        self.th.start()

    def run(self):
        while not self.stop.is_set():
            t = time.monotonic()
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", "/", headers={"Connection": "close"})
                body = c.getresponse().read().decode()
                c.close()
            except (OSError, http.client.HTTPException):
                body = "!"
            with self.lock:
                self.seen.append((t, body))

    def first_after(self, t0, want, deadline=10):
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            with self.lock:
                for t, b in reversed(self.seen):
                    if t < t0:
                        break
                for t, b in self.seen:
                    if t >= t0 and b == want:
                        return t
            time.sleep(0.0005)
        return None


def measure(switch, watcher, ports, n):
    lat = []
    for i in range(n):
        want = "B" if i % 2 == 0 else "A"
        t0 = time.monotonic()
        switch(ports[want])
        t = watcher.first_after(t0, want)
        if t is None:
            raise RuntimeError("the new upstream never answered")
        # the first answer from a request *sent* after the change, so the latency is at most
        # the change plus one request; at least the change
        lat.append(max(0.0, t - t0) * 1000)
        time.sleep(0.02)
    return lat


def bench_cairn(w, ports, n):
    state = w / "state"
    subprocess.run([BIN, "agent", "--daemon", "--state", str(state)], check=True,
                   stdout=subprocess.DEVNULL)
    sock = str(state / "agent.sock")
    port = free_port()
    listen = f"127.0.0.1:{port}"
    internal = []
    try:
        def switch(up):
            ans = agent_call(sock, "PUT", "/v1/apps/bench/proxy",
                             {"listen": listen, "mode": "http",
                              "upstreams": [{"addr": f"127.0.0.1:{up}", "release": str(up)}]})
            internal.append(ans["switch_us"] / 1000)
        switch(ports["A"])
        wt = Watcher(port)
        lat = measure(switch, wt, ports, n)
        wt.stop.set()
        return lat, internal
    finally:
        st = json.loads(subprocess.run([BIN, "agent", "status", "--json", "--state", str(state)],
                                       capture_output=True, text=True).stdout or "{}")
        if st.get("pid"):
            os.kill(st["pid"], signal.SIGTERM)


def bench_nginx(w, ports, n):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        return None
    d = w / "nginx"
    d.mkdir()
    port = free_port()

    def conf(up):
        (d / "nginx.conf").write_text(f"""worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  upstream app {{ server 127.0.0.1:{up}; }}
  server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://app; }} }}
}}
""")
    conf(ports["A"])
    subprocess.run([nginx, "-c", str(d / "nginx.conf"), "-p", str(d)], check=True,
                   stderr=subprocess.DEVNULL)
    try:
        def switch(up):
            conf(up)
            subprocess.run([nginx, "-c", str(d / "nginx.conf"), "-p", str(d), "-s", "reload"],
                           check=True, stderr=subprocess.DEVNULL)
        wt = Watcher(port)
        lat = measure(switch, wt, ports, n)
        wt.stop.set()
        return lat
    finally:
        pid = int((d / "nginx.pid").read_text())
        os.kill(pid, signal.SIGQUIT)


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def bench_rollback(w, rounds):
    """R bad deploys under load through the real controller; first bad answer → switch back."""
    sys.path.insert(0, str(ROOT / "tests" / "e2e"))
    os.environ.setdefault("CAIRN_BIN", BIN)
    from rolloutlib import Fleet, Load  # noqa: E402 (the tests' kit: real controller + agent)

    class C:
        def __init__(self, state, cwd):
            self.state, self.cwd = state, cwd

        def run(self, *args, cwd=None, check=None, timeout=120, env=None):
            e = dict(os.environ, CAIRN_STATE=str(self.state))
            p = subprocess.run([BIN, *map(str, args)], cwd=str(cwd or self.cwd),
                               capture_output=True, text=True, timeout=timeout, env=e)
            if check is not None and p.returncode != check:
                raise RuntimeError(f"cairn {args}: {p.returncode} {p.stdout} {p.stderr}")
            return p

        def json(self, *args, check=0, **kw):
            return json.loads(self.run(*args, "--json", check=check, **kw).stdout)

    rb = w / "rollback"
    rb.mkdir()
    (rb / "work").mkdir()
    f = Fleet(C(rb / "state", rb / "work"), rb)
    times = []
    try:
        f.variant("v1")
        f.ctl.start()
        f.deploy("v1")
        for i in range(rounds):
            f.variant(f"bad{i}", mode="err500", acceptance=False, bake="20s")
            with Load(f.port, threads=2, interval=0.002) as load:
                load.wait_count(40)
                f.deploy(f"bad{i}", check=1)
                load.wait_count(len(load.results) + 20)
            wall = time.time() - time.monotonic()
            bad = [r for r in load.results if r[1] != 200]
            switched = f.proxy()["switched_at_ms"] / 1000.0
            times.append((switched - (bad[0][0] + wall)) * 1000)
    finally:
        f.teardown()
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--switches", type=int, default=40)
    ap.add_argument("--rollbacks", type=int, default=3)
    a, _ = ap.parse_known_args()  # bench/proxy/run passes its own options through
    w = Path(tempfile.mkdtemp(prefix="cairn-bench-switch."))
    try:
        ports = {"A": upstream("A"), "B": upstream("B")}
        cairn, internal = bench_cairn(w, ports, a.switches)
        ngx = bench_nginx(w, ports, a.switches)
        rolls = bench_rollback(w, a.rollbacks) if a.rollbacks else []
    finally:
        shutil.rmtree(w, ignore_errors=True)
    rows = [("switch: asked → first answer from the new upstream (ms)", cairn, ngx)]
    print(f"{'case':<58} {'cairn p50':>9} {'p99':>7} {'nginx reload p50':>17} {'p99':>7} {'ratio':>6}")
    for name, c, n in rows:
        line = f"{name:<58} {pct(c, 50):>9.2f} {pct(c, 99):>7.2f}"
        if n:
            line += f" {pct(n, 50):>17.2f} {pct(n, 99):>7.2f} {pct(n, 50) / max(pct(c, 50), 0.001):>5.1f}×"
        print(line)
    print(f"{'  of which inside the proxy (switch_us, ms)':<58} {pct(internal, 50):>9.3f} {pct(internal, 99):>7.3f}")
    if rolls:
        print(f"{'rollback: first bad answer → proxy back on the old release (ms)':<58} "
              f"{statistics.median(rolls):>9.1f} {max(rolls):>7.1f}   (no peer: by hand it took 23 min in story 003)")
    goal = pct(cairn, 99) < 50
    print(f"goal: switch < 50 ms: {'met' if goal else 'MISSED'} (p99 {pct(cairn, 99):.2f} ms)")
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "proxy-switch.json").write_text(json.dumps(
        {"switch_ms": cairn, "switch_internal_ms": internal, "nginx_reload_ms": ngx,
         "rollback_ms": rolls}, indent=1))


if __name__ == "__main__":
    main()
