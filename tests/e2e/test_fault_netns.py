"""The fault API seen from another machine (issue 9 item 11): two network namespaces made by
the test, joined by a veth pair, with addresses only inside them. `cairn fault serve` runs in
the first with its API on loopback; the second plays a remote client. A proxy on 0.0.0.0 whose
upstream was the API used to hand the API (and any loopback service) to the remote side."""
import os
import select
import shutil
import signal
import subprocess
import time

import pytest

from conftest import BIN

A_IP, B_IP = "10.231.7.1", "10.231.7.2"


def sh(*args, check=True):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=30, check=check)


@pytest.fixture
def netns():
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("needs root and iproute2 to make network namespaces")
    tag = f"cf{os.getpid() % 100000}"
    a, b = f"{tag}a", f"{tag}b"
    try:
        sh("ip", "netns", "add", a)
        sh("ip", "netns", "add", b)
        sh("ip", "-n", a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", b)
        for ns, dev, ip in ((a, "va", A_IP), (b, "vb", B_IP)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield a, b
    finally:
        sh("ip", "netns", "del", a, check=False)  # takes the veth pair with it
        sh("ip", "netns", "del", b, check=False)


def start(ns, *args, want="listening on", timeout=10):
    p = subprocess.Popen(["ip", "netns", "exec", ns, *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    line = ""
    while time.monotonic() < deadline and want not in line:
        r, _, _ = select.select([p.stdout], [], [], 0.2)
        if r:
            line = p.stdout.readline()
        elif p.poll() is not None:
            break
    if want not in line:
        stop(p)
        raise AssertionError(f"{args} did not start: {line!r}")
    return p, line.strip()


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    p.stdout.close()
    p.stderr.close()


def fault_cli(ns, api, *args):
    return subprocess.run(["ip", "netns", "exec", ns, BIN, "fault", *args, "--addr", api],
                          capture_output=True, text=True, timeout=60)


ECHO = ("import socket,sys\n"
        "s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
        "s.bind(('127.0.0.1',7777));s.listen(8);print('echo listening on 7777',flush=True)\n"
        "while True:\n"
        "    c,_=s.accept();d=c.recv(100);c.sendall(d);c.close()\n")

ROUNDTRIP = ("import socket,sys,time\n"
             "end=time.monotonic()+10\n"
             "while time.monotonic()<end:\n"
             "    try:\n"
             "        c=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=2)\n"
             "        c.sendall(b'ping');d=c.recv(4);c.close()\n"
             "        if d==b'ping':print('ok');sys.exit(0)\n"
             "    except OSError:pass\n"
             "    time.sleep(0.05)\n"
             "sys.exit(1)\n")


def test_api_not_reachable_from_another_namespace(netns):
    a, b = netns
    srv, line = start(a, BIN, "fault", "serve", "--listen", "127.0.0.1:0")
    try:
        api = line.rsplit(" ", 1)[1]
        p = fault_cli(a, api, "create", "expose", "-l", "0.0.0.0:18474", "-u", api)
        assert p.returncode == 2 and "not a loopback address" in p.stderr, p.stderr
        p = fault_cli(a, api, "create", "expose6", "-l", "[::]:18475", "-u", "127.0.0.1:22")
        assert p.returncode == 2, p.stderr
        # from the other namespace, nothing answers: no API, no way to make proxies
        for port in (18474, 18475):
            p = fault_cli(b, f"{A_IP}:{port}", "list")
            assert p.returncode == 1 and "cannot reach the fault API" in p.stderr, p.stdout
        p = fault_cli(a, api, "list", "--json")
        assert p.returncode == 0 and p.stdout.strip() == "{}"
    finally:
        stop(srv)


def test_allow_listen_exposes_only_what_it_names(netns):
    a, b = netns
    echo, _ = start(a, "python3", "-c", ECHO)
    srv, line = start(a, BIN, "fault", "serve", "--listen", "127.0.0.1:0",
                      "--allow-listen", A_IP)
    try:
        api = line.rsplit(" ", 1)[1]
        # allowed address, but the upstream is the API: still refused
        p = fault_cli(a, api, "create", "api", "-l", f"{A_IP}:18476", "-u", api)
        assert p.returncode == 2 and "is the fault API's own address" in p.stderr, p.stderr
        p = fault_cli(b, f"{A_IP}:18476", "list")
        assert p.returncode == 1
        # another interface than the one allowed: refused
        p = fault_cli(a, api, "create", "any", "-l", "0.0.0.0:18477", "-u", "127.0.0.1:7777")
        assert p.returncode == 2 and "not a loopback address" in p.stderr
        # the allowed one, to the service under test, reaches the other namespace
        p = fault_cli(a, api, "create", "svc", "-l", f"{A_IP}:18478", "-u", "127.0.0.1:7777")
        assert p.returncode == 0, p.stderr
        r = subprocess.run(["ip", "netns", "exec", b, "python3", "-c", ROUNDTRIP, A_IP, "18478"],
                           capture_output=True, text=True, timeout=30)
        assert r.stdout.strip() == "ok", r.stderr
    finally:
        stop(srv)
        stop(echo)
