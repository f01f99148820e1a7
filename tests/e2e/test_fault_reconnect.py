"""Story 004 as a test: examples/reconnect's service forwards messages through a cairn proxy to
its dependency; the link is cut (timeout / down / reset_peer) while messages flow, then restored.
The buggy variant loses messages while claiming it sent them all; the fixed one delivers every
message exactly once. Counts are exact, read from the dependency itself."""
import json
import select
import socket
import subprocess
import time

import pytest

from conftest import EXAMPLES
from faultkit import fault  # noqa: F401

PY = "/usr/bin/python3"
N = 200


class Lines:
    """Reads a child's JSON-lines stdout with deadlines."""

    def __init__(self, proc):
        self.proc = proc
        self.events = []

    def pump(self, timeout):
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if r:
            line = self.proc.stdout.readline()
            if line:
                self.events.append(json.loads(line))
                return True
        return False

    def wait(self, cond, timeout, what):
        deadline = time.monotonic() + timeout
        while not cond(self.events):
            left = deadline - time.monotonic()
            if left <= 0 or (self.proc.poll() is not None and not self.pump(0)):
                raise AssertionError(f"timed out waiting for {what}: {self.events[-5:]}")
            self.pump(min(left, 0.1))


def start_dependency():
    p = subprocess.Popen([PY, str(EXAMPLES / "reconnect" / "dependency.py"), "--port", "0"],
                         stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    assert line.startswith("listening on "), line
    return p, int(line.split()[-1])


def ids_at(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"IDS\n")
        data = b""
        while b"DUPS" not in data or not data.endswith(b"\n"):
            d = s.recv(65536)
            if not d:
                break
            data += d
    lines = data.decode().splitlines()
    ids = lines[0][4:]
    return {int(x) for x in ids.split(",") if x}


CUTS = {
    # (how to cut, how to restore)
    "timeout": (lambda api: api.toxic("dep", "timeout", stream="upstream", attributes={"timeout": 0}),
                lambda api: api.call("DELETE", "/proxies/dep/toxics/timeout_upstream")),
    "down": (lambda api: api.json("PATCH", "/proxies/dep", {"enabled": False}),
             lambda api: api.json("PATCH", "/proxies/dep", {"enabled": True})),
    "reset_peer": (lambda api: api.toxic("dep", "reset_peer", stream="upstream",
                                         attributes={"timeout": 0}),
                   lambda api: api.call("DELETE", "/proxies/dep/toxics/reset_peer_upstream")),
}


@pytest.mark.parametrize("cut", sorted(CUTS))
@pytest.mark.parametrize("variant", ["buggy", "fixed"])
def test_reconnect_story_004(fault, cut, variant):
    dep, dep_port = start_dependency()
    svc = None
    try:
        proxy = fault.api.proxy("dep", f"127.0.0.1:{dep_port}")
        svc = subprocess.Popen([PY, str(EXAMPLES / "reconnect" / "service.py"), "--variant", variant,
                                "--dependency", proxy["listen"], "--messages", str(N),
                                "--interval-ms", "10", "--deadline", "4"],
                               stdout=subprocess.PIPE, text=True)
        ev = Lines(svc)
        produced = lambda es: sum(e["event"] == "produced" for e in es)  # noqa: E731
        ev.wait(lambda es: produced(es) >= 30, 10, "30 messages produced")
        cut_at = produced(ev.events)
        CUTS[cut][0](fault.api)
        # the cut lasts while at least 30 more messages are produced
        ev.wait(lambda es: produced(es) >= cut_at + 30, 10, "messages during the cut")
        CUTS[cut][1](fault.api)
        ev.wait(lambda es: es and es[-1]["event"] == "done", 30, "the service to finish")
        rc = svc.wait(timeout=10)
        done = ev.events[-1]
        got = ids_at(dep_port)
        assert got <= set(range(N))
        if variant == "fixed":
            assert rc == 0, done
            assert done["acknowledged"] == N and done["unacknowledged"] == 0
            assert len(got) == N, f"fixed variant: {N - len(got)} of {N} messages lost"
        else:
            lost = N - len(got)
            assert rc == 0  # it reports success ...
            assert lost > 0, "the buggy variant delivered everything; the cut did not bite"
            # ... and counts as sent messages that never arrived
            assert done["sent"] + done["buffered"] > len(got), (done, len(got))
            print(f"buggy/{cut}: {lost} of {N} messages lost; service claimed sent={done['sent']}")
    finally:
        for p in (svc, dep):
            if p and p.poll() is None:
                p.kill()
                p.wait()
