#!/usr/bin/python3
"""bench/faults peers: the processes a fault benchmark needs, each its own process so no GIL is
shared between the measured sides. Every client prints one JSON line.

  peers.py sink PORT             discard everything (throughput upstream)
  peers.py echo PORT             echo, polling every 0.2 ms (latency upstream)
  peers.py send ADDR BYTES       send BYTES, wait for the sink's close; {"seconds": s}
  peers.py ping ADDR N           N one-byte round trips on one connection; {"rtt_us": [...]}
  peers.py cps ADDR SECONDS      connect, one round trip, close, for SECONDS; {"conns": n}
Servers print "ready PORT" once listening.
"""
import json
import select
import socket
import sys
import threading
import time

CHUNK = 1 << 20


def listen(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(512)
    print("ready", s.getsockname()[1], flush=True)
    return s


def serve(port, handler):
    s = listen(port)
    while True:
        c, _ = s.accept()
        threading.Thread(target=handler, args=(c,), daemon=True).start()


def sink(c):
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    total = 0
    while True:
        n = c.recv_into(view)
        if not n:
            break
        total += n
    c.close()


def nap_recv(c, n):
    while True:
        r, _, _ = select.select([c], [], [], 0.0002)
        if r:
            return c.recv(n)


def echo(c):
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        d = nap_recv(c, 65536)
        if not d:
            break
        c.sendall(d)
    c.close()


def addr(a):
    h, p = a.rsplit(":", 1)
    return h, int(p)


def send(a, total):
    c = socket.create_connection(addr(a))
    c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    data = memoryview(bytes(CHUNK))
    t = time.perf_counter()
    left = total
    while left > 0:
        n = c.send(data[:min(left, CHUNK)])
        left -= n
    c.shutdown(socket.SHUT_WR)
    c.recv(1)  # the sink closes once it has read everything
    return {"seconds": time.perf_counter() - t, "bytes": total}


def ping(a, n):
    c = socket.create_connection(addr(a))
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    out = []
    for i in range(n + 20):
        t = time.perf_counter()
        c.sendall(b"x")
        if not nap_recv(c, 1):
            raise SystemExit("ping: EOF")
        if i >= 20:  # warm-up
            out.append((time.perf_counter() - t) * 1e6)
    return {"rtt_us": out}


def cps(a, seconds):
    end = time.perf_counter() + seconds
    n = 0
    t = time.perf_counter()
    while time.perf_counter() < end:
        c = socket.create_connection(addr(a))
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.sendall(b"x")
        c.recv(1)
        c.close()
        n += 1
    return {"conns": n, "seconds": time.perf_counter() - t}


def main():
    mode = sys.argv[1]
    if mode == "sink":
        serve(int(sys.argv[2]), sink)
    elif mode == "echo":
        serve(int(sys.argv[2]), echo)
    else:
        fn = {"send": send, "ping": ping, "cps": cps}[mode]
        arg = float(sys.argv[3]) if mode == "cps" else int(sys.argv[3])
        print(json.dumps(fn(sys.argv[2], arg)), flush=True)


if __name__ == "__main__":
    main()
