#!/usr/bin/python3
"""Measures what the hostile-client tests bound (issue 9 items 4, 5, 8, 9, 16) and prints the
numbers: not a test (no pass/fail), a tool for before/after comparisons.

    CAIRN_BIN=build/cairn python3 tests/e2e/dos_measure.py [slowloris|body|events|agent|heads]

Every attack is bounded in connections, bytes and time, on loopback, and every process it
starts is stopped."""
import hashlib
import json
import os
import resource
import socket
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import test_dos_agent as ta  # noqa: E402
import test_dos_controller as tc  # noqa: E402
from conftest import Cairn  # noqa: E402
from ctlutil import Controller  # noqa: E402


def world():
    tmp = Path(tempfile.mkdtemp(prefix="dos-"))
    (tmp / "work").mkdir()
    c = Cairn(tmp / "state", tmp / "work")
    c.state.mkdir(parents=True)
    return tmp, c


def timed_unix(ctl, timeout=10):
    try:
        return tc.unix_answer_s(ctl, timeout=timeout)
    except OSError:
        return float("inf")


def slowloris():
    tmp, c = world()
    ctl, port, _ = tc.tcp_controller(c, tmp)
    try:
        log0 = os.path.getsize(ctl.logs[-1])
        att = tc.Slowloris(port, tc.ATTACKERS)
        worst, end = 0.0, time.monotonic() + 3
        while time.monotonic() < end:
            att.trickle()
            worst = max(worst, timed_unix(ctl, timeout=5))
            time.sleep(0.25)
        grew = os.path.getsize(ctl.logs[-1]) - log0
        print(f"controller slowloris ({tc.ATTACKERS} TCP connections, RLIMIT_NOFILE "
              f"{tc.NOFILE}, 3 s): slowest unix-socket GET /v1/jobs {worst:.3f} s; "
              f"log grew {grew} bytes")
        att.close()
    finally:
        ctl.stop(check=False)


def body():
    tmp, c = world()
    ctl, port, _ = tc.tcp_controller(c, tmp)
    socks = []
    try:
        rss0 = tc.rss_kb(ctl.proc.pid)
        chunk = b"\0" * (1 << 20)
        sent = []
        for _ in range(4):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"PUT /v1/objects/" + b"a" * 64 + b" HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 268435456\r\n\r\n")
            n = 0
            try:
                while n < (64 << 20):
                    s.sendall(chunk)
                    n += len(chunk)
            except OSError:
                pass
            sent.append(n >> 20)
            socks.append(s)
        time.sleep(0.5)
        rss = tc.rss_kb(ctl.proc.pid)
        print(f"controller, 4 TCP clients without a token PUT 64 MiB each: accepted "
              f"{sent} MiB, RSS {rss0} → {rss} KiB (+{(rss - rss0) >> 10} MiB)")
    finally:
        for s in socks:
            s.close()
        ctl.stop(check=False)


def events():
    tmp, c = world()
    ctl = Controller(c, tmp)
    ctl.start()
    ctl.stop()
    n, pad = 12000, "x" * 3000
    db = sqlite3.connect(c.state / "state.db")
    now = int(time.time() * 1000)
    db.executemany("INSERT INTO events (at, type, job_id, data) VALUES (?, 'step', ?, ?)",
                   ((now, 1 + i % 7, json.dumps({"i": i, "pad": pad})) for i in range(n)))
    db.commit()
    db.close()
    ctl.start()
    socks = []
    try:
        rss0 = tc.rss_kb(ctl.proc.pid)
        for _ in range(6):
            s = socket.socket(socket.AF_UNIX)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(ctl.sock)
            s.sendall(b"GET /v1/events?after=0 HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(s)
        worst = max(timed_unix(ctl) for _ in range(5))
        rss = tc.rss_kb(ctl.proc.pid)
        for s in socks:
            s.close()
        socks = []
        time.sleep(2)
        after = tc.rss_kb(ctl.proc.pid)
        print(f"controller, 6 clients that never read ?after=0 of a 36 MB log: slowest GET "
              f"/v1/jobs {worst:.3f} s; RSS {rss0} → {rss} KiB (+{(rss - rss0) >> 10} MiB), "
              f"2 s after they left {after} KiB")
    finally:
        for s in socks:
            s.close()
        ctl.stop(check=False)


def agent():
    tmp = Path(tempfile.mkdtemp(prefix="dos-"))
    a, port = ta.start_agent(tmp, ta.NOFILE)
    socks = []
    try:
        log0 = a.log.stat().st_size
        socks = ta.connect_many(port, ta.NOFILE + 200, b"GET / HTTP/1.1\r\nHost: x\r\n")
        worst, end = 0.0, time.monotonic() + 3
        while time.monotonic() < end:
            for ent in socks:
                try:
                    if ent[1]:
                        ent[0].send(ent[1][:1])
                        ent[1] = ent[1][1:]
                except OSError:
                    pass
            try:
                worst = max(worst, ta.api_answer_s(a, timeout=5))
            except OSError:
                worst = float("inf")
            time.sleep(0.25)
        grew = a.log.stat().st_size - log0
        print(f"agent, slowloris on an app's HTTP proxy ({ta.NOFILE + 200} connections, "
              f"RLIMIT_NOFILE {ta.NOFILE}, 3 s): slowest GET /v1/agent {worst:.3f} s; "
              f"log grew {grew} bytes")
    finally:
        for s, _ in socks:
            s.close()
        ta.stop_agent(a)


def heads(n=4000, k=63000):
    tmp = Path(tempfile.mkdtemp(prefix="dos-"))
    a, port = ta.start_agent(tmp)
    socks = []
    try:
        rss0 = ta.rss_kb(a.proc.pid)
        socks = ta.connect_many(port, n, b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * k)
        end = time.monotonic() + 10
        while time.monotonic() < end and any(d for _, d in socks):
            ta.push(socks)
            time.sleep(0.01)
        peak = ta.rss_kb(a.proc.pid)
        for s, _ in socks:
            s.close()
        socks = []
        time.sleep(3)
        after = ta.rss_kb(a.proc.pid)
        print(f"agent's HTTP proxy, {n} partial heads of {k} B: RSS {rss0} → {peak} KiB "
              f"(+{(peak - rss0) >> 10} MiB); 3 s after they left {after} KiB")
    finally:
        for s, _ in socks:
            s.close()
        ta.stop_agent(a)


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    what = sys.argv[1:] or ["slowloris", "body", "events", "agent", "heads"]
    for w in what:
        globals()[w]()
