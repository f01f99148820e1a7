"""Shared fixtures for end-to-end tests: they run the real cairn binary (CAIRN_BIN, default
./build/cairn) against a fresh state directory per test."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("CAIRN_BIN", str(ROOT / "build" / "cairn"))
FIXTURES = ROOT / "tests" / "fixtures"
EXAMPLES = ROOT / "examples"


@pytest.fixture
def tmp_path(request):
    """A fresh directory per test that app users can pass through (0711 under /tmp): a root
    agent runs apps as their own unprivileged user (docs/security.md), and pytest's own
    tmp_path lives under /tmp/pytest-of-root (0700). Kept when the test failed."""
    import tempfile
    d = Path(tempfile.mkdtemp(prefix=f"cairn-e2e-{request.node.name[:40]}-".replace("/", "_")))
    d.chmod(0o711)
    yield d
    rep = getattr(request.node, "rep_call", None)
    if rep is None or rep.passed:
        shutil.rmtree(d, ignore_errors=True)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.rep_call = rep


class Cairn:
    """Runs `cairn` with a private state directory."""

    def __init__(self, state: Path, cwd: Path):
        self.state = state
        self.cwd = cwd

    def run(self, *args, cwd=None, check=None, input=None, timeout=120, env=None):
        e = dict(os.environ, CAIRN_STATE=str(self.state))
        if env:
            e.update(env)
        p = subprocess.run([BIN, *map(str, args)], cwd=str(cwd or self.cwd), capture_output=True,
                           text=input is None or isinstance(input, str), input=input,
                           timeout=timeout, env=e)
        if check is not None and p.returncode != check:
            raise AssertionError(f"cairn {' '.join(map(str, args))}: exit {p.returncode}, "
                                 f"wanted {check}\nstdout: {p.stdout}\nstderr: {p.stderr}")
        return p

    def json(self, *args, check=0, **kw):
        p = self.run(*args, "--json", check=check, **kw)
        return json.loads(p.stdout)


@pytest.fixture
def cairn(tmp_path):
    state = tmp_path / "state"
    work = tmp_path / "work"
    work.mkdir()
    return Cairn(state, work)


@pytest.fixture
def copy_tree(tmp_path):
    """copy_tree(src, name) → a private copy of a fixture or example directory."""
    def _copy(src, name=None):
        dst = tmp_path / (name or Path(src).name)
        shutil.copytree(src, dst, symlinks=True)
        return dst
    return _copy
