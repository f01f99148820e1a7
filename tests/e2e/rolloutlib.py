"""Rollout test kit: the real controller with the real local agent, app variants built from
tests/fixtures/apps/knobs, a bounded load client through the app's proxy, and the /proc scan
that proves no process of a test's state directory outlives it."""
import http.client
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import BIN, ROOT
from ctlutil import Controller, wait_for

KNOBS = ROOT / "tests" / "fixtures" / "apps" / "knobs"

YML = """app: knobs
run:
  command: ["python3", "app.py"]
  stop_timeout: 3s
listen: {port}
hosts: [local]
instances: {instances}
health: {{ {probe}interval: 200ms, timeout: 1s, healthy_after: 2, start_deadline: {deadline} }}
{acceptance}
rollout:
  bake: {bake}
  gates: {{ max_error_rate: 1%, max_p99: {p99}, max_p99_ratio: {ratio}, min_requests: {min_requests} }}
"""

ACCEPT = """acceptance:
  - name: api
    request: { method: GET, path: /api/items }
    expect: { status: 200, body_contains: "hello" }
"""


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class AgentController(Controller):
    """A controller that uses (and starts) the real local agent."""

    def __init__(self, cairn, tmp):
        super().__init__(cairn, tmp)
        for k in ("CAIRN_TEST_EXECUTOR", "CAIRN_TEST_EXEC_LOG"):
            self.base_env.pop(k, None)

    def start(self, env=None):
        e = dict(self.base_env)
        if env:
            e.update(env)
        log = open(self.cairn.state.parent / f"serve-{len(self.logs)}.log", "w")
        self.logs.append(log.name)
        self.proc = subprocess.Popen([BIN, "serve"], env=e, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for(self._up, what="controller socket")
        return self


def stop_local_agent(cairn):
    """The local agent `cairn serve` started outlives the controller by design: stop its
    instances, then the agent, and wait until no process of the test's state is left."""
    st = cairn.run("agent", "status", "--json")
    cairn.run("agent", "--stop-all")
    if st.returncode == 0:
        try:
            os.kill(json.loads(st.stdout)["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
    wait_for(lambda: state_pids(cairn.state) == [], timeout=30,
             what="every process of the test to end")


def state_pids(state):
    """Pids of live processes started for this state directory (their environment names it)."""
    want = str(state).encode()
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            env = open(f"/proc/{d}/environ", "rb").read()
            stat = open(f"/proc/{d}/stat").read()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            continue
        if want in env:
            pids.append(int(d))
    return pids


class Fleet:
    """One test's world: state dir, controller, agent, app variants, the proxy port."""

    def __init__(self, cairn, tmp):
        self.cairn = cairn
        self.tmp = tmp
        self.port = free_port()
        self.ids = {}
        self.ctl = AgentController(cairn, tmp)
        cairn.state.mkdir(parents=True, exist_ok=True)

    def variant(self, name, mode="good", bake="2s", deadline="20s", acceptance=True, ratio=0,
                p99="0", min_requests=20, instances=2, tcp=False, **knobs):
        d = self.tmp / "src" / name
        shutil.copytree(KNOBS, d)
        (d / "knobs.json").write_text(json.dumps(dict(mode=mode, variant=name, **knobs)))
        (d / "cairn.yml").write_text(YML.format(
            port=self.port, instances=instances, deadline=deadline, bake=bake, ratio=ratio, p99=p99,
            probe="" if tcp else "http: /healthz, ",
            min_requests=min_requests, acceptance=ACCEPT if acceptance else ""))
        p = self.cairn.run("build", "--tag", name, cwd=d, check=0)
        self.ids[name] = p.stdout.strip().splitlines()[-1]
        self.dir = d
        return self.ids[name]

    def deploy(self, name, check=0, timeout=180):
        return self.cairn.run("deploy", name, "--wait", "--json", cwd=self.dir, check=check,
                              timeout=timeout)

    def job(self, p):
        """The last JSON object cairn deploy --wait --json printed."""
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
        return json.loads(lines[-1])

    def instances(self, release=None):
        p = self.cairn.run("agent", "status", "--json", check=0)
        insts = json.loads(p.stdout)["instances"]
        return [i for i in insts if release is None or i["release"] == self.ids.get(release, release)]

    def live(self, name):
        return [i for i in self.instances(name) if i["state"] in ("running", "starting")]

    def proxy(self):
        with_sock = self.cairn.state / "agent.sock"
        from ctlutil import UnixHTTPConnection
        c = UnixHTTPConnection(str(with_sock), timeout=10)
        c.request("GET", "/v1/apps/knobs/proxy")
        r = c.getresponse()
        b = json.loads(r.read())
        c.close()
        return b

    def teardown(self):
        self.ctl.stop()
        stop_local_agent(self.cairn)


class Load:
    """A bounded load client: one request per connection (or keep-alive) through the proxy,
    `interval` apart, from `threads` threads, until stopped or `max_s`/`max_n` reached."""

    def __init__(self, port, path="/api/items", threads=2, interval=0.005, max_s=120,
                 max_n=200000, keepalive=False):
        self.port, self.path, self.interval = port, path, interval
        self.max_s, self.max_n, self.keepalive = max_s, max_n, keepalive
        self.results = []  # (t, status or error text, release)
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self):
        self.t0 = time.monotonic()
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *a):
        self.stop()

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(timeout=30)

    def _run(self):
        conn = None
        while not self.stop_ev.is_set():
            if time.monotonic() - self.t0 > self.max_s or len(self.results) >= self.max_n:
                return
            t = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                hdrs = {"User-Agent": "load"}
                if not self.keepalive:
                    hdrs["Connection"] = "close"
                conn.request("GET", self.path, headers=hdrs)
                r = conn.getresponse()
                r.read()
                res = (t, r.status, r.getheader("X-Release") or "")
                if not self.keepalive or r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as ex:
                res = (t, f"{type(ex).__name__}: {ex}", "")
                if conn:
                    conn.close()
                conn = None
            with self.lock:
                self.results.append(res)
            self.stop_ev.wait(self.interval)
        if conn:
            conn.close()

    def wait_count(self, n, timeout=30):
        wait_for(lambda: len(self.results) >= n, timeout=timeout, what=f"{n} load requests")

    def failures(self):
        return [r for r in self.results if r[1] != 200]

    def by_release(self):
        out = {}
        for r in self.results:
            out[r[2]] = out.get(r[2], 0) + 1
        return out


@pytest.fixture
def fleet(cairn, tmp_path):
    """A Fleet torn down after the test, with no process of its state left."""
    f = Fleet(cairn, tmp_path)
    yield f
    f.teardown()
    assert state_pids(cairn.state) == []
