"""One-way latency through a proxy, timed with the kernel's receive timestamp, paired sample by
sample with a 0 ms twin, leaving out samples the scheduler held up. No pytest here: the fault
tests (test_fault_toxics.py) and bench/faults measure the latency toxic with the same code."""
import gc
import os
import socket
import struct
import threading
import time

MS = 1e-3
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
QUIET_NS = 100_000  # a sample during which a thread waited this long for a CPU is disturbed


class RunQueueWait:
    """Nanoseconds the proxy's threads and this thread have spent runnable but not running
    (field 2 of /proc/PID/task/TID/schedstat): a sample during which it grows was held up by
    the scheduler, not by the toxic. (A thread that has exited counts no more.)"""

    def __init__(self, pid):
        self.files = [f"/proc/{pid}/task/{t}/schedstat" for t in os.listdir(f"/proc/{pid}/task")]
        self.files.append(f"/proc/self/task/{threading.get_native_id()}/schedstat")

    def kept(self):
        """Does this kernel keep the count (CONFIG_SCHED_INFO)?"""
        try:
            with open(self.files[-1], "rb") as fh:
                return len(fh.read().split()) >= 2
        except OSError:
            return False

    def total(self):
        n = 0
        for f in self.files:
            try:
                with open(f, "rb") as fh:
                    n += int(fh.read().split()[1])
            except (OSError, IndexError, ValueError):
                pass
        return n


class OneWay:
    """One byte through a proxy in one direction, timed from just before the send to the
    kernel's receive timestamp (SO_TIMESTAMPNS): neither end's thread has to wake up for the
    time to be right, so what is measured is the proxy's doing. The test's own sockets are both
    ends (no echo server thread in the path)."""

    def __init__(self, make_proxy, name, stream, toxics):
        """make_proxy(name, upstream "HOST:PORT", latency toxics) → the proxy's listen address."""
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        ls.settimeout(10)
        host, port = make_proxy(name, "127.0.0.1:%d" % ls.getsockname()[1], toxics).rsplit(":", 1)
        c = socket.create_connection((host, int(port)), timeout=10)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        u, _ = ls.accept()
        ls.close()
        u.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.socks = (c, u)
        self.snd, self.rcv = (u, c) if stream == "downstream" else (c, u)
        self.rcv.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.rcv.settimeout(10)

    def once(self):
        t0 = time.time_ns()
        self.snd.send(b"x")
        data, anc, _, _ = self.rcv.recvmsg(16, socket.CMSG_SPACE(16))
        assert data == b"x", data
        for level, kind, d in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, ns = struct.unpack("qq", d[:16])
                return (sec * 1_000_000_000 + ns - t0) / 1e9
        raise AssertionError("no SO_TIMESTAMPNS receive timestamp")

    def close(self):
        for c in self.socks:
            c.close()


class NoSchedstat(Exception):
    pass


class TooBusy(AssertionError):
    pass


def pct(values, p):
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * (len(s) - 1)))))
    return s[k]


def one_way_paired(make_proxy, pid, stream, toxics, name="p", want=200, rounds=40,
                   per_round=50):
    """One-way latencies in `stream`'s direction through proxy `name` with `toxics` (latency
    toxics, as keyword arguments of Api.toxic) and, interleaved sample by sample, through a
    twin whose latency toxic is 0 ms (the same staged path). A pair is kept only when no thread
    involved waited for a CPU during either sample (RunQueueWait); a round is dropped whole
    when even its kept twin samples spread by more than 0.25 ms (noise the scheduler count does
    not explain, e.g. a stolen vCPU). Rounds go on until `want` pairs are kept, at most
    `rounds` (then the test fails, saying so). Returns (tox, twin, every_tox) in seconds; a
    byte is never early because of noise, so every_tox holds every sample."""
    tox_p = OneWay(make_proxy, name, stream, toxics)
    twin_p = OneWay(make_proxy, name + "-twin", stream,
                    [{"stream": stream, "attributes": {"latency": 0}}])
    waits = RunQueueWait(pid)
    if not waits.kept():
        raise NoSchedstat("this kernel keeps no run-queue wait (/proc/PID/task/TID/schedstat)")
    # the collector would stop this thread between its clock read and its send, in a process
    # holding many objects (the bench) for milliseconds: no collection while sampling
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(10):  # warm up
            tox_p.once()
            twin_p.once()
        tox, twin, every, dropped = [], [], [], 0
        for _ in range(rounds):
            rt, rb = [], []
            for _ in range(per_round):
                w0 = waits.total()
                t = tox_p.once()
                w1 = waits.total()
                b = twin_p.once()
                w2 = waits.total()
                every.append(t)
                if w1 - w0 < QUIET_NS and w2 - w1 < QUIET_NS:
                    rt.append(t)
                    rb.append(b)
            if len(rb) >= 5 and pct(rb, 99) - pct(rb, 50) > 0.25 * MS:
                dropped += 1
                continue
            tox += rt
            twin += rb
            if len(tox) >= want:
                return tox, twin, every
        raise TooBusy(
            f"only {len(tox)} of {len(every)} samples were undisturbed ({dropped} noisy rounds "
            f"dropped): the machine is too busy to measure a 1 ms bound")
    finally:
        if gc_was:
            gc.enable()
        tox_p.close()
        twin_p.close()


