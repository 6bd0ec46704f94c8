"""tests/vm/stages.py: the guest stages run in the background, wave after wave, and their fixtures
wait for them; and tests/conftest.py moves a stage module's tests to the end of the run."""
import os
import subprocess
import sys
import threading
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "vm"))
import stages  # noqa: E402


class Value:
    def __init__(self, v, started=0.0, ended=0.0, pid=0):
        self.v, self.started, self.ended, self.pid, self.notes = v, started, ended, pid, []


_BOTH = threading.Barrier(2, timeout=10)  # only passes when both stages of wave 0 run at once


def _stage_a():
    return _timed("a", meet=True)


def _stage_b():
    return _timed("b", meet=True)


def _stage_c():
    return _timed("c", meet=False)


def _timed(name, meet):
    if meet:
        _BOTH.wait()
    t0 = time.monotonic()
    time.sleep(0.05)
    return Value(name, t0, time.monotonic(), os.getpid())


def test_waves_run_in_order_and_stages_of_a_wave_together_in_another_process():
    stages.start([[("t-a", _stage_a), ("t-b", _stage_b)], [("t-c", _stage_c)]])
    c = stages.result("t-c", lambda: pytest.fail("ran inline"))
    a = stages.result("t-a", lambda: pytest.fail("ran inline"))
    b = stages.result("t-b", lambda: None)
    assert (a.v, b.v, c.v) == ("a", "b", "c")
    # CLOCK_MONOTONIC is one clock for every process: wave 1 began after wave 0 had ended
    assert c.started >= max(a.ended, b.ended), (a.ended, b.ended, c.started)
    # not in pytest's process: a test's file descriptors and a guest's are not the same table
    assert a.pid == b.pid == c.pid != os.getpid()
    assert any("ran beside the host tests" in n for n in b.notes), b.notes


def test_a_stage_not_started_runs_inline():
    assert stages.result("t-never-started", lambda: Value(7)).v == 7


def _boom():
    raise RuntimeError("kit exploded")


def test_a_crashed_stage_is_reported_with_its_traceback():
    stages.start([[("t-crash", _boom)]])
    with pytest.raises(stages.StageCrashed, match="kit exploded"):
        stages.result("t-crash", _boom)


def test_conftest_moves_stage_modules_last_and_collect_only_starts_nothing(tmp_path):
    """The real hook on a small tree: a module with stages_for() goes last; --collect-only starts
    no stage (it would boot guests)."""
    (tmp_path / "conftest.py").write_text(open(os.path.join(REPO, "tests", "conftest.py")).read())
    (tmp_path / "stages.py").write_text(open(os.path.join(REPO, "tests", "vm", "stages.py")).read())
    (tmp_path / "test_a_staged.py").write_text(
        "import os, stages\nSTAGE_WAVE = 0\n"
        "def stages_for(items):\n"
        "    open(os.environ['MARK'], 'a').write('started\\n')\n"
        "    return [('s', lambda: 1)]\n"
        "def test_waits():\n    assert stages.result('s', lambda: 2) == int(os.environ['WANT'])\n")
    (tmp_path / "test_b_host.py").write_text("def test_host():\n    pass\n")
    mark = tmp_path / "mark"
    env = dict(os.environ, MARK=str(mark), WANT="1", PYTHONPATH=str(tmp_path), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "-q"]
    r = subprocess.run(args + ["--collect-only", str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True)
    order = [ln for ln in r.stdout.splitlines() if "::" in ln]
    assert order == ["test_b_host.py::test_host", "test_a_staged.py::test_waits"], r.stdout + r.stderr
    assert not mark.exists(), "--collect-only started a stage"
    r = subprocess.run(args[:-1] + ["-v", str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0 and mark.read_text() == "started\n", r.stdout + r.stderr
    assert r.stdout.index("test_host") < r.stdout.index("test_waits"), r.stdout
