"""ociruntime.criu: the RPC messages built at run time from CRIU's documented field numbers encode to
the bytes CRIU's protobuf-c expects; version errors name the version needed."""

import pytest

from ociruntime import criu


def test_request_wire_format():
    M = criu.messages()
    # criu_req { type = VERSION }: field 1, varint 10
    assert criu.request(criu.VERSION).SerializeToString() == b"\x08\x0a"
    o = M["criu_opts"](images_dir_fd=5, root="/r", leave_running=True, empty_ns=0x40000000)
    e = o.ext_mnt.add()
    e.key, e.val = "/a", "/b"
    i = o.inherit_fd.add()
    i.key, i.fd = "pipe:[7]", 1
    data = criu.request(criu.DUMP, o).SerializeToString()
    assert data[:2] == b"\x08\x01" and data[2] == 0x12  # type DUMP, then opts (field 2, length-delimited)
    opts = data[4:]
    assert b"\x08\x05" in opts                      # images_dir_fd = 5 (field 1)
    assert b"\x18\x01" in opts                      # leave_running (field 3)
    assert b"\x6a\x02/r" in opts                    # root (field 13)
    assert b"\xba\x01\x08\n\x02/a\x12\x02/b" in opts  # ext_mnt (field 23) {key, val}
    assert b"\xda\x01\x0c\n\x08pipe:[7]\x10\x01" in opts  # inherit_fd (field 27)
    assert b"\xb0\x02\x80\x80\x80\x80\x04" in opts    # empty_ns (field 38) = CLONE_NEWNET


def test_response_decoding():
    # criu_resp { type VERSION, success true, version { 4, 1, sublevel 1 } }
    raw = b"\x08\x0a\x10\x01\x52\x06\x08\x04\x10\x01\x20\x01"
    r = criu.messages()["criu_resp"].FromString(raw)
    assert r.success and r.version.major_number == 4 and r.version.minor_number == 1 and r.version.sublevel == 1
    # a notification with its script name
    n = criu.messages()["criu_resp"].FromString(b"\x08\x06\x10\x01\x2a\x14\x0a\x10setup-namespaces\x10\x07")
    assert n.type == criu.NOTIFY and n.notify.script == "setup-namespaces" and n.notify.pid == 7


def test_missing_criu_names_the_version(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(criu.CriuError, match=r"criu not found in \$PATH: checkpoint/restore needs CRIU >= \d\.\d+"):
        criu.find("")
    with pytest.raises(criu.CriuError, match="not an executable file"):
        criu.find("/nonexistent/criu")


def test_broken_criu_names_the_version(tmp_path):
    fake = tmp_path / "criu"
    fake.write_text("#!/bin/sh\n[ \"$1\" = --version ] && { echo 'Version: 3.17.1'; exit 0; }\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(criu.CriuError) as ei:
        criu.version(str(fake))
    msg = str(ei.value)
    assert "3.17.1" in msg and "needs CRIU >=" in msg and "\n" not in msg


def test_one_line_drops_noise():
    text = "Error (criu/util.c:1533): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted\n" \
           "Error (x.c:1): the reason\n"
    assert criu.one_line(text) == "Error (x.c:1): the reason"
