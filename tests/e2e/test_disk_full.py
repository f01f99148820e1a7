"""Disk full during a deploy (issue 9 item 7): the state directory on a small tmpfs the test
mounts (root only), filled while a job runs. The runner backs off instead of spinning, logs a
repeated error once with a count, and the job fails with the reason once the disk has room to
record it; a bounded test (each wait has a deadline)."""
import json
import os
import subprocess
import time

import pytest

from ctlutil import wait_for
from rolloutlib import Fleet, state_pids

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs (root only)")


@pytest.fixture
def small_fleet(cairn, tmp_path):
    cairn.state.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs",
                    str(cairn.state)], check=True)
    f = Fleet(cairn, tmp_path)
    try:
        yield f
    finally:
        filler = cairn.state / "filler"
        if filler.exists():
            filler.unlink()
        f.teardown()
        wait_for(lambda: state_pids(cairn.state) == [], timeout=30, what="no process left")
        subprocess.run(["umount", "-l", str(cairn.state)], check=False)


def fill(path):
    """Writes zeros into path until the file system is full; returns the bytes written."""
    n = 0
    chunk = b"\0" * (1 << 20)
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                n += f.write(chunk)
            except OSError:
                break
        small = b"\0" * 4096
        while True:
            try:
                n += f.write(small)
            except OSError:
                return n


def cpu_ticks(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])


def test_disk_full_during_a_deploy_backs_off_and_fails_with_the_reason(small_fleet):
    fleet = small_fleet
    fleet.variant("v1", acceptance=False, bake="0s")
    fleet.variant("v2", acceptance=False, bake="0s")
    fleet.ctl.start(env={"CAIRN_TEST_STEP_DELAY_MS": "700"})
    assert fleet.job(fleet.deploy("v1"))["state"] == "succeeded"
    p = fleet.cairn.run("deploy", "v2", "--json", cwd=fleet.dir, check=0)
    jid = json.loads(p.stdout)["id"]
    wait_for(lambda: any(s["state"] == "started" for s in fleet.ctl.job(jid)["steps"]),
             timeout=60, what="a step of the job to start")
    fill(fleet.cairn.state / "filler")
    pid = fleet.ctl.proc.pid
    log = fleet.ctl.logs[-1]
    t0, c0, l0 = time.monotonic(), cpu_ticks(pid), os.path.getsize(log)
    time.sleep(3)  # the measurement window: what the controller does with a full disk
    dt = time.monotonic() - t0
    cpu = (cpu_ticks(pid) - c0) / os.sysconf("SC_CLK_TCK") / dt
    lines = (os.path.getsize(log) - l0)
    print(f"disk full: controller cpu {cpu:.2f} of a core, log grew {lines} bytes in {dt:.1f} s")
    assert cpu < 0.2, f"the controller spins: {cpu:.2f} of a core"
    assert lines < 20000, f"the log grows by {lines} bytes in {dt:.1f} s"
    (fleet.cairn.state / "filler").unlink()
    job = fleet.ctl.wait_terminal(jid, timeout=120)
    # the step that could not be recorded is what the job failed of, named with the reason
    assert job["state"] in ("succeeded", "failed", "rolled_back"), job
    text = fleet.ctl.log_text()
    full = [ln for ln in text.splitlines() if "database or disk is full" in ln]
    # logged once when it started and once with its count when it ended (per write waited on)
    assert 2 <= len(full) <= 6, full
    assert any("repeated" in ln and "written now" in ln for ln in full), full
    if job["state"] != "succeeded":
        assert "disk is full" in (job["error"] or ""), job


def test_a_step_that_cannot_be_recorded_fails_with_the_reason_after_its_bound(small_fleet):
    """The disk stays full past the 10 s a step's record is tried for (docs/timeouts.md 11a):
    the step fails naming the database's reason, and the job ends with it once there is room."""
    fleet = small_fleet
    fleet.variant("v1", acceptance=False, bake="0s")
    fleet.variant("v2", acceptance=False, bake="0s")
    fleet.ctl.start(env={"CAIRN_TEST_STEP_DELAY_MS": "700"})
    assert fleet.job(fleet.deploy("v1"))["state"] == "succeeded"
    p = fleet.cairn.run("deploy", "v2", "--json", cwd=fleet.dir, check=0)
    jid = json.loads(p.stdout)["id"]
    wait_for(lambda: any(s["state"] == "started" for s in fleet.ctl.job(jid)["steps"]),
             timeout=60, what="a step of the job to start")
    fill(fleet.cairn.state / "filler")
    wait_for(lambda: "gave up" in fleet.ctl.log_text(), timeout=90,
             what="the step's record to be given up after 10 s")
    (fleet.cairn.state / "filler").unlink()
    job = fleet.ctl.wait_terminal(jid, timeout=120)
    assert job["state"] in ("failed", "rolled_back"), job
    assert "on local: state database" in job["error"] and "disk is full" in job["error"], job
