"""End-to-end tests of how `cairn serve` stops: SIGTERM or SIGINT while requests are still open
(event streams, an object upload half sent). It must end every stream cleanly (the chunked
stream's last chunk, then EOF), finish, exit 0 within its bound (docs/controller.md), remove its
socket and, under ASan (CAIRN_BIN=build-asan/cairn, ASAN_OPTIONS=detect_leaks=1), report no
leak and no error."""
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import BIN
from ctlutil import Controller, has_test_hooks, make_app, wait_for

pytestmark = pytest.mark.skipif(not has_test_hooks(), reason="needs a -Dtest_hooks=true build")

SHUTDOWN_BOUND_S = 5   # docs/controller.md; the assertion below is generous
DEADLINE_S = 20        # not a performance assertion: ASan builds on a busy machine are slow


def raw(sock_path, data):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(DEADLINE_S)
    s.connect(sock_path)
    s.sendall(data)
    return s


def read_head(s):
    """Reads until the end of the response headers; returns (head, what came after)."""
    got = b""
    while b"\r\n\r\n" not in got:
        b = s.recv(4096)
        if not b:
            raise AssertionError(f"connection closed before the headers: {got!r}")
        got += b
    head, rest = got.split(b"\r\n\r\n", 1)
    return head.decode(), rest


def read_to_eof(s, got=b""):
    while True:
        b = s.recv(65536)
        if not b:
            return got
        got += b


def open_stream(ctl):
    s = raw(ctl.sock, b"GET /v1/events HTTP/1.1\r\nHost: cairn\r\n\r\n")
    head, rest = read_head(s)
    assert head.startswith("HTTP/1.1 200"), head
    assert "text/event-stream" in head and "chunked" in head.lower(), head
    return s, rest


def half_upload(ctl, n=64 * 1024):
    body = b"x" * n
    hdr = (f"PUT /v1/objects/{'a' * 64} HTTP/1.1\r\nHost: cairn\r\n"
           f"Content-Type: application/octet-stream\r\nContent-Length: {n}\r\n\r\n").encode()
    return raw(ctl.sock, hdr + body[: n // 2])


def test_streams_whose_clients_left_leave_nothing_behind(cairn, tmp_path):
    """Clients that close their event stream (as `cairn deploy --wait` does once its job has
    ended) and one that leaves while its request waits for the store worker: evhttp lets go
    of such a request and the controller must free it. Under ASan a leak shows at exit."""
    cairn.state.mkdir(parents=True, exist_ok=True)
    rel = make_app(cairn)
    ctl = Controller(cairn, tmp_path).start(env={"CAIRN_TEST_RECORD_DELAY_MS": "500"})
    try:
        for _ in range(3):
            s, _ = open_stream(ctl)
            s.close()
        wait_for(lambda: "cairn_event_streams 0" in ctl.get("/metrics", raw=True)[1],
                 what="the streams to be gone")
        body = f'{{"release":"{rel}"}}'.encode()
        s = raw(ctl.sock, b"POST /v1/apps/demo/deploys HTTP/1.1\r\nHost: cairn\r\n"
                b"Content-Type: application/json\r\nIdempotency-Key: gone\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        wait_for(lambda: "cairn_idempotency_inflight 1" in ctl.get("/metrics", raw=True)[1],
                 what="the request to be in flight")
        s.close()
        wait_for(lambda: "cairn_idempotency_inflight 0" in ctl.get("/metrics", raw=True)[1],
                 what="the request to be recorded")
        ctl.proc.send_signal(signal.SIGTERM)
        rc = ctl.proc.wait(timeout=DEADLINE_S)
        log = ctl.log_text()
        assert rc == 0 and "Sanitizer" not in log, f"exit {rc}:\n{log}"
    finally:
        ctl.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_with_open_streams_and_half_upload(cairn, tmp_path, sig):
    cairn.state.mkdir(parents=True, exist_ok=True)
    ctl = Controller(cairn, tmp_path).start()
    opened = []
    try:
        streams = [open_stream(ctl) for _ in range(3)]
        opened += [s for s, _ in streams]
        up = half_upload(ctl)
        opened.append(up)
        # every stream is counted by the controller; the upload has been sent (half of it)
        wait_for(lambda: "cairn_event_streams 3" in ctl.get("/metrics", raw=True)[1],
                 what="3 event streams open")
        t0 = time.monotonic()
        ctl.proc.send_signal(sig)
        try:
            rc = ctl.proc.wait(timeout=DEADLINE_S)
        except Exception:
            raise AssertionError("serve did not exit: " + ctl.log_text())
        took = time.monotonic() - t0
        log = ctl.log_text()
        assert rc == 0, f"exit {rc}:\n{log}"
        assert "ERROR: AddressSanitizer" not in log and "runtime error" not in log, log
        assert took < DEADLINE_S
        # each stream ends with the chunked stream's last chunk, then EOF
        for s, rest in streams:
            tail = read_to_eof(s, rest)
            assert tail.endswith(b"0\r\n\r\n"), f"stream not ended cleanly: {tail[-80:]!r}"
        # the half-sent upload is closed (a reset when bytes were left unread), never answered
        # as if it were whole
        try:
            got = read_to_eof(up)
        except ConnectionResetError:
            got = b""
        assert b"201" not in got and b"200 OK" not in got, got
        assert not (cairn.state / "cairn.sock").exists()
        assert "shutting down" in log and "stopped" in log, log
    finally:
        for s in opened:
            s.close()
        ctl.stop()


def test_no_new_request_is_taken_after_the_signal(cairn, tmp_path):
    """Once the signal is in, the socket is gone or refuses: no request is taken any more,
    while an open stream still ends cleanly."""
    cairn.state.mkdir(parents=True, exist_ok=True)
    ctl = Controller(cairn, tmp_path).start()
    s, rest = open_stream(ctl)
    try:
        ctl.proc.send_signal(signal.SIGTERM)
        assert ctl.proc.wait(timeout=DEADLINE_S) == 0, ctl.log_text()
        assert read_to_eof(s, rest).endswith(b"0\r\n\r\n")
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with pytest.raises(OSError):
            c.connect(ctl.sock)
        c.close()
    finally:
        s.close()
        ctl.stop()


def test_a_request_being_answered_gets_its_answer(cairn, tmp_path):
    """A deploy request the store worker is recording when the signal comes is answered (202),
    not cut; then serve exits 0."""
    cairn.state.mkdir(parents=True, exist_ok=True)
    rel = make_app(cairn)
    ctl = Controller(cairn, tmp_path).start(env={"CAIRN_TEST_RECORD_DELAY_MS": "800"})
    got = {}
    try:
        t = threading.Thread(target=lambda: got.update(r=ctl.request(
            "POST", "/v1/apps/demo/deploys", {"release": rel},
            {"Content-Type": "application/json", "Idempotency-Key": "k"}, timeout=DEADLINE_S)))
        t.start()
        wait_for(lambda: "cairn_idempotency_inflight 1" in ctl.get("/metrics", raw=True)[1],
                 what="the request to be in flight")
        ctl.proc.send_signal(signal.SIGTERM)
        assert ctl.proc.wait(timeout=DEADLINE_S) == 0, ctl.log_text()
        t.join(timeout=DEADLINE_S)
        assert got["r"][0] == 202, got
    finally:
        ctl.stop()


def test_deploy_wait_reconnects_across_a_sigterm(cairn, tmp_path):
    """`cairn deploy --wait` sees its stream end, reconnects, and once a controller serves the
    state directory again shows the job to its end, each step once; the job itself was left
    as it was (running), for recovery."""
    cairn.state.mkdir(parents=True, exist_ok=True)
    rel = make_app(cairn)
    ctl = Controller(cairn, tmp_path).start(env={"CAIRN_TEST_STEP_DELAY_MS": "200"})
    env = dict(os.environ, CAIRN_STATE=str(cairn.state))
    w = subprocess.Popen([BIN, "deploy", rel, "--wait", "--app", "demo"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any(k[2] == "activate" for k in ctl.steps_run()),
                 what="the deploy to be under way")
        ctl.proc.send_signal(signal.SIGTERM)
        assert ctl.proc.wait(timeout=DEADLINE_S) == 0, ctl.log_text()
        assert not (cairn.state / "cairn.sock").exists()
        ctl.start(env={"CAIRN_TEST_STEP_DELAY_MS": "200"})
        out, err = w.communicate(timeout=120)
        assert w.returncode == 0, out + err
        assert "reconnecting" in err
        done = [l.split("local: ")[1] for l in out.splitlines()
                if "local:" in l and l.endswith(" done")]
        assert done == [f"{s} done" for s in ["ensure_objects", "activate", "start", "health",
                                              "accept", "switch", "bake", "cleanup"]]
    finally:
        if w.poll() is None:
            w.kill()
            w.communicate()
        ctl.stop()
