"""What an app may touch (docs/security.md): a hostile release run by a root agent tries to
write and chmod its own files, to list and read the state directory, to call the agent's and
the controller's sockets and to read another app's data and release — all of it fails, only
CAIRN_DATA is writable, and verify and rollback stay intact. Also: a release dir changed
after activation is found by verify and made again on the next activation, the state
directory's modes are enforced, and a token file someone else owns is refused."""
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from agentlib import Agent, answers, http_get, processes_of, wait_for

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("CAIRN_BIN", str(ROOT / "build" / "cairn"))
ENVECHO = ROOT / "tests" / "fixtures" / "apps" / "envecho"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the agent switches users as root")

HOSTILE_YML = """app: evil
build:
  pins: warn
run:
  command: ["/usr/bin/python3", "app.py"]
listen: 18091
"""

# Every attack is tried; the result maps its name to "ok" or the error it met.
HOSTILE_APP = r'''
import json, os, socket, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

DATA = os.environ["CAIRN_DATA"]
STATE = os.path.dirname(os.path.dirname(DATA))


def attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return type(e).__name__


def append(path):
    with open(path, "ab") as f:
        f.write(b"# owned\n")


def read(path):
    with open(path, "rb") as f:
        f.read(1)


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    finally:
        s.close()


def attacks():
    r = {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
         "home": os.environ.get("HOME")}
    r["append_cairn_yml"] = attempt(lambda: append("cairn.yml"))
    r["append_app_py"] = attempt(lambda: append("app.py"))
    r["chmod_cairn_yml"] = attempt(lambda: os.chmod("cairn.yml", 0o644))
    r["new_file_in_release"] = attempt(lambda: append("new.py"))
    r["list_state"] = attempt(lambda: os.listdir(STATE))
    r["list_releases"] = attempt(lambda: os.listdir(os.path.join(STATE, "releases")))
    r["list_data"] = attempt(lambda: os.listdir(os.path.join(STATE, "data")))
    r["read_state_db"] = attempt(lambda: read(os.path.join(STATE, "state.db")))
    r["read_instances"] = attempt(lambda: read(os.path.join(STATE, "agent", "instances.json")))
    r["read_objects"] = attempt(lambda: os.listdir(os.path.join(STATE, "objects")))
    r["agent_sock"] = attempt(lambda: connect(os.path.join(STATE, "agent.sock")))
    r["cairn_sock"] = attempt(lambda: connect(os.path.join(STATE, "cairn.sock")))
    r["other_data"] = attempt(lambda: read(os.environ["OTHER_SECRET"]))
    r["other_release"] = attempt(lambda: read(os.environ["OTHER_RELEASE_FILE"]))
    r["write_data"] = attempt(lambda: append(os.path.join(DATA, "db.sqlite")))
    return r


class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(attacks()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
'''


def cli(state, *args, timeout=60):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, CAIRN_STATE=str(state)))


def build(state, src):
    p = cli(state, "build", "-c", str(src / "cairn.yml"))
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


@pytest.fixture
def agent(tmp_path):
    a = Agent(BIN, tmp_path / "state")
    a.state.mkdir()
    yield a
    a.cleanup()
    wait_for(lambda: not processes_of(a.state), "no process of the test's state dir")


def activate(agent, rid):
    st, body = agent.call("POST", f"/v1/releases/{rid}/activate", {})
    assert st == 200, body
    return Path(body["path"])


def start(agent, app, rid, env=None):
    st, body = agent.call("POST", f"/v1/apps/{app}/instances",
                          {"release": rid, "env": env or {}})
    assert st == 201, body
    inst = body["instances"][0]
    wait_for(lambda: answers(inst["port"]), f"{app} to answer")
    return inst


def get_json(port, path):
    def ok():
        try:
            return http_get(port, path)
        except OSError:
            return None
    st, body = wait_for(ok, f"127.0.0.1:{port} to answer")
    assert st == 200, body
    return json.loads(body)


def test_hostile_release_touches_nothing_but_its_data(agent, tmp_path):
    state = agent.state
    good = tmp_path / "envecho"
    shutil.copytree(ENVECHO, good)
    good_rid = build(state, good)
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "cairn.yml").write_text(HOSTILE_YML)
    (evil / "app.py").write_text(HOSTILE_APP)
    evil_rid = build(state, evil)
    agent.start()
    # a controller on the same state dir: its cairn.sock must be out of the app's reach too
    log = open(tmp_path / "serve.log", "ab")
    serve = subprocess.Popen([BIN, "serve", "--state", str(state)], stdout=log, stderr=log,
                             env=dict(os.environ, CAIRN_STATE=str(state)),
                             start_new_session=True)
    log.close()
    try:
        wait_for(lambda: (state / "cairn.sock").exists(), "cairn.sock")
        good_dir = activate(agent, good_rid)
        good_inst = start(agent, "envecho", good_rid)
        secret = state / "data" / "envecho" / "secret"
        secret.write_text("the other app's data\n")
        secret.chmod(0o644)  # even a careless mode does not open it: its dir is 0700
        evil_dir = activate(agent, evil_rid)
        evil_inst = start(agent, "evil", evil_rid, env={
            "OTHER_SECRET": str(secret), "OTHER_RELEASE_FILE": str(good_dir / "app.py")})
        r = get_json(evil_inst["port"], "/")
        good_env = get_json(good_inst["port"], "/env")
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=30)
    assert r["uid"] != 0 and r["gid"] != 0 and 0 not in r["groups"], r
    for attack in ("append_cairn_yml", "append_app_py", "chmod_cairn_yml",
                   "new_file_in_release", "list_state", "list_releases", "list_data",
                   "read_state_db", "read_instances", "read_objects", "agent_sock",
                   "cairn_sock", "other_data", "other_release"):
        assert r[attack] == "PermissionError", (attack, r)
    assert r["write_data"] == "ok", r
    assert r["home"] == str(state / "data" / "evil")
    assert (state / "data" / "evil" / "db.sqlite").stat().st_uid == r["uid"]
    # two apps, two users
    evil_pid = agent.call("GET", f"/v1/apps/evil/instances/{evil_inst['id']}")[1]["pid"]
    good_pid = agent.call("GET", f"/v1/apps/envecho/instances/{good_inst['id']}")[1]["pid"]
    uids = {int(Path(f"/proc/{p}/status").read_text().split("Uid:")[1].split()[0])
            for p in (evil_pid, good_pid)}
    assert len(uids) == 2 and 0 not in uids, uids
    assert good_env["HOME"] == str(state / "data" / "envecho")
    assert good_env["USER"] == "cairn-envecho"
    # the store, the releases and their activated copies are intact
    p = cli(state, "verify")
    assert p.returncode == 0, p.stdout + p.stderr
    assert activate(agent, evil_rid) == evil_dir
    assert (evil_dir / "cairn.yml").read_text() == HOSTILE_YML
    assert not (evil_dir / "new.py").exists()


def test_run_user_names_the_user_and_never_root(agent, tmp_path):
    src = tmp_path / "envecho"
    shutil.copytree(ENVECHO, src)
    yml = (src / "cairn.yml").read_text()
    (src / "cairn.yml").write_text(yml.replace("  stop_timeout: 5s\n",
                                               "  stop_timeout: 5s\n  user: root\n"))
    p = cli(agent.state, "build", "-c", str(src / "cairn.yml"))
    assert p.returncode == 2, p.stdout + p.stderr
    assert "run.user" in p.stderr and "root" in p.stderr
    (src / "cairn.yml").write_text(yml.replace("  stop_timeout: 5s\n",
                                               "  stop_timeout: 5s\n  user: nobody\n"))
    rid = build(agent.state, src)
    agent.start()
    activate(agent, rid)
    inst = start(agent, "envecho", rid)
    env = get_json(inst["port"], "/env")
    pid = agent.call("GET", f"/v1/apps/envecho/instances/{inst['id']}")[1]["pid"]
    status = Path(f"/proc/{pid}/status").read_text()
    assert status.split("Uid:")[1].split()[0] == "65534", status
    assert env["USER"] == "nobody"
    assert env["CAIRN_DATA"] == str(agent.state / "data" / "envecho")
    assert (agent.state / "data" / "envecho").stat().st_uid == 65534


def test_changed_release_dir_is_found_and_made_again(agent, tmp_path):
    src = tmp_path / "envecho"
    shutil.copytree(ENVECHO, src)
    rid = build(agent.state, src)
    agent.start()
    d = activate(agent, rid)
    original = (d / "app.py").read_bytes()
    # tampering as root, the way a process with the agent's rights could
    (d / "app.py").unlink()
    (d / "app.py").write_bytes(original.replace(b"envecho", b"backdoor"))
    (d / "app.py").chmod(0o444)
    (d / "sitecustomize.py").write_text("import os\n")
    p = cli(agent.state, "verify", "--json")
    assert p.returncode == 1, p.stdout + p.stderr
    probs = json.loads(p.stdout)["releases"][0]["problems"]
    paths = {x["path"] for x in probs}
    assert paths == {f"{d}/app.py", f"{d}/sitecustomize.py"}, probs
    # the next activation does not trust it: it is made again from the store
    assert activate(agent, rid) == d
    assert (d / "app.py").read_bytes() == original
    assert not (d / "sitecustomize.py").exists()
    assert cli(agent.state, "verify").returncode == 0
    # a change that keeps size and mtime (a same-size rewrite, times put back) is found too:
    # the inode changed
    st = (d / "cairn.yml").stat()
    data = (d / "cairn.yml").read_bytes()
    (d / "cairn.yml").unlink()
    (d / "cairn.yml").write_bytes(data.replace(b"envecho", b"envecxo"))
    (d / "cairn.yml").chmod(0o444)
    os.utime(d / "cairn.yml", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cli(agent.state, "verify").returncode == 1
    activate(agent, rid)
    assert (d / "cairn.yml").read_bytes() == data


def test_state_dir_modes_are_enforced(agent, tmp_path):
    state = agent.state
    state.chmod(0o755)
    src = tmp_path / "envecho"
    shutil.copytree(ENVECHO, src)
    (state / "releases").mkdir(mode=0o755)
    os.chmod(state / "releases", 0o755)
    old = os.umask(0o022)
    try:
        rid = build(state, src)
    finally:
        os.umask(old)
    assert stat.S_IMODE((state / "state.db").stat().st_mode) == 0o600
    agent.start()
    activate(agent, rid)
    start(agent, "envecho", rid)
    assert stat.S_IMODE(state.stat().st_mode) == 0o711
    for e in state.iterdir():
        m = stat.S_IMODE(e.lstat().st_mode)
        if e.name in ("releases", "data"):
            assert m == 0o711, (e, oct(m))
        elif not e.is_symlink():
            assert m & 0o077 == 0, (e, oct(m))
    rel = state / "releases" / rid[7:]
    assert stat.S_IMODE(rel.stat().st_mode) == 0o750 and rel.stat().st_gid != 0
    data = state / "data" / "envecho"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700 and data.stat().st_uid != 0


def test_token_file_of_another_user_is_refused(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    token = shared / "token"
    token.write_text("a" * 32 + "\n")
    token.chmod(0o600)
    os.chown(token, 65534, 65534)
    state = tmp_path / "state"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([BIN, "serve", "--state", str(state), "--no-agent", "--listen",
                             f"127.0.0.1:{port}", "--token-file", str(token)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, CAIRN_STATE=str(state)))
    lines = []

    def read():  # until it says it is ready, or ends
        for line in proc.stderr:
            lines.append(line)
            if "ready on" in line:
                return
    t = threading.Thread(target=read, daemon=True)
    try:
        t.start()
        t.join(30)
        assert not t.is_alive(), "cairn serve neither refused nor became ready in 30 s"
    finally:
        if proc.poll() is None:
            proc.terminate()
        rest, _ = proc.communicate(timeout=30)[::-1]
    err = "".join(lines) + (rest or "")
    assert "ready on" not in err, "cairn serve accepted a token file another user owns"
    assert proc.returncode != 0 and "belongs to uid 65534" in err, err


def test_non_root_agent_copies_and_keeps_the_state_private(tmp_path):
    """A non-root agent cannot switch users: its apps run as itself, so it copies every file
    instead of linking it — an app that writes its own files cannot change the store."""
    nobody = 65534
    wrap = ["setpriv", f"--reuid={nobody}", f"--regid={nobody}", "--clear-groups"]
    state, src = tmp_path / "state", tmp_path / "envecho"
    shutil.copytree(ENVECHO, src)
    state.mkdir()
    for p in [state, src, *src.rglob("*")]:
        os.chown(p, nobody, nobody)
    env = dict(os.environ, CAIRN_STATE=str(state))
    p = subprocess.run(wrap + [BIN, "build", "-c", str(src / "cairn.yml")], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    rid = p.stdout.strip()

    class NobodyAgent(Agent):
        def start(self):
            out = open(self.log, "ab")
            self.proc = subprocess.Popen(wrap + [BIN, "agent", "--state", str(self.state)],
                                         stdout=out, stderr=out, env=self.env,
                                         start_new_session=True)
            out.close()
            wait_for(self.up, "the agent to answer on its socket")
            return self

    a = NobodyAgent(BIN, state)
    try:
        a.start()
        d = activate(a, rid)
        assert (d / "app.py").stat().st_nlink == 1  # a copy, not the object's inode
        assert (d / "app.py").stat().st_uid == nobody
        inst = start(a, "envecho", rid)
        pid = a.call("GET", f"/v1/apps/envecho/instances/{inst['id']}")[1]["pid"]
        status = Path(f"/proc/{pid}/status").read_text()
        assert status.split("Uid:")[1].split()[0] == str(nobody)
        # what the app could do (it is the agent's user): change its own file
        subprocess.run(wrap + ["chmod", "u+w", str(d / "app.py")], check=True, timeout=30)
        subprocess.run(wrap + ["dd", "status=none", "oflag=append", "conv=notrunc",
                               f"of={d / 'app.py'}"], input=b"# x\n", check=True, timeout=30)
        v = subprocess.run(wrap + [BIN, "verify", "--json"], env=env, capture_output=True,
                           text=True, timeout=60)
        assert v.returncode == 1, v.stdout + v.stderr
        probs = json.loads(v.stdout)["releases"][0]["problems"]
        assert [x["path"] for x in probs] == [f"{d}/app.py"], probs  # the store is intact
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        assert stat.S_IMODE((state / "releases").stat().st_mode) == 0o700
        activate(a, rid)  # made again from the store
        assert b"# x" not in (d / "app.py").read_bytes()
    finally:
        a.cleanup()
        wait_for(lambda: not processes_of(state), "no process of the test's state dir")


def test_unreachable_release_says_why(tmp_path):
    """A state dir under a directory the app user cannot pass (a 0700 home, say): the start
    fails and says which directory and what to do, instead of running the app as root."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    a = Agent(BIN, private / "state")
    a.state.mkdir()
    try:
        src = tmp_path / "envecho"
        shutil.copytree(ENVECHO, src)
        rid = build(a.state, src)
        a.start()
        activate(a, rid)
        st, body = a.call("POST", "/v1/apps/envecho/instances", {"release": rid})
        assert st == 201, body
        iid = body["instances"][0]["id"]

        def failed():
            cur = a.call("GET", f"/v1/apps/envecho/instances/{iid}")[1]
            return cur if cur["last_exit"] else None
        cur = wait_for(failed, "the start to fail")
        assert re.search(r"uid \d+ cannot enter its directory \(Permission denied",
                         cur["last_exit"]), cur
        assert "searchable by others" in cur["last_exit"], cur
        assert cur["pid"] in (0, None)
    finally:
        a.cleanup()
        wait_for(lambda: not processes_of(a.state), "no process of the test's state dir")
