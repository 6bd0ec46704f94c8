"""The client configuration snippets of the README (in README.md) must load.

Blocks are found by their ``<!-- clients-test: NAME -->`` marker: the containerd CRI runtime table
is loaded by containerd itself (``containerd --config F config dump``), the podman
``containers.conf`` block is parsed as TOML and checked for the keys the podman tests rely on, and
the RuntimeClass's ``handler`` must name the containerd runtime table.
"""

import os
import re
import tomllib

import pytest

pytestmark = [pytest.mark.clients]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = [os.path.join(ROOT, "docs", "clients.md"), os.path.join(ROOT, "README.md")]
BINARY = "/usr/local/bin/ociruntime"


def snippet(name):
    for path in DOCS:
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        m = re.search(r"<!-- clients-test: " + re.escape(name) + r" -->\s*```\w*\n(.*?)```", text, re.S)
        if m:
            return m.group(1)
    pytest.fail(f"no block marked '<!-- clients-test: {name} -->' in {DOCS}")


def test_containerd_cri_snippet_loads(client_env):
    text = snippet("containerd-cri")
    cfg = tomllib.loads(text)
    rt = cfg["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["ociruntime"]
    assert rt["runtime_type"] == "io.containerd.runc.v2"
    assert rt["options"]["BinaryName"] == BINARY
    path = client_env.p("etc", "cri-snippet.toml")
    with open(path, "w") as f:
        f.write(text)
    r = client_env.run(["containerd", "--config", path, "config", "dump"], timeout=60)
    assert r.ok, r
    dumped = tomllib.loads(r.out)
    got = dumped["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]["ociruntime"]
    assert got["runtime_type"] == "io.containerd.runc.v2", got
    assert got["options"]["BinaryName"] == BINARY, got


def test_podman_containers_conf_snippet(client_env):
    cfg = tomllib.loads(snippet("podman-containers-conf"))
    engine = cfg["engine"]
    assert engine["runtimes"]["ociruntime"] == [BINARY]
    # the list replaces podman's default one: ours added, the usual ones kept
    assert {"ociruntime", "crun", "runc"} <= set(engine["runtime_supports_json"])
    # the test configuration uses the same keys (tests/clients/clients_env.py)
    with open(client_env.p("etc", "containers.conf"), "rb") as f:
        ours = tomllib.load(f)["engine"]
    assert ours["runtime_supports_json"] == engine["runtime_supports_json"]
    assert list(ours["runtimes"]) == ["ociruntime"]


def test_runtimeclass_handler_names_the_runtime_table():
    text = snippet("runtimeclass")
    assert re.search(r"(?m)^kind: RuntimeClass$", text)
    assert re.search(r"(?m)^handler: ociruntime$", text)
    assert re.search(r"(?m)^\s+runtimeClassName: ociruntime$", text)
    cri = tomllib.loads(snippet("containerd-cri"))
    assert "ociruntime" in cri["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"]
