"""Helpers for the agent's end-to-end tests: an HTTP client on the agent's unix socket, an
Agent process handle, waits with deadlines, and the orphan scan over /proc."""
import http.client
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

DEADLINE = 20.0


def wait_for(cond, what, deadline=DEADLINE):
    """Polls cond() until it returns a true value; fails with `what` after `deadline` s."""
    end = time.monotonic() + deadline
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline}s waiting for {what}")
        time.sleep(0.02)


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path, timeout=30):
        super().__init__("agent", timeout=timeout)
        self.sock_path = str(path)

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        if len(self.sock_path) < 100:
            s.connect(self.sock_path)
        else:  # sun_path is short: go through the directory's fd
            d = os.open(os.path.dirname(self.sock_path), os.O_PATH | os.O_DIRECTORY)
            try:
                s.connect(f"/proc/self/fd/{d}/{os.path.basename(self.sock_path)}")
            finally:
                os.close(d)
        self.sock = s


def api(sock, method, path, body=None, raw=None, timeout=30):
    """One request to the agent → (status, parsed JSON or None)."""
    c = UnixHTTP(sock, timeout=timeout)
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    c.request(method, path, body=data, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    text = r.read()
    c.close()
    try:
        return r.status, json.loads(text)
    except ValueError:
        return r.status, None


def http_get(port, path, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def answers(port, path="/healthz"):
    try:
        return http_get(port, path, timeout=1)[0] == 200
    except OSError:
        return False


def processes_of(state):
    """Pids of live processes tied to a state dir: in their cmdline, cwd or environment."""
    state = str(state)
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            st = (d / "stat").read_text()
            if st[st.rindex(")") + 2] in "ZX":
                continue
            hit = state.encode() in (d / "cmdline").read_bytes()
            if not hit:
                try:
                    hit = os.readlink(d / "cwd").startswith(state)
                except OSError:
                    pass
            if not hit:
                try:
                    hit = state.encode() in (d / "environ").read_bytes()
                except OSError:
                    pass
            if hit:
                found.append(int(d.name))
        except (OSError, ValueError):
            continue
    return found


def pid_alive(pid):
    try:
        st = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return st[st.rindex(")") + 2] not in "ZX"


class Agent:
    """A `cairn agent` process on a private state directory."""

    def __init__(self, binary, state, env=None, preexec=None):
        self.binary = binary
        self.preexec = preexec  # run in the child before exec (e.g. a lower RLIMIT_NOFILE)
        self.state = Path(state)
        self.sock = self.state / "agent.sock"
        self.env = dict(os.environ, CAIRN_STATE=str(state), CAIRN_LOG="info", **(env or {}))
        self.proc = None
        self.log = self.state.parent / "agent.log"

    def start(self):
        self.state.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")
        self.proc = subprocess.Popen([self.binary, "agent", "--state", str(self.state)],
                                     stdout=out, stderr=out, env=self.env,
                                     start_new_session=True, preexec_fn=self.preexec)
        out.close()
        wait_for(self.up, "the agent to answer on its socket")
        return self

    def up(self):
        try:
            return api(self.sock, "GET", "/v1/agent", timeout=2)[0] == 200
        except OSError:
            return False

    def call(self, method, path, body=None, **kw):
        return api(self.sock, method, path, body, **kw)

    def kill9(self):
        self.proc.kill()
        self.proc.wait(timeout=10)

    def terminate(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=10)

    def cli(self, *args, timeout=60):
        return subprocess.run([self.binary, *args, "--state", str(self.state)], env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def cleanup(self):
        """Finalizer: no agent, no instance, no log writer is left behind."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.state.exists():
            self.cli("agent", "--stop-all")
        for pid in processes_of(self.state):  # last resort: never leak a process
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
