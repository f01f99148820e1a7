"""test_controller_crash.py's step-boundary crash test, against two real SSH hosts (hostlib.py)
and the real agents there: the controller dies right after each step of a two-host deploy is
recorded (CAIRN_TEST_CRASH_AFTER, test_hooks builds); its ssh links die with it; after a
restart the job succeeds and every instance started exactly once, counted from the app's own
start log on each host. The same again with kill -9 at random moments."""
import json
import os
import random
import signal

import pytest

from conftest import BIN
from ctlutil import has_test_hooks, wait_for
from hostlib import ssh_hosts  # noqa: F401 (fixture)
from rolloutlib import AgentController, stop_local_agent

pytestmark = pytest.mark.skipif(not has_test_hooks(), reason="needs a -Dtest_hooks=true build")

STEPS = ["ensure_objects", "activate", "start", "health", "accept", "switch", "bake", "cleanup"]

APP = """import http.server, os
with open(os.path.join(os.environ["CAIRN_DATA"], "starts.log"), "a") as f:
    f.write(os.environ["CAIRN_RELEASE"] + " " + os.environ["CAIRN_INSTANCE"] + "\\n")
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok\\n")
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
# {version}
"""

YML = """app: demo
run:
  command: ["python3", "app.py"]
  stop_timeout: 2s
listen: {port}
hosts:
{hosts}
instances: 1
health: {{http: /healthz, interval: 100ms, timeout: 1s, healthy_after: 1, start_deadline: 20s}}
rollout: {{bake: 0}}
"""


def build(cairn, hosts, version):
    d = cairn.cwd / f"demo-{version}"
    d.mkdir()
    (d / "app.py").write_text(APP.format(version=version))
    (d / "cairn.yml").write_text(YML.format(
        port=19000 + os.getpid() % 1000,
        hosts="".join(f"  - {h.yaml(BIN)}\n" for h in hosts)))
    return cairn.run("build", cwd=d, check=0).stdout.strip().splitlines()[-1]


def starts(host, rel):
    log = host.state / "data" / "demo" / "starts.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return sum(1 for ln in lines if ln.split()[0] == rel)


def ssh_processes(cairn):
    mark = str(cairn.state / "hosts")
    left = []
    for p in os.listdir("/proc"):
        try:
            if p.isdigit() and mark in open(f"/proc/{p}/cmdline").read().replace("\0", " "):
                left.append(int(p))
        except OSError:
            pass
    return left


@pytest.mark.parametrize("host", ["web1", "web2"])
def test_kill_after_each_step_boundary_ssh_hosts(cairn, tmp_path, ssh_hosts, host):  # noqa: F811
    hosts = ssh_hosts(2)
    cairn.state.mkdir(parents=True, exist_ok=True)
    ctl = AgentController(cairn, tmp_path)
    ctl.base_env.update(ssh_hosts.env)
    try:
        for step in STEPS:
            rel = build(cairn, hosts, f"{host}-{step}")
            ctl.start(env={"CAIRN_TEST_CRASH_AFTER": f"{step}:{host}"})
            st, b, _ = ctl.request("POST", "/v1/apps/demo/deploys", {"release": rel},
                                   {"Idempotency-Key": f"{step}-{host}"})
            assert st == 202, b
            assert ctl.proc.wait(timeout=120) == 137, ctl.log_text()
            # the controller's ssh links die with it (PR_SET_PDEATHSIG): no orphans
            wait_for(lambda: ssh_processes(cairn) == [], what="ssh links to end")
            ctl.start()
            j = ctl.wait_terminal(b["id"], timeout=180)
            assert j["state"] == "succeeded", json.dumps(j, indent=1)
            done = [(s["host"], s["step"]) for s in j["steps"] if s["state"] == "done"]
            assert len(done) == len(set(done)) == 2 * len(STEPS), j["steps"]
            # each host started the release's one instance exactly once
            for h in hosts:
                assert starts(h, rel) == 1, (step, h.name, starts(h, rel))
            # the fleet is wholly on the new release
            app = ctl.get("/v1/apps/demo")[1]
            assert app["current"] == rel, app
            for hs in cairn.json("status", "--app", "demo")["hosts"]:
                assert hs["ok"] and {i["release"] for i in hs["instances"]} == {rel}, hs
            ctl.stop()
            assert ssh_processes(cairn) == []
    finally:
        ctl.stop(check=False)
        stop_local_agent(cairn)


def test_kills_at_random_moments_ssh_hosts(cairn, tmp_path, ssh_hosts):  # noqa: F811
    hosts = ssh_hosts(2)
    cairn.state.mkdir(parents=True, exist_ok=True)
    ctl = AgentController(cairn, tmp_path)
    ctl.base_env.update(ssh_hosts.env)
    rnd = random.Random(3)
    try:
        for i in range(10):
            rel = build(cairn, hosts, f"rand-{i}")
            ctl.start(env={"CAIRN_TEST_STEP_DELAY_MS": "20"})
            st, b, _ = ctl.request("POST", "/v1/apps/demo/deploys", {"release": rel},
                                   {"Idempotency-Key": f"rand-{i}"})
            assert st == 202, b
            n = rnd.randrange(0, 16)  # let it get somewhere: 0..15 recorded steps
            wait_for(lambda: len(ctl.job(b["id"])["steps"]) >= n, timeout=120,
                     what=f"{n} steps")
            ctl.proc.send_signal(signal.SIGKILL)
            ctl.proc.wait()
            wait_for(lambda: ssh_processes(cairn) == [], what="ssh links to end")
            ctl.start()
            j = ctl.wait_terminal(b["id"], timeout=180)
            assert j["state"] == "succeeded", json.dumps(j, indent=1)
            for h in hosts:
                assert starts(h, rel) == 1, (i, n, h.name, starts(h, rel))
            ctl.stop()
    finally:
        ctl.stop(check=False)
        stop_local_agent(cairn)
