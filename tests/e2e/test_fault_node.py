"""The real npm client, toxiproxy-node-client, drives `cairn fault serve` unchanged. The package
is installed from the npm registry into the build directory (once; reused afterwards). If npm
cannot install it the test fails: compatibility that is not checked is not claimed."""
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, ROOT
from faultkit import echo, fault  # noqa: F401

SCRIPT = ROOT / "tests" / "e2e" / "node" / "toxiproxy_client.js"


@pytest.fixture(scope="module")
def node_client():
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.fail("node and npm are required for the toxiproxy-node-client test "
                    "(apt-get install nodejs npm)")
    prefix = Path(BIN).resolve().parent / "npm"
    if not (prefix / "node_modules" / "toxiproxy-node-client" / "package.json").exists():
        prefix.mkdir(parents=True, exist_ok=True)
        p = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix),
                            "toxiproxy-node-client@4"], capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            pytest.fail(f"npm install toxiproxy-node-client failed (exit {p.returncode}); the "
                        f"registry must be reachable for this test:\n{p.stdout}\n{p.stderr}")
    return node, prefix


def test_toxiproxy_node_client(fault, echo, node_client):
    node, prefix = node_client
    p = subprocess.run([node, str(SCRIPT), "http://" + fault.addr, echo.addr, str(prefix)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["version"] == '{"version": "2.12.0"}\n'
    assert out["created"]["name"] == "node" and out["created"]["enabled"] is True
    assert out["created"]["listen"].startswith("127.0.0.1:")
    assert out["all"] == ["node"] and out["got_listen"] == out["created"]["listen"]
    assert out["toxic"] == {"attributes": {"latency": 50, "jitter": 0}, "name": "lat",
                            "stream": "downstream", "toxicity": 1, "type": "latency"}
    assert out["rtt_before"] < 40 and out["rtt_latency"] >= 50 and out["rtt_removed"] < 40
    assert out["fetched_attrs"] == {"latency": 50, "jitter": 0}
    assert out["updated_attrs"] == {"latency": 50, "jitter": 5}
    assert out["disabled"] is False and out["refused"] is True
    assert out["populated"] == ["pop1", "pop2"]
    assert out["after_reset"] == [True, True, True]
    assert "404" in out["missing"] and "409" in out["duplicate"]
    assert out["final"] == ["pop1", "pop2"]
