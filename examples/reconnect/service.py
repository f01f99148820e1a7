#!/usr/bin/python3
"""A service that forwards messages to its dependency (dependency.py) over one TCP connection,
with a reconnect-and-buffer path — in two variants, the point of story 004:

  buggy  treats a message as delivered once it is written to the socket, buffers only while it
         knows the link is down, and reconnects only after a *clean* close: a close with an
         error (a reset, a refused connect) is logged and never retried. Messages vanish and
         the service still says it sent them all.
  fixed  keeps every message until the dependency acknowledges it, treats any close, any error
         and a missing acknowledgement (ack_timeout) as a dead link, reconnects with backoff
         and resends what was not acknowledged. The dependency stores each id once.

It produces --messages messages, one every --interval-ms, prints one JSON event per line
({"event": "produced"|"down"|"up"|"done", ...}) and exits 0 when done (fixed: 1 if some
message was never acknowledged before --deadline).

    python3 service.py --variant fixed --dependency 127.0.0.1:PORT --messages 200
"""
import argparse
import collections
import errno
import json
import select
import socket
import sys
import time


def emit(**kw):
    print(json.dumps(kw), flush=True)


class Service:
    def __init__(self, args):
        self.a = args
        self.host, port = args.dependency.rsplit(":", 1)
        self.port = int(port)
        self.sock = None
        self.rbuf = b""
        self.reconnect_at = 0.0
        self.backoff = 0.05
        self.unacked = collections.OrderedDict()  # fixed: id -> (line, sent_at)
        self.buffer = collections.deque()         # buggy: lines waiting for a connection
        self.claimed = 0                          # buggy: messages it believes delivered
        self.acked = set()

    # ---- the link ----
    def connect(self):
        try:
            s = socket.create_connection((self.host, self.port), timeout=1)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
        except OSError as e:
            self.link_closed(e)
            return
        self.sock = s
        self.rbuf = b""
        self.backoff = 0.05
        emit(event="up")
        if self.a.variant == "fixed":
            now = time.monotonic()
            for mid, (line, _) in list(self.unacked.items()):
                self.unacked[mid] = (line, now)
                if not self.send(line):
                    return
        else:
            while self.buffer and self.sock:
                line = self.buffer.popleft()
                if self.send(line):
                    self.claimed += 1

    def link_closed(self, error):
        if self.sock:
            self.sock.close()
        self.sock = None
        emit(event="down", error=str(error) if error else None)
        if self.a.variant == "buggy":
            if error is None:  # the bug: only a clean close schedules a reconnect
                self.reconnect_at = time.monotonic()
            else:
                self.reconnect_at = float("inf")
            return
        self.reconnect_at = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, 0.5)

    def send(self, line):
        try:
            self.sock.sendall(line)
            return True
        except BlockingIOError:
            return True  # the kernel buffer is full; a real service would queue the rest
        except OSError as e:
            self.link_closed(e)
            return False

    def on_readable(self):
        try:
            d = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as e:
            self.link_closed(e)
            return
        if not d:
            self.link_closed(None)
            return
        self.rbuf += d
        while b"\n" in self.rbuf:
            line, self.rbuf = self.rbuf.split(b"\n", 1)
            if line.startswith(b"OK "):
                mid = int(line[3:])
                self.acked.add(mid)
                self.unacked.pop(mid, None)

    # ---- messages ----
    def produce(self, mid):
        line = b"MSG %d payload-%d\n" % (mid, mid)
        emit(event="produced", id=mid)
        if self.a.variant == "fixed":
            self.unacked[mid] = (line, time.monotonic())
            if self.sock:
                self.send(line)
        elif self.sock:
            if self.send(line):
                self.claimed += 1  # the bug: written is not delivered
        else:
            self.buffer.append(line)

    def ack_overdue(self, now):
        if self.a.variant != "fixed" or not self.unacked or not self.sock:
            return False
        _, sent_at = next(iter(self.unacked.values()))
        return now - sent_at > self.a.ack_timeout_ms / 1000

    def run(self):
        interval = self.a.interval_ms / 1000
        next_id, next_at = 0, time.monotonic()
        end = None
        while True:
            now = time.monotonic()
            if not self.sock and now >= self.reconnect_at:
                self.connect()
            if next_id < self.a.messages and now >= next_at:
                self.produce(next_id)
                next_id += 1
                next_at += interval
            if self.ack_overdue(now):
                self.link_closed(TimeoutError("no acknowledgement"))
            if next_id == self.a.messages:
                end = end or now + self.a.deadline
                settled = not self.unacked if self.a.variant == "fixed" else not self.buffer
                if settled or now >= end:
                    break
            waits = [next_at - now if next_id < self.a.messages else 0.05, 0.05]
            if not self.sock and self.reconnect_at != float("inf"):
                waits.append(self.reconnect_at - now)
            r = []
            if self.sock:
                r, _, _ = select.select([self.sock], [], [], max(0.0, min(waits)))
            else:
                time.sleep(max(0.0, min(waits)))
            if r:
                self.on_readable()
        if self.a.variant == "fixed":
            emit(event="done", produced=self.a.messages, acknowledged=len(self.acked),
                 unacknowledged=len(self.unacked))
            return 0 if not self.unacked else 1
        emit(event="done", produced=self.a.messages, sent=self.claimed, buffered=len(self.buffer))
        return 0  # it believes all is well: that is the bug


def main():
    ap = argparse.ArgumentParser(description="forward messages to the dependency")
    ap.add_argument("--variant", choices=["buggy", "fixed"], required=True)
    ap.add_argument("--dependency", required=True, help="HOST:PORT (the cairn proxy)")
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--interval-ms", type=float, default=10)
    ap.add_argument("--ack-timeout-ms", type=float, default=300)
    ap.add_argument("--deadline", type=float, default=10, help="seconds to settle at the end")
    return Service(ap.parse_args()).run()


if __name__ == "__main__":
    sys.exit(main())
