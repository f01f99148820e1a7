"""Test hosts reached over SSH: each is a network namespace of its own (cairn-<pid>-<n>) with a
veth pair to the root namespace on a private /30 (10.213.<k>.0/30: .1 here, .2 inside), and an
sshd inside it that only the key generated here may use. The namespaces share the file system,
so each host gets a remote state directory of its own. Needs root and iproute2; skips if not.

    def test_x(ssh_hosts):
        web1, web2 = ssh_hosts(2)
        web1.yaml(BIN)            # the hosts: entry for cairn.yml
        ssh_hosts.env             # {"CAIRN_SSH_CONFIG": ...} for the controller
"""
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"


def _run(*argv, check=True, **kw):
    return subprocess.run(list(map(str, argv)), check=check, capture_output=True, text=True, **kw)


def _wait(cond, timeout=20, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _used_prefixes():
    out = _run("ip", "-o", "-4", "addr", "show", check=False).stdout
    return {w.split("/")[0].rsplit(".", 1)[0] for w in out.split() if w.startswith("10.213.")}


def _port_open(ns, addr, port):
    code = (f"import socket,sys\ns=socket.socket();s.settimeout(0.5)\n"
            f"sys.exit(s.connect_ex(('{addr}',{port})))")
    return _run("ip", "netns", "exec", ns, "/usr/bin/python3", "-c", code, check=False).returncode == 0


class SSHHost:
    """One namespace with sshd; `state` is its agent's state directory."""

    def __init__(self, pool, n, octet):
        self.pool = pool
        self.name = f"web{n}"
        self.ns = f"cairn-{os.getpid()}-{n}"
        self.veth = f"cr{os.getpid() % 100000}h{n}"
        self.outer = f"10.213.{octet}.1"
        self.addr = f"10.213.{octet}.2"
        self.dir = pool.dir / self.name
        self.dir.mkdir()
        self.state = Path(tempfile.mkdtemp(prefix=f"cairn-{self.name}-", dir="/tmp"))
        self.sshd = None

    def setup(self):
        ns, v = self.ns, self.veth
        _run("ip", "netns", "add", ns)
        _run("ip", "link", "add", v + "a", "type", "veth", "peer", "name", v + "b")
        _run("ip", "link", "set", v + "b", "netns", ns)
        _run("ip", "addr", "add", self.outer + "/30", "dev", v + "a")
        _run("ip", "link", "set", v + "a", "up")
        _run("ip", "netns", "exec", ns, "ip", "addr", "add", self.addr + "/30", "dev", v + "b")
        _run("ip", "netns", "exec", ns, "ip", "link", "set", v + "b", "up")
        _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        key = self.dir / "host_key"
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)
        (self.dir / "sshd_config").write_text(
            f"ListenAddress {self.addr}\nPort 22\nHostKey {key}\n"
            f"PidFile {self.dir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.pool.dir / 'authorized_keys'}\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPrintMotd no\n"
            "MaxStartups 100\nMaxSessions 100\nLogLevel VERBOSE\n")
        self.start_sshd()

    def start_sshd(self):
        log = open(self.dir / "sshd.log", "a")
        self.sshd = subprocess.Popen(["ip", "netns", "exec", self.ns, SSHD, "-D", "-e", "-f",
                                      str(self.dir / "sshd_config")], stdout=log, stderr=log)
        log.close()
        _wait(lambda: self.sshd.poll() is not None or _port_open(self.ns, self.addr, 22),
              what=f"sshd in {self.ns}")
        if self.sshd.poll() is not None:
            raise AssertionError("sshd did not start: " + (self.dir / "sshd.log").read_text())

    def stop_sshd(self):
        """Stops the listening sshd (sessions it already forked go on, as with a real host)."""
        if self.sshd and self.sshd.poll() is None:
            self.sshd.terminate()
            self.sshd.wait(timeout=10)
        self.sshd = None

    def yaml(self, cairn_bin):
        return (f"{{name: {self.name}, ssh: root@{self.addr}, state: {self.state}, "
                f"cairn: {cairn_bin}}}")

    def exec(self, *argv, **kw):
        """Runs argv inside the host's namespace."""
        return _run("ip", "netns", "exec", self.ns, *argv, check=False, **kw)

    def http(self, port, path="/healthz"):
        """GET 127.0.0.1:PORT/PATH inside the namespace → (status, body) or (0, error)."""
        code = ("import sys,urllib.request\n"
                "try:\n"
                f" r=urllib.request.urlopen('http://127.0.0.1:{port}{path}',timeout=3)\n"
                " print(r.status);print(r.read().decode())\n"
                "except Exception as e:\n print(0);print(e)\n")
        out = self.exec("/usr/bin/python3", "-c", code).stdout.split("\n", 1)
        return int(out[0] or 0), (out[1] if len(out) > 1 else "")

    def pids(self):
        out = _run("ip", "netns", "pids", self.ns, check=False).stdout
        return [int(p) for p in out.split()]

    def teardown(self):
        self.stop_sshd()
        # everything still running in the namespace: the agent, its instances and log writers
        for _ in range(50):
            pids = self.pids()
            if not pids:
                break
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)
        _run("ip", "netns", "del", self.ns, check=False)
        _run("ip", "link", "del", self.veth + "a", check=False)
        shutil.rmtree(self.state, ignore_errors=True)


class SSHHosts:
    def __init__(self, tmp):
        self.dir = tmp / "ssh-hosts"
        self.dir.mkdir()
        self.hosts = []
        self.key = self.dir / "id_ed25519"
        self.config = self.dir / "ssh_config"
        self.env = {"CAIRN_SSH_CONFIG": str(self.config)}

    def __call__(self, n):
        if not self.key.exists():
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.key)
            (self.dir / "authorized_keys").write_text((self.dir / "id_ed25519.pub").read_text())
            self.config.write_text(
                f"Host *\n  User root\n  IdentityFile {self.key}\n  IdentitiesOnly yes\n"
                f"  UserKnownHostsFile {self.dir / 'known_hosts'}\n"
                "  StrictHostKeyChecking accept-new\n  LogLevel ERROR\n")
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        used = _used_prefixes()
        octet = (os.getpid() % 60) * 4
        made = []
        for i in range(n):
            while f"10.213.{octet % 250}" in used:
                octet += 1
            used.add(f"10.213.{octet % 250}")
            h = SSHHost(self, len(self.hosts) + 1, octet % 250)
            self.hosts.append(h)
            h.setup()
            made.append(h)
        return made

    def teardown(self):
        for h in self.hosts:
            h.teardown()


def can_make_hosts():
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if not shutil.which("ip"):
        return "needs iproute2 (ip)"
    if not os.path.exists(SSHD) or not shutil.which("ssh"):
        return "needs openssh-server and openssh-client (scripts/install-deps)"
    return None


@pytest.fixture
def ssh_hosts(tmp_path):
    why = can_make_hosts()
    if why:
        pytest.skip(why)
    pool = SSHHosts(tmp_path)
    try:
        yield pool
    finally:
        pool.teardown()
