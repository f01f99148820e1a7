"""rollout.parallel: hosts of one wave run their steps at the same time, waves in turn; the
first failure in a wave stops the other hosts at their next step and every touched host is
rolled back. The controller runs the test-only log executor (test_hooks builds), with a delay
per step so that concurrency shows in the order of the executor's log."""
import pytest

from ctlutil import Controller, has_test_hooks

pytestmark = pytest.mark.skipif(not has_test_hooks(), reason="needs a -Dtest_hooks=true build")

YML = """app: par
run:
  command: ["python3", "app.py"]
listen: 8080
hosts: [{{name: a, ssh: t@127.0.0.1}}, {{name: b, ssh: t@127.0.0.1}}, {{name: c, ssh: t@127.0.0.1}}, {{name: d, ssh: t@127.0.0.1}}]
instances: 1
rollout: {{ parallel: {par}, bake: 0 }}
"""


def build(cairn, par, version):
    d = cairn.cwd / f"par-{par}-{version}"
    d.mkdir(exist_ok=True)
    (d / "cairn.yml").write_text(YML.format(par=par))
    (d / "app.py").write_text(f"print('v{version}')\n")
    return cairn.run("build", cwd=d, check=0).stdout.strip().splitlines()[-1]


def log_lines(ctl):
    return [dict(p.split("=", 1) for p in ln.split())
            for ln in ctl.exec_log.read_text().splitlines() if ln.startswith("job=")]


def run_job(cairn, tmp_path, par, env=None):
    cairn.state.mkdir(parents=True, exist_ok=True)
    ctl = Controller(cairn, tmp_path)
    ctl.start(env=dict({"CAIRN_TEST_STEP_DELAY_MS": "150"}, **(env or {})))
    try:
        rel = build(cairn, par, 1)
        st, b, _ = ctl.request("POST", "/v1/apps/par/deploys", {"release": rel})
        assert st == 202, b
        return ctl.wait_terminal(b["id"], timeout=120), log_lines(ctl)
    finally:
        ctl.stop()


def first(lines, host, step):
    return next(i for i, ln in enumerate(lines) if ln["host"] == host and ln["step"] == step)


def test_waves_of_two(cairn, tmp_path):
    job, lines = run_job(cairn, tmp_path, 2)
    assert job["state"] == "succeeded", job
    # a and b together: b started before a finished; c only after both a and b were done
    assert first(lines, "b", "start") < first(lines, "a", "cleanup")
    assert first(lines, "c", "ensure_objects") > max(first(lines, "a", "cleanup"),
                                                     first(lines, "b", "cleanup"))
    assert first(lines, "d", "start") < first(lines, "c", "cleanup")
    for h in "abcd":
        assert sum(1 for ln in lines if ln["host"] == h) == 8


def test_one_at_a_time_by_default(cairn, tmp_path):
    job, lines = run_job(cairn, tmp_path, 1)
    assert job["state"] == "succeeded"
    assert first(lines, "b", "ensure_objects") > first(lines, "a", "cleanup")


def test_failure_in_a_wave_stops_the_others_and_rolls_back(cairn, tmp_path):
    job, lines = run_job(cairn, tmp_path, 4, env={"CAIRN_TEST_FAIL_STEP": "accept:c"})
    assert job["state"] == "failed", job  # first deploy: nothing to roll back to
    assert "accept on c" in job["error"] and "test hook" in job["error"], job["error"]
    steps = job["steps"]
    # the others stopped at their next step boundary (a host in lockstep may have begun switch)
    assert not [s for s in steps if s["step"] in ("bake", "cleanup")], steps
    # every touched host was rolled back, c first (at once, in its own thread)
    rb = [ln["host"] for ln in lines if ln["step"] == "rollback"]
    assert sorted(rb) == ["a", "b", "c", "d"] and rb[0] == "c", rb
