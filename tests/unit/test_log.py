"""log.py: logrus-compatible output (cli-contract §3).

text:  time="2026-11-27T20:39:46Z" level=error msg="container does not exist"
json:  {"level":"error","msg":"container does not exist","time":"2026-11-27T20:39:46Z"} (keys sorted)
An error (or fatal) logged to a --log file is also written bare to stderr; logging to stderr (the
default, or --log /dev/stderr) writes it once.
"""

import json
import os
import re
import time

import pytest

from ociruntime import log as logmod
from ociruntime.log import Logger

RFC3339_S = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:Z|[+-]\d\d:\d\d)"
TEXT_RE = re.compile(r'^time="(' + RFC3339_S + r')" level=(\w+) msg="((?:[^"\\]|\\.)*)"(.*)$')


@pytest.fixture
def logger():
    lg = Logger()
    yield lg
    if lg.fd != 2:
        os.close(lg.fd)


@pytest.fixture
def tz(monkeypatch):
    """Set TZ for the duration of a test (POSIX TZ strings, no tzdata needed)."""
    def set_tz(value):
        monkeypatch.setenv("TZ", value)
        time.tzset()
    yield set_tz
    monkeypatch.undo()
    time.tzset()


def read_lines(path):
    with open(path) as f:
        return f.read().splitlines()


# --- text format -----------------------------------------------------------------------------

def test_text_line_on_stderr_by_default(logger, capfd):
    logger.error("container does not exist")
    out, err = capfd.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err            # logged once, not mirrored: the logger *is* stderr
    m = TEXT_RE.match(lines[0])
    assert m, lines[0]
    assert m.group(2) == "error"
    assert m.group(3) == "container does not exist"
    assert m.group(4) == ""
    assert err.endswith("\n")


@pytest.mark.parametrize("msg, quoted", [
    ('runc: "state" requires exactly 1 argument(s)', r'runc: \"state\" requires exactly 1 argument(s)'),
    ("back\\slash", r"back\\slash"),
    ("two\nlines", r"two\nlines"),
    ("tab\there", r"tab\there"),
])
def test_text_quoting(logger, capfd, msg, quoted):
    logger.error(msg)
    err = capfd.readouterr().err
    assert err.count("\n") == 1, "a message is always exactly one line"
    m = TEXT_RE.match(err.rstrip("\n"))
    assert m, err
    assert m.group(3) == quoted


def test_text_extra_fields_sorted(logger, capfd):
    logger.warning("w", zeta=1, alpha="a b")
    err = capfd.readouterr().err.rstrip("\n")
    m = TEXT_RE.match(err)
    assert m and m.group(2) == "warning"
    assert m.group(4) == ' alpha="a b" zeta="1"'


def test_levels_and_debug_filter(logger, capfd):
    logger.debug("hidden")
    logger.info("i")
    logger.warning("w")
    err = capfd.readouterr().err
    assert "hidden" not in err
    assert [TEXT_RE.match(x).group(2) for x in err.splitlines()] == ["info", "warning"]
    logger.configure(None, "text", debug=True)
    logger.debug("shown")
    err = capfd.readouterr().err
    assert TEXT_RE.match(err.rstrip("\n")).group(2) == "debug"


# --- json format -----------------------------------------------------------------------------

def test_json_line_to_file_and_bare_message_on_stderr(logger, tmp_path, capfd):
    path = str(tmp_path / "log.json")
    logger.configure(path, "json")
    logger.error("container does not exist")
    out, err = capfd.readouterr()
    assert out == ""
    assert err == "container does not exist\n"
    with open(path, "rb") as f:
        raw = f.read()
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    line = raw.decode().rstrip("\n")
    obj = json.loads(line)
    assert list(obj) == ["level", "msg", "time"]
    assert obj["level"] == "error" and obj["msg"] == "container does not exist"
    assert re.fullmatch(RFC3339_S, obj["time"]), obj["time"]
    # compact, sorted: exactly what logrus' JSONFormatter writes
    assert line == json.dumps(obj, separators=(",", ":"), sort_keys=True)


def test_json_extra_fields_sorted(logger, tmp_path, capfd):
    path = str(tmp_path / "log.json")
    logger.configure(path, "json", debug=True)
    logger.debug("d", status=3, pid=42, file="x.go")
    obj = json.loads(read_lines(path)[0])
    assert list(obj) == sorted(obj) == ["file", "level", "msg", "pid", "status", "time"]
    assert obj["pid"] == 42 and obj["status"] == 3 and obj["level"] == "debug"
    assert capfd.readouterr().err == ""          # only errors are mirrored


def test_only_errors_are_mirrored_to_stderr(logger, tmp_path, capfd):
    path = str(tmp_path / "log")
    logger.configure(path, "json")
    logger.info("i")
    logger.warning("w")
    assert capfd.readouterr().err == ""
    logger.log("fatal", "f")
    logger.error("e")
    assert capfd.readouterr().err == "f\ne\n"
    assert [json.loads(x)["level"] for x in read_lines(path)] == ["info", "warning", "fatal", "error"]


def test_text_to_file_mirrors_errors(logger, tmp_path, capfd):
    path = str(tmp_path / "log.txt")
    logger.configure(path, "text")
    logger.error('bad "x"')
    assert capfd.readouterr().err == 'bad "x"\n'
    (line,) = read_lines(path)
    m = TEXT_RE.match(line)
    assert m and m.group(3) == r'bad \"x\"'


def test_dev_stderr_is_stderr_not_a_file(logger, capfd):
    logger.configure("/dev/stderr", "json")
    assert logger.fd == 2
    logger.error("once")
    err = capfd.readouterr().err
    assert err.count("once") == 1
    assert json.loads(err)["msg"] == "once"


def test_log_file_is_appended_and_created_0644(logger, tmp_path):
    path = tmp_path / "log.json"
    path.write_text('{"level":"info","msg":"earlier","time":"2026-01-01T00:00:00Z"}\n')
    logger.configure(str(path), "json")
    logger.error("later")
    lines = read_lines(path)
    assert len(lines) == 2 and json.loads(lines[0])["msg"] == "earlier"
    assert json.loads(lines[1])["msg"] == "later"
    fresh = tmp_path / "new.log"
    old = os.umask(0o022)
    try:
        lg = Logger()
        lg.configure(str(fresh), "text")
        os.close(lg.fd)
    finally:
        os.umask(old)
    assert fresh.stat().st_mode & 0o777 == 0o644


def test_each_record_is_one_write(logger, tmp_path):
    """Concurrent runtimes append to the same log.json (containerd): one write(2) per record, O_APPEND."""
    path = str(tmp_path / "log.json")
    logger.configure(path, "json")
    import fcntl
    assert fcntl.fcntl(logger.fd, fcntl.F_GETFL) & os.O_APPEND
    assert fcntl.fcntl(logger.fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    msg = "x" * 100_000
    logger.info(msg)
    (line,) = read_lines(path)
    assert json.loads(line)["msg"] == msg


@pytest.mark.parametrize("fmt", ["xml", "JSON", "Text", " json"])
def test_invalid_log_format(logger, fmt):
    with pytest.raises(ValueError) as ei:
        logger.configure(None, fmt)
    assert str(ei.value) == f"invalid log-format: {fmt}"


def test_empty_log_format_means_text(logger, capfd):
    logger.configure(None, "")
    logger.error("e")
    assert TEXT_RE.match(capfd.readouterr().err.rstrip("\n"))


# --- time ------------------------------------------------------------------------------------

def test_time_utc_is_z(tz):
    tz("UTC0")
    t = logmod._now()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", t), t
    assert abs(time.mktime(time.strptime(t, "%Y-%m-%dT%H:%M:%SZ")) - time.time()) < 5


@pytest.mark.parametrize("posix_tz, suffix", [("IST-5:30", "+05:30"), ("NST3:30", "-03:30"),
                                               ("CET-1", "+01:00"), ("XXX+12", "-12:00")])
def test_time_local_offset(tz, posix_tz, suffix):
    tz(posix_tz)
    t = logmod._now()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", t), t
    assert t.endswith(suffix)


def test_json_time_is_rfc3339_seconds(logger, tmp_path, tz):
    tz("IST-5:30")
    path = str(tmp_path / "l")
    logger.configure(path, "json")
    logger.info("x")
    obj = json.loads(read_lines(path)[0])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+05:30", obj["time"]), obj["time"]
