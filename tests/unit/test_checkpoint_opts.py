"""Every checkpoint/restore flag lands in its CRIU RPC field (criu_opts), as runc sets it."""
import pytest

from ociruntime import cli, criu
from ociruntime.errors import OciError
from ociruntime.lifecycle import checkpoint as ck


class Ctx:
    def __init__(self, cmd, argv):
        spec = {**cli.COMMANDS[cmd][2]}
        self.flags, self.args = cli.parse_flags(argv, spec, True)
        self.g = {}

    def flag(self, name, default=None):
        return self.flags.get(name, default)


def opts_for(cmd, *argv):
    o = criu.messages()["criu_opts"]()
    ck._common_opts(Ctx(cmd, list(argv) + ["id"]), o)
    return o


@pytest.mark.parametrize("cmd", ["checkpoint", "restore"])
def test_bool_flags(cmd):
    o = opts_for(cmd)
    assert not (o.tcp_established or o.ext_unix_sk or o.shell_job or o.file_locks or o.auto_dedup or o.lazy_pages)
    # runc's fixed choices
    assert o.manage_cgroups and o.notify_scripts and o.orphan_pts_master and o.log_level == 4
    assert o.empty_ns == 0x40000000  # the network namespace, always (runc setEmptyNsMask)
    assert not o.HasField("manage_cgroups_mode")
    o = opts_for(cmd, "--tcp-established", "--ext-unix-sk", "--shell-job", "--file-locks", "--auto-dedup",
                 "--lazy-pages")
    assert o.tcp_established and o.ext_unix_sk and o.shell_job and o.file_locks and o.auto_dedup and o.lazy_pages


@pytest.mark.parametrize("mode,num", [("soft", 3), ("full", 4), ("strict", 5), ("ignore", 0)])
def test_manage_cgroups_mode(mode, num):
    assert opts_for("checkpoint", "--manage-cgroups-mode", mode).manage_cgroups_mode == num


def test_empty_ns():
    o = opts_for("restore", "--empty-ns", "ipc", "--empty-ns", "uts")
    assert o.empty_ns == 0x40000000 | 0x08000000 | 0x04000000
    with pytest.raises(OciError, match="not supported"):
        opts_for("checkpoint", "--empty-ns", "bogus")


def test_page_server_and_status_fd():
    assert ck._page_server("10.0.0.2:27001") == ("10.0.0.2", 27001)
    assert ck._page_server("[fd00::2]:27001") == ("fd00::2", 27001)
    for bad in ("nocolon", ":1", "a:0", "a:x"):
        with pytest.raises(OciError, match="ADDRESS:PORT"):
            ck._page_server(bad)
    assert ck._status_fd(-1) == -1
    with pytest.raises(OciError, match="invalid --status-fd argument 987"):
        ck._status_fd(987)


def test_ext_mounts_dump_and_restore():
    config = {"mounts": [{"destination": "/data", "type": "bind", "source": "/srv/data", "options": ["rbind"]},
                         {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup"},
                         {"destination": "/proc", "type": "proc", "source": "proc"}],
              "linux": {"maskedPaths": ["/proc/kcore"], "devices": [{"path": "/dev/fuse", "type": "c"}],
                        "namespaces": [{"type": "mount"}]}}
    paths = {"memory": "/sys/fs/cgroup/memory/x", "": "/sys/fs/cgroup/unified/x"}
    dump = dict(ck._ext_mounts({**config, "_pid": 1}, paths, restore=False))
    assert dump["/data"] == "/data" and dump["/sys/fs/cgroup/memory"] == "/sys/fs/cgroup/memory"
    assert dump["/dev/fuse"] == "/dev/fuse" and "/proc" not in dump
    rest = dict(ck._ext_mounts(config, paths, restore=True))
    assert rest["/data"] == "/srv/data" and rest["/sys/fs/cgroup/memory"] == "/sys/fs/cgroup/memory/x"
    assert rest["/dev/null"] == "/dev/null"
    # pure v2: the cgroup mount is a fresh cgroup2 (runc mountCgroupV2), a real mount CRIU dumps, never external
    v2 = {"": "/sys/fs/cgroup/x"}
    for restore in (False, True):
        ext = dict(ck._ext_mounts({**config, "_pid": 1}, v2, restore=restore))
        assert not any(k.startswith("/sys/fs/cgroup") for k in ext) and "/data" in ext, ext
