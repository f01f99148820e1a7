"""The sample app examples/urlshort: v1 works (shorten, redirect, persistence, validation,
graceful SIGTERM, instances sharing one data directory); v2 carries story 003's bug (health 200,
every real request 500). Runs the app with /usr/bin/python3 on free ports; no cairn binary needed."""
import difflib
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "urlshort"
PY = "/usr/bin/python3"
DEADLINE = 15.0  # seconds any single wait may take


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, what, deadline=DEADLINE):
    """Polls cond() until it returns a true value; fails with `what` after `deadline` seconds."""
    end = time.monotonic() + deadline
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline}s waiting for {what}")
        time.sleep(0.02)


class App:
    """One running instance of examples/urlshort/<version>."""

    def __init__(self, version, data, logdir, name="app", env=None):
        self.version = version
        self.port = free_port()
        self.out = logdir / f"{name}.out"
        self.err = logdir / f"{name}.err"
        e = {k: v for k, v in os.environ.items() if k != "PORT"}
        e.update(PORT=str(self.port), CAIRN_DATA=str(data), CAIRN_RELEASE=f"test-{version}",
                 CAIRN_INSTANCE=name, PYTHONDONTWRITEBYTECODE="1")
        e.update(env or {})
        with open(self.out, "wb") as o, open(self.err, "wb") as er:
            self.proc = subprocess.Popen([PY, "app.py"], cwd=APP / version, env=e, stdout=o,
                                         stderr=er, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    def logs(self):
        return self.out.read_text() + self.err.read_text()

    def request(self, method, path, body=None, headers=None, timeout=5):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            c.close()

    def shorten(self, url):
        return self.request("POST", "/shorten", json.dumps({"url": url}),
                            {"Content-Type": "application/json"})

    def healthy(self):
        def probe():
            if self.proc.poll() is not None:
                raise AssertionError(f"urlshort {self.version} exited with {self.proc.returncode}"
                                     f" before it was healthy:\n{self.logs()}")
            try:
                return self.request("GET", "/healthz", timeout=1)[0] == 200
            except OSError:
                return False
        wait_for(probe, f"urlshort {self.version} /healthz on port {self.port}")
        return self

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=DEADLINE)

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=DEADLINE)


@pytest.fixture
def apps(tmp_path):
    """apps(version, data=None, name=...) starts an instance and waits until it is healthy;
    every instance still running at the end of the test is killed."""
    started = []

    def start(version, data=None, name=None, wait=True):
        a = App(version, data or tmp_path / "data", tmp_path, name or f"app{len(started)}")
        started.append(a)
        return a.healthy() if wait else a

    try:
        yield start
    finally:
        for a in started:
            a.kill()


def code_of(body):
    short = json.loads(body)["short"]
    assert short.startswith("/s/")
    return short


def test_v1_shortens_redirects_and_persists_across_restart(apps, tmp_path):
    a = apps("v1")
    assert "urlshort 1.0.0 listening on 127.0.0.1:%d release=test-v1 instance=app0" % a.port \
        in a.out.read_text()
    status, _, body = a.request("GET", "/healthz")
    assert (status, body) == (200, b"ok\n")

    target = "https://example.com/some/page?q=1&r=two#frag"
    status, _, body = a.shorten(target)
    assert status == 200, body
    assert json.loads(body)["url"] == target
    short = code_of(body)
    # the same URL gets the same short code
    assert code_of(a.shorten(target)[2]) == short

    status, headers, _ = a.request("GET", short)
    assert status == 302
    assert headers["Location"] == target
    assert a.request("GET", "/s/doesnotexist")[0] == 404

    stats = json.loads(a.request("GET", "/stats")[2])
    assert (stats["urls"], stats["redirects"], stats["version"]) == (1, 1, "1.0.0")

    assert a.stop() == 0
    assert (tmp_path / "data" / "urls.json").is_file()
    # one log line per request, each with a timestamp
    req_lines = [ln for ln in a.out.read_text().splitlines() if '"' in ln]
    assert len([ln for ln in req_lines if "/healthz" not in ln]) == 5
    assert all(ln[:4].isdigit() and ln[10] == "T" for ln in req_lines)
    assert any('"GET ' + short + '" 302' in ln for ln in req_lines)

    b = apps("v1", name="again")
    status, headers, _ = b.request("GET", short)
    assert status == 302 and headers["Location"] == target
    assert json.loads(b.request("GET", "/stats")[2])["redirects"] == 2


@pytest.mark.parametrize("body", [
    '{"url": "ftp://example.com/file"}',
    '{"url": "javascript:alert(1)"}',
    '{"url": "http://"}',
    '{"url": "https://exa mple.com/"}',
    '{"url": "https://example.com/\\r\\nSet-Cookie: x=1"}',
    '{"url": ""}',
    '{"url": 42}',
    '{"link": "https://example.com"}',
    '["https://example.com"]',
    'not json',
])
def test_v1_rejects_bad_input_with_400(apps, body):
    a = apps("v1")
    status, headers, raw = a.request("POST", "/shorten", body)
    assert status == 400, raw
    assert headers["Content-Type"] == "application/json"
    assert json.loads(raw)["error"]
    assert json.loads(a.request("GET", "/stats")[2])["urls"] == 0


def test_v1_requires_port(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PORT"}
    env["CAIRN_DATA"] = str(tmp_path / "data")
    p = subprocess.run([PY, "app.py"], cwd=APP / "v1", env=env, capture_output=True, text=True,
                       timeout=DEADLINE)
    assert p.returncode != 0
    assert "PORT is not set" in p.stderr
    env["PORT"] = "http"
    p = subprocess.run([PY, "app.py"], cwd=APP / "v1", env=env, capture_output=True, text=True,
                       timeout=DEADLINE)
    assert p.returncode != 0 and "PORT must be a number" in p.stderr


def threads_of(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def test_v1_sigterm_finishes_requests_in_flight(apps):
    a = apps("v1")
    pid = a.proc.pid
    # the health probes' handler threads are gone: only the main thread is left
    wait_for(lambda: threads_of(pid) == 1, "an idle server")
    body = b'{"url": "https://example.com/in-flight"}'
    with socket.create_connection(("127.0.0.1", a.port), timeout=DEADLINE) as s:
        # the headers, not yet the body: the request is in flight on a thread of its own
        s.sendall(b"POST /shorten HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body))
        wait_for(lambda: threads_of(pid) > 1, "the request's handler thread")
        a.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "SIGTERM" in a.out.read_text(), "the SIGTERM log line")

        def refused():
            try:
                socket.create_connection(("127.0.0.1", a.port), timeout=1).close()
                return False
            except (ConnectionRefusedError, ConnectionResetError):  # closed, or closing
                return True
        wait_for(refused, "the listener to close")
        assert a.proc.poll() is None, "exited with a request in flight"

        s.sendall(body)
        reply = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.0 200 "), reply
    assert b'"/s/' in reply
    assert a.proc.wait(timeout=DEADLINE) == 0
    assert "stopped" in a.out.read_text()


def test_v1_instances_share_one_data_dir(apps, tmp_path):
    insts = [apps("v1", name=f"i{i}") for i in range(3)]
    results, errors = {}, []

    def worker(n):
        try:
            for k in range(10):
                url = f"https://example.com/{n}/{k}"
                status, _, body = insts[(n + k) % 3].shorten(url)
                assert status == 200, body
                results[url] = code_of(body)
        except Exception as e:  # reported below, on the test's thread
            errors.append(e)

    ts = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=DEADLINE * 4)
    assert not errors, errors
    assert len(results) == 60 and len(set(results.values())) == 60
    for i, (url, short) in enumerate(sorted(results.items())):
        status, headers, _ = insts[i % 3].request("GET", short)
        assert status == 302 and headers["Location"] == url
    for a in insts:
        assert json.loads(a.request("GET", "/stats")[2])["urls"] == 60
    for a in insts:
        assert a.stop() == 0


def test_v2_is_healthy_but_every_real_request_is_500(apps, tmp_path):
    # v1 stored a URL; v2 takes over the same data, as a deploy would
    a = apps("v1")
    short = code_of(a.shorten("https://example.com/before")[2])
    assert a.stop() == 0

    b = apps("v2", name="v2")
    assert "urlshort 1.1.0 listening" in b.out.read_text()
    status, _, body = b.request("GET", "/healthz")
    assert (status, body) == (200, b"ok\n")
    for _ in range(3):
        status, _, body = b.shorten("https://example.com")
        assert status == 500
        assert json.loads(body)["error"] == "internal server error"
    assert b.request("GET", short)[0] == 500
    assert b.request("GET", "/stats")[0] == 500
    assert b.request("GET", "/healthz")[0] == 200
    assert b.stop() == 0
    err = b.err.read_text()
    assert "TypeError: the JSON object must be str, bytes or bytearray" in err
    assert "json.loads(f)" in err
    assert '"POST /shorten" 500' in b.out.read_text()


def test_v2_differs_from_v1_by_the_bug_and_the_version_only():
    v1 = (APP / "v1" / "app.py").read_text().splitlines()
    v2 = (APP / "v2" / "app.py").read_text().splitlines()
    changed = [ln for ln in difflib.unified_diff(v1, v2, lineterm="", n=0)
               if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    assert sorted(changed) == sorted([
        '-VERSION = "1.0.0"', '+VERSION = "1.1.0"',
        "-            return json.load(f)", "+            return json.loads(f)"])
    for v, ver in (("v1", "0.20.0"), ("v2", "0.20.1")):
        meta = (APP / v / "vendor" / f"eventlet-{ver}.dist-info" / "METADATA").read_text()
        assert f"Name: eventlet\nVersion: {ver}\n" in meta
        assert (APP / v / "requirements.txt").read_text() == f"eventlet=={ver}\n"
        assert "app: urlshort" in (APP / v / "cairn.yml").read_text()
