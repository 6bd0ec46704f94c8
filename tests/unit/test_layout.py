"""House rules of the code's shape, checked on the source: the data flows one way
(cli → lifecycle → config/validate → plan → C init → state), the helpers are leaves, the lifecycle
modules live in one package, and the start-up tricks live in ociruntime/lean.py."""
import ast
import os

import pytest

PKG = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "ociruntime")
LEAVES = ("hooks", "console", "netdev", "notify", "initbin", "lean", "errors", "log", "fastjson")
BELOW_LIFECYCLE = ("config", "validate", "schema", "plan", "state", "seccomp", "lsm", "cgroups", "cgremove")


def imports_of(relpath):
    with open(os.path.join(PKG, relpath)) as f:
        tree = ast.parse(f.read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def module_files(name):
    path = os.path.join(PKG, name)
    if os.path.isdir(path):
        return [os.path.relpath(os.path.join(d, f), PKG) for d, _, fs in os.walk(path) for f in fs if f.endswith(".py")]
    return [name + ".py"]


@pytest.mark.parametrize("name", LEAVES + BELOW_LIFECYCLE)
def test_no_upward_import_of_the_lifecycle(name):
    for rel in module_files(name):
        bad = sorted(n for n in imports_of(rel) if n.startswith("ociruntime.lifecycle") or n == "ociruntime.cli")
        assert bad == [], f"{rel} imports {bad}: helpers and the layers below the lifecycle never import it"


def test_lifecycle_is_one_package():
    assert not [f for f in os.listdir(PKG) if f.startswith("lifecycle") and f.endswith(".py")]
    assert os.path.isfile(os.path.join(PKG, "lifecycle", "__init__.py"))


def test_start_up_tricks_only_in_lean():
    """`import posix` / `_signal` / `_struct` / `_socket` are written once, in lean.py."""
    offenders = []
    for d, _, files in os.walk(PKG):
        for f in files:
            rel = os.path.relpath(os.path.join(d, f), PKG)
            if not f.endswith(".py") or rel in ("lean.py",) or rel.startswith("testing"):
                continue
            for n in imports_of(rel):
                if n in ("posix", "_signal", "_struct", "_socket"):
                    offenders.append(f"{rel}: {n}")
    assert offenders == []


def test_every_package_is_installed_by_setup_py():
    """A package directory setup.py does not list is missing from `pip install .` (tests/integration/
    test_pip_install.py shows it end to end; this says which one at once)."""
    import re
    setup = open(os.path.join(os.path.dirname(PKG), "setup.py")).read()
    listed = set(re.findall(r'"(ociruntime(?:\.\w+)*)"', re.search(r"packages=\[(.*?)\]", setup, re.S).group(1)))
    found = {os.path.relpath(d, os.path.dirname(PKG)).replace("/", ".") for d, _, files in os.walk(PKG)
             if "__init__.py" in files}
    assert found <= listed, sorted(found - listed)


def test_a_launcher_for_a_copy_keeps_this_packages_commit(tmp_path):
    """reach.RuntimeCopy writes a launcher for a copy of the package (pkg_parent elsewhere, no git):
    that must not remove this package's libexec/commit (--version's commit line)."""
    from ociruntime import launcher
    commit = os.path.join(PKG, "libexec", "commit")
    if not os.path.exists(commit):
        pytest.skip("not built from a git checkout: no libexec/commit to keep")
    before = open(commit).read()
    launcher.write(str(tmp_path / "ociruntime"), pkg_parent=str(tmp_path), site=[])
    assert os.path.exists(commit) and open(commit).read() == before
