"""pytest plugin loaded in the guest (``-p guest_report``): one JSON record per test node id, written
to ``$OCI_VM_RESULTS`` at the end of the session, for tests/vm/test_vm_v2.py to report each guest test
as its own host test. Outcomes: passed, failed, skipped, xfailed, xpassed (with the failure text or
skip reason and the duration of the call)."""
import json
import os

_results = {}


def pytest_runtest_logreport(report):
    rec = _results.setdefault(report.nodeid, {"outcome": "passed", "message": "", "duration": 0.0})
    rec["duration"] += getattr(report, "duration", 0.0) or 0.0
    xfail = hasattr(report, "wasxfail")
    if report.failed:
        if rec["outcome"] != "failed":
            rec["message"] = ""
        rec["outcome"] = "failed"
        rec["message"] += f"[{report.when}] {report.longreprtext}\n"
    elif report.skipped and rec["outcome"] == "passed":
        if xfail:
            rec["outcome"], rec["message"] = "xfailed", report.wasxfail
        else:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            rec["outcome"], rec["message"] = "skipped", reason
    elif report.passed and xfail and report.when == "call":
        rec["outcome"], rec["message"] = "xpassed", report.wasxfail


def pytest_sessionfinish(session):
    path = os.environ.get("OCI_VM_RESULTS")
    if path:
        with open(path + ".tmp", "w") as f:
            json.dump(_results, f, indent=0)
        os.rename(path + ".tmp", path)
