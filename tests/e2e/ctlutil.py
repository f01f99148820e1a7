"""Helpers for controller tests: a controller process per test, HTTP over its unix socket,
and small apps to deploy. Everything waits on conditions with deadlines, never bare sleeps."""
import http.client
import json
import os
import socket
import subprocess
import time
from pathlib import Path

from conftest import BIN


def has_test_hooks():
    out = subprocess.run([BIN, "--version"], capture_output=True, text=True).stdout
    return "test hooks" in out


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over a unix socket."""

    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        # a full listen backlog answers EAGAIN on unix sockets: retry within the timeout
        end = time.monotonic() + (self.timeout or 10)
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(self.timeout)
            try:
                s.connect(self.path)
                self.sock = s
                return
            except BlockingIOError:
                s.close()
                if time.monotonic() > end:
                    raise
                time.sleep(0.01)


def wait_for(cond, timeout=30, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


APP_YML = """app: {app}
run:
  command: ["python3", "app.py"]
listen: 8080
hosts: {hosts}
instances: 1
"""


def make_app(cairn, name="demo", hosts="[local]", version="1"):
    """Builds a release of a tiny app; returns its id."""
    d = cairn.cwd / f"{name}-{version}"
    d.mkdir(exist_ok=True)
    (d / "cairn.yml").write_text(APP_YML.format(app=name, hosts=hosts))
    (d / "app.py").write_text(f"print('v{version}')\n")
    p = cairn.run("build", cwd=d, check=0)
    return p.stdout.strip().splitlines()[-1]


class Controller:
    """A `cairn serve` process with the test executor (needs a test_hooks build)."""

    def __init__(self, cairn, tmp, env=None, args=(), preexec=None):
        self.cairn = cairn
        self.preexec = preexec  # run in the child before exec (e.g. a lower RLIMIT_NOFILE)
        self.sock = str(cairn.state / "cairn.sock")
        self.exec_log = tmp / "exec.log"
        self.env = dict(os.environ, CAIRN_STATE=str(cairn.state), CAIRN_TEST_EXECUTOR="log",
                        CAIRN_TEST_EXEC_LOG=str(self.exec_log), CAIRN_LOG="info")
        self.base_env = dict(self.env)
        if env:
            self.env.update(env)
        self.args = list(args)
        self.proc = None
        self.logs = []

    def start(self, env=None):
        e = dict(self.base_env)
        if env:
            e.update(env)
        log = open(self.cairn.state.parent / f"serve-{len(self.logs)}.log", "w")
        self.logs.append(log.name)
        self.proc = subprocess.Popen([BIN, "serve", "--no-agent", *self.args], env=e,
                                     stdout=log, stderr=subprocess.STDOUT,
                                     preexec_fn=self.preexec)
        log.close()
        wait_for(self._up, what="controller socket")
        return self

    def _up(self):
        if self.proc.poll() is not None:
            raise AssertionError("controller exited: " + self.log_text())
        try:
            st, _ = self.get("/metrics", raw=True)
            return st == 200
        except OSError:
            return False

    def log_text(self):
        return "\n".join(Path(p).read_text() for p in self.logs)

    def request(self, method, path, body=None, headers=None, timeout=10, raw=False):
        c = UnixHTTPConnection(self.sock, timeout=timeout)
        try:
            data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
            c.request(method, path, body=data, headers=headers or {})
            r = c.getresponse()
            b = r.read()
            if raw:
                return r.status, b.decode(errors="replace")
            return r.status, (json.loads(b) if b.strip() else None), dict(r.getheaders())
        finally:
            c.close()

    def get(self, path, raw=False):
        if raw:
            return self.request("GET", path, raw=True)
        st, b, _ = self.request("GET", path)
        return st, b

    def job(self, jid):
        st, b = self.get(f"/v1/jobs/{jid}")
        assert st == 200, b
        return b

    def wait_terminal(self, jid, timeout=60):
        return wait_for(lambda: (lambda j: j if j["terminal"] else None)(self.job(jid)),
                        timeout=timeout, what=f"job {jid} to end")

    def stop(self, check=True):
        """SIGTERM and wait. A controller that was running must end with 0: a clean shutdown,
        and under ASan no leak or error report (abort_on_error makes those non-zero)."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("controller did not end within 20 s of SIGTERM: " +
                                     self.log_text()[-4000:])
            if check and self.proc.returncode != 0:
                raise AssertionError(f"controller ended with {self.proc.returncode} after "
                                     f"SIGTERM: " + self.log_text()[-4000:])
        return self.proc.returncode if self.proc else None

    def steps_run(self):
        """(job, host, step) → how often the executor ran it."""
        counts = {}
        if not self.exec_log.exists():
            return counts
        for line in self.exec_log.read_text().splitlines():
            if not line.startswith("job="):
                continue
            kv = dict(p.split("=", 1) for p in line.split())
            k = (int(kv["job"]), kv["host"], kv["step"])
            counts[k] = counts.get(k, 0) + 1
        return counts
