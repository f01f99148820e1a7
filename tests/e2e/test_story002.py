"""Story 002 replayed: an orchestrator with a short timeout and retries, behind a reverse proxy
whose timeout is shorter than the deploy (and even than recording it), asks for one deploy
again and again with the same Idempotency-Key. Exactly one deploy happens. Also: TCP with a
bearer token."""
import http.client
import http.server
import json
import os
import socket
import stat
import threading
import time
import urllib.error
import urllib.request

import pytest

from ctlutil import Controller, has_test_hooks, make_app, wait_for

pytestmark = pytest.mark.skipif(not has_test_hooks(), reason="needs a -Dtest_hooks=true build")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Proxy(http.server.ThreadingHTTPServer):
    """A reverse proxy with a short upstream timeout: 504 when the upstream is slower."""
    daemon_threads = True

    def __init__(self, upstream_port, timeout):
        self.upstream_port, self.upstream_timeout = upstream_port, timeout
        self.timeouts = 0
        super().__init__(("127.0.0.1", 0), ProxyHandler)


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        c = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port,
                                       timeout=self.server.upstream_timeout)
        try:
            c.request("POST", self.path, body, {k: v for k, v in self.headers.items()})
            r = c.getresponse()
            status, data = r.status, r.read()
        except (socket.timeout, TimeoutError):
            self.server.timeouts += 1
            status, data = 504, b'{"error":{"code":"gateway_timeout","message":"upstream timed out"}}'
        finally:
            c.close()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_retrying_client_behind_short_proxy_timeout_deploys_once(cairn, tmp_path):
    cairn.state.mkdir(parents=True, exist_ok=True)
    rel = make_app(cairn)
    port = free_port()
    token_file = tmp_path / "token"
    ctl = Controller(cairn, tmp_path, args=["--listen", f"127.0.0.1:{port}", "--token-file",
                                            str(token_file)])
    # recording takes 0.6 s and the deploy ~2 s; the proxy gives up after 0.3 s
    ctl.start(env={"CAIRN_TEST_RECORD_DELAY_MS": "600", "CAIRN_TEST_STEP_DELAY_MS": "250"})
    proxy = Proxy(port, 0.3)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        token = token_file.read_text().strip()
        assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600 and len(token) >= 32
        url = f"http://127.0.0.1:{proxy.server_address[1]}/v1/apps/demo/deploys"
        body = json.dumps({"release": rel, "reason": "orchestrator"}).encode()
        answers = []
        # the orchestrator's job framework: short client timeout, retries with backoff,
        # the same key every time (it is one logical request)
        for attempt in range(40):
            rq = urllib.request.Request(url, data=body, method="POST", headers={
                "Authorization": f"Bearer {token}", "Idempotency-Key": "deploy-42",
                "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(rq, timeout=1.0) as r:
                    answers.append((r.status, json.loads(r.read())))
            except urllib.error.HTTPError as e:
                answers.append((e.code, None))
            except (socket.timeout, TimeoutError, urllib.error.URLError):
                answers.append(("timeout", None))
            # keep retrying past success, as a buggy job framework would
            if sum(1 for s, _ in answers if s in (200, 202)) >= 3:
                break
            time.sleep(0.05 * (attempt + 1))  # the orchestrator's own backoff
        assert proxy.timeouts >= 1, answers  # the story's failure did happen
        ok = [b for s, b in answers if s in (200, 202)]
        assert len(ok) >= 3 and len({b["id"] for b in ok}) == 1, answers
        jid = ok[0]["id"]
        assert ctl.wait_terminal(jid)["state"] == "succeeded"
        st, jobs = ctl.get("/v1/jobs")
        assert [j["id"] for j in jobs["jobs"]] == [jid]
        counts = ctl.steps_run()
        assert len(counts) == 8 and set(counts.values()) == {1}
    finally:
        proxy.shutdown()
        ctl.stop()


def test_tcp_needs_the_bearer_token(cairn, tmp_path):
    cairn.state.mkdir(parents=True, exist_ok=True)
    port = free_port()
    token_file = tmp_path / "token"
    ctl = Controller(cairn, tmp_path, args=["--listen", f"127.0.0.1:{port}", "--token-file",
                                            str(token_file)]).start()
    try:
        token = token_file.read_text().strip()

        def get(h):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("GET", "/v1/jobs", headers=h)
            r = c.getresponse()
            r.read()
            c.close()
            return r.status
        assert get({}) == 401
        assert get({"Authorization": "Bearer " + "0" * len(token)}) == 401
        assert get({"Authorization": "Bearer " + token[:-1]}) == 401
        assert get({"Authorization": "Bearer " + token}) == 200
        # the CLI over TCP
        p = cairn.run("history", "--app", "demo", "--addr", f"127.0.0.1:{port}", "--token-file",
                      token_file, "--json", check=0)
        assert json.loads(p.stdout) == {"jobs": []}
        p = cairn.run("history", "--app", "demo", "--addr", f"127.0.0.1:{port}", check=1)
        assert "401" in p.stderr
    finally:
        ctl.stop()
