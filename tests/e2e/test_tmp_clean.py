"""What killed processes leave in <state>/tmp (issue 9 item 12): a killed build's command is
killed with it, and the next start sweeps its scratch directory and whatever it left running
there; a killed import's temp object goes at the next start; part files nobody resumed for a
day expire. Real binary and processes; every process a test starts is stopped."""
import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest

from agentlib import Agent
from conftest import BIN
from ctlutil import wait_for


def alive(pid):
    try:
        st = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        return st != "Z"
    except OSError:
        return False


def tmp_entries(state):
    d = state / "tmp"
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


BUILD_PY = """import subprocess, sys, time
child = subprocess.Popen(["sleep", "300"])
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(f"{__import__('os').getpid()} {child.pid}\\n")
__import__("os").rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(300)
"""


def test_killed_build_leaves_no_command_and_no_scratch(cairn, tmp_path):
    app = tmp_path / "slow"
    app.mkdir()
    pids_file = tmp_path / "pids"
    (tmp_path / "build.py").write_text(BUILD_PY)
    (app / "app.py").write_text("print('hi')\n")
    (app / "cairn.yml").write_text(
        "app: slow\nbuild:\n  command: [\"%s\", \"%s\", \"%s\"]\n  pins: warn\n"
        "run:\n  command: [\"python3\", \"app.py\"]\nlisten: 18080\n"
        % (sys.executable, tmp_path / "build.py", pids_file))
    env = dict(os.environ, CAIRN_STATE=str(cairn.state))
    p = subprocess.Popen([BIN, "build"], cwd=app, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    leader = child = None
    try:
        wait_for(pids_file.exists, timeout=60, what="the build command to start")
        leader, child = map(int, pids_file.read_text().split())
        assert [n for n in tmp_entries(cairn.state) if n.startswith(("build-", "cairn-"))]
        p.kill()
        p.wait(timeout=10)
        # the build command dies with the build (parent-death signal)
        wait_for(lambda: not alive(leader), timeout=10, what="the build command to die")
        # the next build sweeps the dead build's scratch dir and what still ran inside it
        (app / "cairn.yml").write_text((app / "cairn.yml").read_text().replace(
            "command: [\"%s\"" % sys.executable, "command: [\"true\"").replace(
            ", \"%s\", \"%s\"]" % (tmp_path / "build.py", pids_file), "]"))
        cairn.run("build", cwd=app, check=0)
        wait_for(lambda: not alive(child), timeout=10, what="the orphaned child to be killed")
        assert [n for n in tmp_entries(cairn.state) if n.startswith(("build-", "cairn-"))] == []
    finally:
        for pid in (leader, child):
            if pid and alive(pid):
                os.kill(pid, signal.SIGKILL)
        if p.poll() is None:
            p.kill()
            p.wait()


def test_killed_import_leaves_no_temp_object(cairn, tmp_path):
    src = tmp_path / "big"
    src.mkdir()
    (src / "cairn.yml").write_text("app: big\nbuild:\n  pins: warn\nrun:\n  command: [\"true\"]\n"
                                   "listen: 18080\n")
    (src / "blob.bin").write_bytes(os.urandom(16 << 20))
    rid = cairn.run("build", cwd=src, check=0).stdout.strip().splitlines()[-1]
    archive = tmp_path / "big.tar"
    cairn.run("export", rid, "-o", archive, cwd=src, check=0)
    data = archive.read_bytes()
    other = tmp_path / "state2"
    env = dict(os.environ, CAIRN_STATE=str(other))
    p = subprocess.Popen([BIN, "import", "-"], env=env, stdin=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        p.stdin.write(data[:len(data) // 2])  # half the archive: the big object is in flight
        p.stdin.flush()

        def temp_obj():
            return [n for n in tmp_entries(other) if n.startswith("obj-") and
                    (other / "tmp" / n).stat().st_size > (1 << 20)]
        wait_for(temp_obj, timeout=60, what="the import's temp object")
        p.kill()
        p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdin.close()
    assert [n for n in tmp_entries(other) if n.startswith("obj-")]
    # the next import (of anything) sweeps it; the import itself succeeds
    q = subprocess.run([BIN, "import", str(archive)], env=env, capture_output=True, timeout=120)
    assert q.returncode == 0, q.stderr
    assert [n for n in tmp_entries(other) if n.startswith("obj-")] == []


def test_part_files_expire(tmp_path):
    agent = Agent(BIN, tmp_path / "state")
    agent.state.mkdir()
    try:
        agent.start()

        def put(data, n):
            d = hashlib.sha256(data).hexdigest()
            st, b = agent.call("PUT", f"/v1/objects/{d}?offset=0&size={len(data)}",
                               raw=data[:n])
            assert st == 202, b
            return agent.state / "tmp" / f"part-{d}"

        old = put(os.urandom(4096), 1000)
        fresh = put(os.urandom(4096), 1000)
        day = 24 * 3600
        os.utime(old, (time.time() - day - 60, time.time() - day - 60))
        os.utime(fresh, (time.time() - day + 3600, time.time() - day + 3600))
        # a new upload sweeps parts nobody wrote for a day; younger ones are resumable
        newest = put(os.urandom(4096), 1000)
        assert not old.exists() and fresh.exists() and newest.exists()
    finally:
        agent.cleanup()
