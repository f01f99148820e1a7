"""Each toxic's measured effect through a real `cairn fault serve` (toxiproxy-api.md §1.6–1.7):
latency and jitter at p50/p99, bandwidth rate, slicer pieces, timeout, reset, limit_data,
slow_close, down, toxicity, hot changes on live connections, and the data path's edge cases.
Sample sizes and tolerances are chosen to hold on a loaded 2-core machine: latency and jitter are
timed one way with kernel receive timestamps, against a 0 ms twin, leaving out the samples the
scheduler held up (one_way_paired)."""
import hashlib
import os
import select
import socket
import struct
import threading
import time

import pytest

import oneway
from conftest import BIN
from faultkit import (TcpServer, connect, echo, fault, pct, recv_exact, rtt,  # noqa: F401
                      rtt_precise, start_server, stop_server, wait_for)

MS = 1e-3
# The acceptance bound (±1 ms) is the shipped build's. The same tests run on the -O0
# ASan+UBSan build, several times slower on every packet, to find memory errors: there the
# bound is 2 ms, still far below any wrong toxic (a 10 ms toxic that is not applied is off by
# 10 ms; one applied twice by 10 ms).
SANITIZED = b"__asan_init" in open(BIN, "rb").read()
TOL = (2 if SANITIZED else 1) * MS


def rtts(c, n):
    return [rtt_precise(c) for _ in range(n)]


def one_way_paired(fault, stream, toxics, name="p", **kw):
    """oneway.one_way_paired through this test's `cairn fault serve`."""
    def make_proxy(pname, upstream, tox):
        fault.api.proxy(pname, upstream)
        for t in tox:
            fault.api.toxic(pname, "latency", **t)
        return fault.api.json("GET", f"/proxies/{pname}")["listen"]
    try:
        return oneway.one_way_paired(make_proxy, fault.proc.pid, stream, toxics, name=name, **kw)
    except oneway.NoSchedstat as e:
        pytest.skip(str(e))


def in_one_of(attempts, measure):
    """measure(attempt) asserts on one fresh measurement. This machine is a VM: the host can
    stop a vCPU for a few ms, which the guest's scheduler counts nowhere, so a p99 over a few
    hundred samples now and then holds one such pause. A wrong toxic is wrong every time; a
    pause is not — so the bound must hold in one of `attempts` measurements, and the message
    lists every miss. (TooBusy, early bytes and the like fail at once: no retry hides them.)"""
    missed = []
    for i in range(attempts):
        try:
            return measure(i)
        except oneway.TooBusy:
            raise
        except AssertionError as e:
            if "early" in str(e):
                raise
            missed.append(str(e).splitlines()[0])
    raise AssertionError(f"missed in all {attempts} measurements: " + " | ".join(missed))


@pytest.mark.parametrize("stream", ["downstream", "upstream"])
def test_latency_p50_p99_within_1ms(fault, stream):
    """Acceptance: the added latency is within ±1 ms of the configured 10 ms at p50 and p99.
    Added latency = one-way latency through the toxic minus the path's own cost (the 0 ms twin's
    median, tens of µs); the twin itself must add under 1 ms (a latency toxic adds nothing it
    was not told to). Samples the scheduler held up are left out (see one_way_paired), so a
    busy machine makes the test slower, not wrong; a toxic that is off by 1 ms or more at either
    percentile, early at all, or that delays a 0 ms twin, fails."""
    def measure(i):
        tox, twin, every = one_way_paired(
            fault, stream, [{"stream": stream, "attributes": {"latency": 10}}], name=f"p{i}")
        path = pct(twin, 50)
        d50, d99 = pct(tox, 50) - path, pct(tox, 99) - path
        assert min(every) >= 10 * MS, f"a byte came {(10 * MS - min(every)) * 1e3:.3f} ms early"
        assert pct(twin, 99) <= TOL, f"the 0 ms twin adds {pct(twin, 99) * 1e3:.3f} ms at p99"
        assert abs(d50 - 10 * MS) <= TOL, f"p50 added {d50 * 1e3:.3f} ms over {len(tox)} samples"
        assert abs(d99 - 10 * MS) <= TOL, f"p99 added {d99 * 1e3:.3f} ms over {len(tox)} samples"
    in_one_of(3, measure)


def test_jitter_within_bound_and_spread(fault):
    def measure(i):
        tox, twin, every = one_way_paired(
            fault, "downstream", [{"attributes": {"latency": 20, "jitter": 5}}], name=f"p{i}")
        path = pct(twin, 50)
        assert min(every) >= 15 * MS, f"a byte came early: {min(every)}"  # latency - jitter
        assert pct(tox, 99) - path <= 25 * MS + TOL, f"p99 {pct(tox, 99)}"
        assert pct(tox, 90) - pct(tox, 10) >= 5 * MS  # uniform over ±5 ms: the spread is real
    in_one_of(3, measure)


def test_stacked_latency_adds(fault):
    """Two latency toxics on one proxy, one per direction: each direction gets its own (10 ms
    down, 15 ms up, ±1 ms at p50, timed one way as above), so a round trip gets 25 ms."""
    toxics = [{"name": "a", "attributes": {"latency": 10}},
              {"name": "b", "stream": "upstream", "attributes": {"latency": 15}}]
    def measure(i):
        added = {}
        for stream, name in (("downstream", f"p{i}"), ("upstream", f"q{i}")):
            tox, twin, every = one_way_paired(fault, stream, toxics, name=name, want=100)
            added[stream] = pct(tox, 50) - pct(twin, 50)
        assert abs(added["downstream"] - 10 * MS) <= TOL, added
        assert abs(added["upstream"] - 15 * MS) <= TOL, added
        assert abs(added["downstream"] + added["upstream"] - 25 * MS) <= TOL, added
    in_one_of(3, measure)


def sender(total):
    """A server that answers one request byte with `total` bytes, then closes."""
    block = os.urandom(65536)

    def h(c):
        if c.recv(1):
            left = total
            while left:
                n = min(left, len(block))
                c.sendall(block[:n])
                left -= n
        c.shutdown(socket.SHUT_WR)
        c.recv(1)
    return TcpServer(h)


def test_bandwidth_within_5_percent(fault):
    srv = sender(1_000_000)
    try:
        p = fault.api.proxy("p", srv.addr)
        fault.api.toxic("p", "bandwidth", attributes={"rate": 1000})  # KB/s: 1 MB takes 1 s
        c = connect(p["listen"])
        t0 = time.perf_counter()
        c.sendall(b"g")
        got = 0
        while True:
            d = c.recv(65536)
            if not d:
                break
            got += len(d)
        took = time.perf_counter() - t0
        assert got == 1_000_000
        rate = got / took / 1000
        assert abs(rate - 1000) <= 50, f"{rate:.1f} KB/s over {took:.3f} s"
    finally:
        srv.close()


def test_bandwidth_zero_stalls_until_removed(fault, echo):
    p = fault.api.proxy("p", echo.addr)
    fault.api.toxic("p", "bandwidth", attributes={"rate": 0})
    c = connect(p["listen"])
    c.sendall(b"abc")
    r, _, _ = select.select([c], [], [], 0.3)
    assert not r, "bytes passed a rate-0 bandwidth toxic"
    fault.api.call("DELETE", "/proxies/p/toxics/bandwidth_downstream")
    assert recv_exact(c, 3) == b"abc"


def test_slicer_piece_sizes(fault):
    srv = sender(1000)
    try:
        p = fault.api.proxy("p", srv.addr)
        fault.api.toxic("p", "slicer", attributes={"average_size": 100, "size_variation": 20,
                                                   "delay": 30000})
        c = connect(p["listen"])
        c.sendall(b"g")
        sizes = []
        while True:
            d = c.recv(65536)
            if not d:
                break
            sizes.append(len(d))
        assert sum(sizes) == 1000
        assert len(sizes) >= 8, sizes
        assert all(80 <= s < 120 for s in sizes[:-1]), sizes
    finally:
        srv.close()


def test_timeout_closes_after_idle_time_and_drops_data(fault, echo):
    p = fault.api.proxy("p", echo.addr)
    fault.api.toxic("p", "timeout", attributes={"timeout": 300})
    c = connect(p["listen"])
    t0 = time.perf_counter()
    c.sendall(b"x")
    assert c.recv(10) == b""  # the echo was dropped, then the stream closed
    took = time.perf_counter() - t0
    assert 0.3 - 0.01 <= took <= 0.45, took


def test_timeout_traffic_rearms_and_removal_closes(fault, echo):
    p = fault.api.proxy("p", echo.addr)
    fault.api.toxic("p", "timeout", stream="upstream", attributes={"timeout": 0})
    c = connect(p["listen"])
    c.sendall(b"x")
    r, _, _ = select.select([c], [], [], 0.2)
    assert not r  # dropped, and timeout 0 never closes
    fault.api.call("DELETE", "/proxies/p/toxics/timeout_upstream")
    c.settimeout(5)
    assert c.recv(10) == b""  # removal closes: the stream lost bytes


def test_reset_peer_gives_econnreset(fault, echo):
    p = fault.api.proxy("p", echo.addr)
    fault.api.toxic("p", "reset_peer", stream="upstream", attributes={"timeout": 100})
    c = connect(p["listen"])
    # an idle connection is never reset: only the first chunk arms it
    t0 = time.perf_counter()
    c.sendall(b"x")
    with pytest.raises(ConnectionResetError):
        c.recv(10)
    assert time.perf_counter() - t0 >= 0.1


def test_reset_peer_added_later_closes_with_fin(fault, echo):
    p = fault.api.proxy("p", echo.addr)
    c = connect(p["listen"])
    c.sendall(b"a")
    recv_exact(c, 1)
    fault.api.toxic("p", "reset_peer", stream="upstream", attributes={"timeout": 0})
    c.sendall(b"x")
    assert c.recv(10) == b""  # FIN: linger is only set when the link starts with it


def test_reset_peer_toxicity_zero_still_sets_linger(fault, echo):
    """#603: a reset_peer toxic with toxicity 0 never fires, yet changes how connections close."""
    p = fault.api.proxy("p", echo.addr)
    fault.api.toxic("p", "reset_peer", toxicity=0, attributes={"timeout": 0})
    c = connect(p["listen"])
    c.sendall(b"a")
    assert recv_exact(c, 1) == b"a"  # the toxic does not fire
    fault.api.json("PATCH", "/proxies/p", {"enabled": False})
    with pytest.raises(ConnectionResetError):
        c.recv(10)


def test_limit_data_closes_after_n_bytes(fault):
    srv = sender(5000)
    try:
        p = fault.api.proxy("p", srv.addr)
        fault.api.toxic("p", "limit_data", attributes={"bytes": 1000})
        c = connect(p["listen"])
        c.sendall(b"g")
        got = b""
        while True:
            d = c.recv(65536)
            if not d:
                break
            got += d
        assert len(got) == 1000
    finally:
        srv.close()


def test_slow_close_holds_the_close(fault):
    def h(c):
        c.recv(1)
        c.sendall(b"bye")
    srv = TcpServer(h)
    try:
        p = fault.api.proxy("p", srv.addr)
        fault.api.toxic("p", "slow_close", attributes={"delay": 300})
        c = connect(p["listen"])
        t0 = time.perf_counter()
        c.sendall(b"g")
        assert recv_exact(c, 3) == b"bye"
        assert time.perf_counter() - t0 < 0.2
        assert c.recv(10) == b""
        assert time.perf_counter() - t0 >= 0.3
    finally:
        srv.close()


def test_down_refuses(fault, echo):
    p = fault.api.proxy("p", echo.addr)
    fault.api.json("PATCH", "/proxies/p", {"enabled": False})
    with pytest.raises(ConnectionRefusedError):
        connect(p["listen"])


def test_toxicity_zero_never_fires_half_fires_sometimes(fault, echo):
    p = fault.api.proxy("p", echo.addr)
    fault.api.toxic("p", "latency", toxicity=0, attributes={"latency": 200})
    c = connect(p["listen"])
    assert max(rtts(c, 20)) < 0.1
    fault.api.json("PATCH", "/proxies/p/toxics/latency_downstream",
                   {"toxicity": 0.5, "attributes": {"latency": 30}})
    slow = 0
    for _ in range(40):  # rolled per connection: P(all alike) = 2^-39
        c = connect(p["listen"])
        slow += rtt(c) >= 0.03
        c.close()
    assert 0 < slow < 40, slow


def test_toxics_apply_to_live_connections(fault, echo):
    p = fault.api.proxy("p", echo.addr)
    c = connect(p["listen"])
    assert rtt(c) < 0.02
    fault.api.toxic("p", "latency", attributes={"latency": 50})
    assert rtt(c) >= 0.05
    fault.api.call("DELETE", "/proxies/p/toxics/latency_downstream")
    assert rtt(c) < 0.04


def test_half_close_is_propagated(fault):
    def h(c):
        data = b""
        while True:
            d = c.recv(100)
            if not d:
                break
            data += d
        c.sendall(b"got " + data)
    srv = TcpServer(h)
    try:
        p = fault.api.proxy("p", srv.addr)
        c = connect(p["listen"])
        c.sendall(b"abc")
        c.shutdown(socket.SHUT_WR)
        assert recv_exact(c, 7) == b"got abc"
        assert c.recv(10) == b""
    finally:
        srv.close()


def test_upstream_reset_is_passed_on(fault):
    def h(c):
        c.recv(1)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    srv = TcpServer(h)
    try:
        p = fault.api.proxy("p", srv.addr)
        c = connect(p["listen"])
        c.sendall(b"g")
        with pytest.raises(ConnectionResetError):
            c.recv(10)
    finally:
        srv.close()


@pytest.mark.parametrize("toxic", [None, "latency"])
def test_large_transfer_intact(fault, echo, toxic):
    """20 MB each way through the splice path (no toxic) and the buffered path (latency 0)."""
    p = fault.api.proxy("p", echo.addr)
    if toxic:
        fault.api.toxic("p", toxic, attributes={"latency": 0})
    c = connect(p["listen"])
    data = os.urandom(20 << 20)
    want = hashlib.sha256(data).hexdigest()
    t = threading.Thread(target=lambda: (c.sendall(data), c.shutdown(socket.SHUT_WR)))
    t.start()
    h = hashlib.sha256()
    got = 0
    while True:
        d = c.recv(1 << 20)
        if not d:
            break
        h.update(d)
        got += len(d)
    t.join()
    assert got == len(data) and h.hexdigest() == want


def test_two_loop_threads_serve_many_connections(echo):
    s = start_server("--threads", "2")
    try:
        p = s.api.proxy("p", echo.addr)
        conns = [connect(p["listen"]) for _ in range(64)]
        for i, c in enumerate(conns):
            c.sendall(b"%d" % i)
        for i, c in enumerate(conns):
            assert recv_exact(c, len(b"%d" % i)) == b"%d" % i
        s.api.toxic("p", "latency", attributes={"latency": 20})
        assert all(rtt(c) >= 0.02 for c in conns[:8])  # every loop took the chain
    finally:
        stop_server(s)


def test_out_of_descriptors_does_not_spin_and_recovers(echo):
    """With the descriptor limit reached, the listener pauses instead of spinning on EMFILE,
    and serves again once connections close."""
    import resource
    import subprocess as sp
    from faultkit import BIN, Server

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))
    p = sp.Popen([BIN, "fault", "serve", "--listen", "127.0.0.1:0"], stdout=sp.PIPE,
                 stderr=sp.PIPE, text=True, preexec_fn=limit)
    s = Server(p, p.stdout.readline().strip().rsplit(" ", 1)[1])
    try:
        px = s.api.proxy("p", echo.addr)
        conns = []
        for i in range(40):  # each proxied connection holds 2 sockets (+ pipes once used)
            c = connect(px["listen"])
            conns.append(c)
        for c in conns[:8]:
            c.sendall(b"a")
        ticks = lambda: sum(int(x) for x in open(f"/proc/{p.pid}/stat").read().split()[13:15])  # noqa: E731
        t0 = ticks()
        time.sleep(0.5)  # measuring idle CPU over a fixed window is the point here
        assert ticks() - t0 < 20, "the loop spins while out of descriptors"
        for c in conns:
            c.close()

        def works():
            try:
                c = connect(px["listen"], timeout=1)
                c.settimeout(1)
                c.sendall(b"z")
                ok = c.recv(1) == b"z"
                c.close()
                return ok
            except OSError:
                return False
        wait_for(works, 10, "the proxy to serve again")
    finally:
        stop_server(s)
