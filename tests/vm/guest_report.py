"""pytest plugin loaded in the guest (``-p guest_report``): one JSON line per finished test, appended
to ``$OCI_VM_RESULTS`` as soon as the test's teardown is done (so that a run cut short by the stage's
time limit still reports every test it finished), read by tests/vm/test_vm_v2.py, which reports each
guest test as its own host test. Outcomes: passed, failed, skipped, xfailed, xpassed (with the failure
text or skip reason and the test's duration)."""
import json
import os

_results = {}


def pytest_runtest_logreport(report):
    rec = _results.setdefault(report.nodeid, {"nodeid": report.nodeid, "outcome": "passed", "message": "",
                                              "duration": 0.0})
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
    path = os.environ.get("OCI_VM_RESULTS")
    if report.when == "teardown" and path:
        with open(path, "a") as f:
            f.write(json.dumps(_results.pop(report.nodeid)) + "\n")
