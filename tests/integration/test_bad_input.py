"""security.md §3: every class of bad input (#1-#34) is rejected with ONE clear error line that names
the field and the reason, and leaves nothing behind (no state dir or tombstone, mount, cgroup, init
process or exec.fifo; runtime.md: "as if the operation were never attempted"). The classes about
existing containers (#23-#29) check runc's documented behaviour (cli-contract.md §6.2, §6.6, §6.7).

Runs the real CLI as root, each test with a private --root and unique container ids.
"""

import json
import os
import re
import signal
import stat
import subprocess
import threading
import time

import pytest

from _util import (base_spec, cgroup_dirs_named, kill_pid, own_fd_of_ls, parse_ls_fds, pid_alive, pid_state,
                   place_fds, proc_fds, read_core_pattern, wait_for)
from _util import env, rootfs_template, _subreaper  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.timeout(30)]


def create_fails(env, b, *fragments, cid=None, extra=(), snap_paths=(), cgroup_names=(), **kw):
    """create must fail with one error line containing every fragment, and leave nothing behind."""
    cid = cid or env.new_id()
    snap = env.snapshot(cid, paths=snap_paths, cgroup_names=cgroup_names)
    r = env.rt("create", "--bundle", b.path if hasattr(b, "path") else b, *extra, cid, **kw)
    assert r.rc != 0, r
    assert "Traceback" not in r.stderr, r
    msg = r.error_msg()
    for frag in fragments:
        if isinstance(frag, re.Pattern):
            assert frag.search(msg), f"{frag.pattern!r} not in {msg!r}"
        else:
            assert frag in msg, f"{frag!r} not in {msg!r}"
    snap.assert_clean()
    return msg


def no_traceback(r):
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r
    assert len(r.stderr.splitlines()) <= 1, r


# ------------------------------------------------------------------------------ the checker itself

def test_00_leftover_check_sees_a_live_container(env):
    """Self-test of HostSnapshot: a container that does exist is reported on every axis."""
    b = env.bundle()
    cid = env.new_id()
    snap = env.snapshot(cid)
    env.rt("create", "--bundle", b.path, cid).check()
    probs = "\n".join(snap.problems(settle=0))
    assert f"state dir {cid} still exists" in probs, probs
    assert "exec.fifo left" in probs, probs
    assert "container init processes left" in probs, probs
    assert f"/{cid}" in probs and "cgroup left" in probs, probs
    env.rt("delete", "--force", cid).check()
    snap.assert_clean()


# ------------------------------------------------------------------------------ #1 bundle

def test_01_bundle_missing(env):
    missing = os.path.join(env.tmp, "no-such-bundle")
    create_fails(env, missing, missing, "no such directory")
    assert not os.path.exists(missing)


def test_01_bundle_is_a_file(env):
    f = os.path.join(env.tmp, "file-bundle")
    open(f, "w").close()
    create_fails(env, f, f, "no such directory")


# ------------------------------------------------------------------------------ #2 config.json

def test_02_config_missing(env):
    b = env.bundle(rootfs="empty")
    os.unlink(b.config)
    create_fails(env, b, "config.json", "not found")


@pytest.mark.parametrize("kind", ["directory", "fifo", "dangling-symlink"])
def test_02_config_not_a_regular_file(env, kind):
    b = env.bundle(rootfs="empty")
    os.unlink(b.config)
    if kind == "directory":
        os.mkdir(b.config)
        create_fails(env, b, "config.json", "not a regular file")
    elif kind == "fifo":
        os.mkfifo(b.config)  # must not block waiting for a writer
        create_fails(env, b, "config.json", "not a regular file")
    else:
        os.symlink(os.path.join(env.tmp, "nowhere.json"), b.config)
        create_fails(env, b, "config.json", "not found")


# ------------------------------------------------------------------------------ #3 malformed JSON

FASTJSON_BUG = ("BUG: fastjson.loads/loads_with (CPython 3.11): the _json C scanner raises errors via "
                "raise_errmsg, which only looks json.decoder up in sys.modules; as fastjson avoids importing "
                "json, an unterminated string or a missing ':' gives SystemError ('returned NULL without "
                "setting an exception') instead of ValueError -> traceback. Catch SystemError (or import "
                "json.decoder first) and raise ValueError")

MALFORMED = [
    ("truncated", b'{"ociVersion": "1.0.0",\n "root": {"path": "rootfs"', re.compile(r"line 2 column \d+"), FASTJSON_BUG),
    ("unterminated-string", b'{"ociVersion": "1.0.0', re.compile(r"line 1 column \d+"), FASTJSON_BUG),
    ("missing-colon", b'{"ociVersion" "1.0.0"}', re.compile(r"line 1 column 15"), FASTJSON_BUG),
    ("non-utf8", b'{"ociVersion": "1.0.\xff"}', re.compile(r"invalid UTF-8 at line 1 column 21"), None),
    ("trailing-garbage", b'{"ociVersion": "1.0.0"} trailing', re.compile(r"Extra data at line 1 column 25"), None),
    ("bom", b'\xef\xbb\xbf{"ociVersion": "1.0.0"}', "byte order mark", None),
    ("empty", b'', re.compile(r"line 1 column 1"), None),
]


@pytest.mark.parametrize("name,data,frag,bug", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_03_malformed_json(env, request, name, data, frag, bug):
    b = env.bundle(rootfs="empty")
    b.write_raw(data)
    create_fails(env, b, "config.json", "invalid", frag)


# ------------------------------------------------------------------------------ #4 dup keys, NaN, 1e400

@pytest.mark.parametrize("token,frag", [
    ("NaN", "NaN is not a valid JSON number"),
    ("Infinity", "Infinity is not a valid JSON number"),
    ("-Infinity", "Infinity is not a valid JSON number"),
    ("1e400", "out of range"),
])
def test_04_non_finite_numbers(env, token, frag):
    b = env.bundle(rootfs="empty")
    spec = base_spec()
    spec["process"]["oomScoreAdj"] = 987654
    b.write_raw(json.dumps(spec).replace("987654", token))
    create_fails(env, b, "/process/oomScoreAdj", frag)


def test_04_duplicate_key(env):
    b = env.bundle(rootfs="empty")
    text = json.dumps(base_spec())
    text = text.replace('"cwd": "/"', '"cwd": "/", "cwd": "/tmp"', 1)
    b.write_raw(text)
    create_fails(env, b, "/process/cwd", "duplicate key")


# ------------------------------------------------------------------------------ #5 huge / deep

def test_05_huge_config(env):
    b = env.bundle(rootfs="empty")
    with open(b.config, "wb") as f:
        f.truncate(17 * 1024 * 1024)  # sparse: cheap, and over the 16 MiB cap
    create_fails(env, b, "config.json", "larger than")


def test_05_deep_nesting(env):
    b = env.bundle(rootfs="empty")
    depth = 200000
    b.write_raw('{"ociVersion": "1.0.0", "annotations": ' + "[" * depth + "]" * depth + "}")
    create_fails(env, b, "config.json", "nesting is too deep")


# ------------------------------------------------------------------------------ #6 schema

def _del(path):
    def f(spec):
        d = spec
        for k in path[:-1]:
            d = d[k]
        del d[path[-1]]
    return f


def _set(path, value):
    def f(spec):
        d = spec
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return f


@pytest.mark.parametrize("mutate,frags", [
    (_set(("process", "args"), "sh -c true"), ["/process/args"]),
    (_del(("ociVersion",)), ["ociVersion"]),
    (_del(("root", "path")), ["/root", "path"]),
    (_set(("process", "user", "uid"), 2 ** 32), ["/process/user/uid"]),
    (_set(("linux", "namespaces"), [{"type": "pid"}, {"type": "bogus"}]), ["/linux/namespaces/1/type"]),
], ids=["args-string", "no-ociVersion", "no-root-path", "uid-2^32", "ns-type"])
def test_06_schema_violation(env, mutate, frags):
    b = env.bundle(rootfs="empty", mutate=mutate)
    create_fails(env, b, "config.json", *frags)


# ------------------------------------------------------------------------------ #7 ociVersion

@pytest.mark.parametrize("version", ["2.0.0", "0.9.0"])
def test_07_oci_version(env, version):
    b = env.bundle(rootfs="empty", mutate=_set(("ociVersion",), version))
    create_fails(env, b, "/ociVersion", version, "unsupported")


# ------------------------------------------------------------------------------ #8 container id

@pytest.mark.parametrize("cid", [".", "..", "../x", "a/b", "foo bar", "tab\tid", "ctl\x01id", "nl\nid", "a:b"], ids=repr)
def test_08_invalid_id(env, cid):
    env.ids.append(cid)  # should it be accepted after all, the finalizer deletes it
    b = env.bundle(rootfs="empty")
    snap = env.snapshot()
    r = env.rt("create", "--bundle", b.path, "--", cid)
    assert r.rc != 0, r
    assert "invalid container ID format" in r.error_msg()
    snap.assert_clean()
    assert os.listdir(env.root) == []
    assert not os.path.exists(os.path.join(env.tmp, "x"))


def test_08_empty_id(env):
    b = env.bundle(rootfs="empty")
    snap = env.snapshot()
    r = env.rt("create", "--bundle", b.path, "")
    assert r.rc != 0
    assert "container id cannot be empty" in r.error_msg()
    snap.assert_clean()


@pytest.mark.parametrize("cmd", [("state",), ("kill",), ("delete",), ("delete", "--force"), ("start",)])
def test_08_invalid_id_on_every_command(env, cmd):
    outside = env.mkdir("victim")
    open(os.path.join(outside, "keep"), "w").close()
    r = env.rt(*cmd, "../victim")
    assert r.rc != 0, r
    assert "invalid container ID format" in r.error_msg()
    assert os.path.exists(os.path.join(outside, "keep"))


def test_08_trailing_newline_id(env):
    """re.match(r"^...$") would accept "abc\\n" ($ matches before a final newline)."""
    b = env.bundle()
    cid = env.new_id() + "\n"
    env.ids.append(cid)
    create_fails(env, b, "invalid container ID format", cid=cid)


def test_08_overlong_id(env):
    b = env.bundle()
    cid = "a" * 300
    env.ids.append(cid)
    create_fails(env, b, "invalid container ID", cid=cid)


def test_08_leading_dot_id_is_rejected_or_listed(env):
    """runc accepts ".foo"; if we do, `list` must show it (dot names are not reserved for tombstones)."""
    b = env.bundle()
    cid = "." + env.new_id()
    env.ids.append(cid)
    r = env.rt("create", "--bundle", b.path, cid)
    if r.rc != 0:
        assert "invalid container ID" in r.error_msg()
        return
    listed = env.rt("list", "-q").stdout.split()
    assert cid in listed, "container created but not listed"


# ------------------------------------------------------------------------------ #9 duplicate id

def test_09_duplicate_id(env):
    b = env.bundle()
    cid = env.created(b)
    before = env.rt.state(cid)
    fifo = os.path.join(env.root, cid, "exec.fifo")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    b2 = env.bundle()
    snap = env.snapshot()  # nothing new may appear; the winner must stay untouched
    r = env.rt("create", "--bundle", b2.path, cid)
    assert r.rc != 0
    assert "container with given ID already exists" in r.error_msg()
    snap.assert_clean()
    after = env.rt.state(cid)
    assert after == before and after["status"] == "created"
    assert pid_alive(after["pid"]) and os.path.exists(fifo)


# ------------------------------------------------------------------------------ #10 root.path

def test_10_rootfs_missing(env):
    b = env.bundle(rootfs=None)
    create_fails(env, b, "/root/path", "does not exist")


def test_10_rootfs_is_a_file(env):
    b = env.bundle(rootfs=None)
    open(b.rootfs, "w").close()
    create_fails(env, b, "/root/path", "not a directory")


def test_10_rootfs_is_a_symlink(env):
    b = env.bundle()
    os.rename(b.rootfs, os.path.join(b.path, "real"))
    os.symlink("real", b.rootfs)
    create_fails(env, b, "/root/path", "symlink")


def test_10_rootfs_symlink_component(env):
    b = env.bundle(rootfs="empty")
    os.symlink(".", os.path.join(b.path, "link"))
    b.spec["root"]["path"] = "link/rootfs"
    b.write()
    create_fails(env, b, "/root/path", "symlink")


def test_10_rootfs_relative_escape(env):
    b = env.bundle(rootfs="empty")
    b.spec["root"]["path"] = "../" + os.path.basename(b.path) + "/rootfs/../../.."
    b.write()
    create_fails(env, b, "/root/path", "escapes the bundle")


# ------------------------------------------------------------------------------ #11 mount destination

@pytest.mark.parametrize("dest,frag", [
    ("tmp/rel", "must be an absolute path"),
    ("/tmp/../../../../escape", "'..'"),
    ("../../../../escape", "must be an absolute path"),
])
def test_11_mount_destination(env, dest, frag):
    b = env.bundle(rootfs="empty")
    b.spec["mounts"].append({"destination": dest, "type": "tmpfs", "source": "tmpfs"})
    b.write()
    n = len(b.spec["mounts"]) - 1
    create_fails(env, b, f"/mounts/{n}/destination", frag)
    assert not os.path.exists("/escape") or os.path.getmtime("/escape") < time.time() - 60


# ------------------------------------------------------------------------------ #12 /proc and /sys

@pytest.mark.parametrize("which", ["proc", "sys"])
def test_12_proc_or_sys_symlink_in_rootfs(env, which):
    b = env.bundle()
    os.rmdir(os.path.join(b.rootfs, which))
    os.symlink("/", os.path.join(b.rootfs, which))
    create_fails(env, b, f"/{which}", re.compile("[Ss]ymbolic link|symlink"))


def test_12_proc_non_procfs(env):
    b = env.bundle(rootfs="empty")
    b.spec["mounts"][0] = {"destination": "/proc", "type": "tmpfs", "source": "tmpfs"}
    b.write()
    create_fails(env, b, "/mounts/0/type", "proc")


def test_12_proc_bind_of_other_dir(env):
    b = env.bundle(rootfs="empty")
    src = env.mkdir("fakeproc")
    b.spec["mounts"][0] = {"destination": "/proc", "type": "bind", "source": src, "options": ["rbind"]}
    b.write()
    create_fails(env, b, "/mounts/0/type", "proc")


@pytest.mark.parametrize("dest", ["/proc/sys", "/proc/sysrq-trigger", "/proc/self/attr", "/proc//sys/kernel"])
def test_12_mount_inside_proc(env, dest):
    b = env.bundle(rootfs="empty")
    b.spec["mounts"].append({"destination": dest, "type": "tmpfs", "source": "tmpfs"})
    b.write()
    n = len(b.spec["mounts"]) - 1
    create_fails(env, b, f"/mounts/{n}/destination", "/proc")


def test_12_lxcfs_proc_files_allowed(env):
    """runc checkProcMount's allow-list (lxcfs) stays usable."""
    b = env.bundle(args=("cat", "/proc/uptime"))
    src = os.path.join(env.tmp, "uptime")
    with open(src, "w") as f:
        f.write("4242.00 1.00\n")
    b.spec["mounts"].append({"destination": "/proc/uptime", "type": "bind", "source": src, "options": ["bind"]})
    b.write()
    out = os.path.join(env.tmp, "out")
    with open(out, "wb") as f:
        cid = env.created(b, stdout=f)
    env.rt("start", cid).check()
    assert env.wait_stopped(cid)
    assert open(out).read() == "4242.00 1.00\n"


# ------------------------------------------------------------------------------ #13 /dev in the image

def _no_dev_tmpfs(spec):
    spec["mounts"] = [m for m in spec["mounts"] if m["destination"] not in ("/dev",)]


@pytest.mark.parametrize("kind", ["symlink-to-host-file", "regular-file", "symlink-to-proc"])
def test_13_fake_dev_null(env, kind):
    """Without a /dev tmpfs the image's /dev/null is used for maskedPaths: it must be the real 1:3."""
    b = env.bundle(mutate=_no_dev_tmpfs)
    host = os.path.join(env.outside_dir(), "victim")
    with open(host, "w") as f:
        f.write("HOST")
    devnull = os.path.join(b.rootfs, "dev", "null")
    if kind == "symlink-to-host-file":
        os.symlink(host, devnull)
    elif kind == "regular-file":
        open(devnull, "w").close()
    else:
        os.symlink("/proc/sys/kernel/core_pattern", devnull)
    core = read_core_pattern()
    create_fails(env, b, "/dev/null", "null device")
    assert open(host).read() == "HOST"
    assert read_core_pattern() == core


# ------------------------------------------------------------------------------ #14 bind source

def test_14_bind_source_missing(env):
    b = env.bundle(rootfs="empty")
    src = os.path.join(env.tmp, "missing-src")
    b.spec["mounts"].append({"destination": "/data", "type": "bind", "source": src, "options": ["rbind"]})
    b.write()
    n = len(b.spec["mounts"]) - 1
    create_fails(env, b, f"/mounts/{n}/source", src, "does not exist")
    assert not os.path.exists(src)


# ------------------------------------------------------------------------------ #15 mount options

def test_15_unknown_option_is_mount_data(env):
    """Documented choice (validate.py): unknown options go to the filesystem as data; tmpfs refuses
    them, so create fails naming the mount."""
    b = env.bundle()
    b.spec["mounts"].append({"destination": "/data", "type": "tmpfs", "source": "tmpfs",
                             "options": ["nosuid", "no_such_option=1"]})
    b.write()
    create_fails(env, b, "/data", "no_such_option", "invalid argument")


def test_15_contradictory_ro_rw_last_wins(env):
    b = env.bundle(args=("sh", "-c", "touch /data/ok && echo WROTE"))
    b.spec["mounts"].append({"destination": "/data", "type": "tmpfs", "source": "tmpfs",
                             "options": ["ro", "rw"]})
    b.write()
    out = os.path.join(env.tmp, "out")
    with open(out, "wb") as f:
        cid = env.created(b, stdout=f)
    env.rt("start", cid).check()
    assert env.wait_stopped(cid)
    assert "WROTE" in open(out).read()


# ------------------------------------------------------------------------------ #16 namespaces

NS_CASES = [
    ("dup-type", lambda s: s["linux"]["namespaces"].append({"type": "pid"}), ["/linux/namespaces/6/type",
                                                                             "duplicate"]),
    ("dup-type-with-path", lambda s: s["linux"]["namespaces"].append({"type": "network",
                                                                      "path": "/proc/self/ns/net"}),
     ["/linux/namespaces/6/type", "duplicate"]),
    ("userns-no-maps", lambda s: s["linux"]["namespaces"].append({"type": "user"}),
     ["/linux/namespaces/6", "uidMappings"]),
    ("maps-no-userns", lambda s: s["linux"].update(uidMappings=[{"containerID": 0, "hostID": 100000,
                                                                 "size": 10}]), ["/linux/uidMappings", "user"]),
    ("maps-overlap", lambda s: (s["linux"]["namespaces"].append({"type": "user"}), s["linux"].update(
        uidMappings=[{"containerID": 0, "hostID": 100000, "size": 10},
                     {"containerID": 5, "hostID": 200000, "size": 10}],
        gidMappings=[{"containerID": 0, "hostID": 100000, "size": 10}])), ["/linux/uidMappings/1", "overlap"]),
    ("maps-overflow", lambda s: (s["linux"]["namespaces"].append({"type": "user"}), s["linux"].update(
        uidMappings=[{"containerID": 0, "hostID": 4294967000, "size": 1000}],
        gidMappings=[{"containerID": 0, "hostID": 100000, "size": 10}])), ["/linux/uidMappings/0", "overflow"]),
]


@pytest.mark.parametrize("name,mutate,frags", NS_CASES, ids=[c[0] for c in NS_CASES])
def test_16_namespaces(env, name, mutate, frags):
    b = env.bundle(rootfs="empty", mutate=mutate)
    create_fails(env, b, *frags)


# ------------------------------------------------------------------------------ #17 namespace path

def test_17_ns_path_not_nsfs(env):
    f = os.path.join(env.tmp, "not-a-ns")
    open(f, "w").close()
    b = env.bundle()
    b.spec["linux"]["namespaces"] = [n for n in b.spec["linux"]["namespaces"] if n["type"] != "ipc"] + \
        [{"type": "ipc", "path": f}]
    b.write()
    create_fails(env, b, f, "not a namespace")


def test_17_ns_path_wrong_type(env):
    b = env.bundle()
    b.spec["linux"]["namespaces"] = [n for n in b.spec["linux"]["namespaces"] if n["type"] != "ipc"] + \
        [{"type": "ipc", "path": "/proc/self/ns/uts"}]
    b.write()
    create_fails(env, b, "/proc/self/ns/uts", "not a ipc namespace")


def test_17_ns_path_missing(env):
    b = env.bundle()
    p = os.path.join(env.tmp, "no-such-ns")
    b.spec["linux"]["namespaces"] = [n for n in b.spec["linux"]["namespaces"] if n["type"] != "uts"] + \
        [{"type": "uts", "path": p}]
    b.write()
    create_fails(env, b, p, "no such file")


# ------------------------------------------------------------------------------ #18 sysctls

def _host_sysctl(name):
    with open("/proc/sys/" + name.replace(".", "/")) as f:
        return f.read().strip()


@pytest.mark.parametrize("name,drop_ns,frag", [
    ("kernel.core_pattern", None, "not namespaced"),
    ("vm.overcommit_memory", None, "not namespaced"),
    ("net.ipv4.ip_forward", "network", "network namespace"),
    ("kernel.shmmax", "ipc", "ipc namespace"),
    ("kernel.domainname", "uts", "uts namespace"),
])
def test_18_sysctl_not_namespaced(env, name, drop_ns, frag):
    # the value is the host's current one: even a buggy runtime could not change the host
    value = _host_sysctl(name)

    def mutate(s):
        s["linux"]["sysctl"] = {name: value}
        if drop_ns:
            s["linux"]["namespaces"] = [n for n in s["linux"]["namespaces"] if n["type"] != drop_ns]
            if drop_ns == "uts":
                del s["hostname"]
    b = env.bundle(rootfs="empty", mutate=mutate)
    create_fails(env, b, f"/linux/sysctl/{name}", frag)
    assert _host_sysctl(name) == value


# ------------------------------------------------------------------------------ #19 caps, rlimits, oom

@pytest.mark.parametrize("mutate,frags", [
    (lambda s: s["process"]["capabilities"]["bounding"].append("CAP_FOO"), ["/process/capabilities/bounding/3",
                                                                            "CAP_FOO"]),
    (lambda s: s["process"]["capabilities"].update(ambient=["cap_kill"]), ["/process/capabilities/ambient/0"]),
    (lambda s: s["process"]["rlimits"].append({"type": "RLIMIT_FOO", "soft": 1, "hard": 1}),
     ["/process/rlimits/1/type", "RLIMIT_FOO"]),
    (lambda s: s["process"]["rlimits"].append({"type": "RLIMIT_CORE", "soft": 10, "hard": 1}),
     ["/process/rlimits/1/soft", "greater than"]),
    (lambda s: s["process"]["rlimits"].append({"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1}),
     ["/process/rlimits/1/type", "duplicate rlimit type 'RLIMIT_NOFILE' (also at index 0)"]),
    (lambda s: s["process"]["rlimits"].append({"type": "RLIMIT_CORE", "soft": 1}),
     ["/process/rlimits/1", "hard"]),
    (lambda s: s["process"]["rlimits"].append({"type": "RLIMIT_CORE", "soft": -1, "hard": 1}),
     ["/process/rlimits/1/soft"]),
    (lambda s: s["process"].update(oomScoreAdj=1001), ["/process/oomScoreAdj", "1001"]),
    (lambda s: s["process"].update(oomScoreAdj=-1001), ["/process/oomScoreAdj", "-1001"]),
], ids=["unknown-cap", "lowercase-cap", "unknown-rlimit", "soft>hard", "duplicate-rlimit", "rlimit-no-hard",
        "rlimit-negative", "oom>1000", "oom<-1000"])
def test_19_caps_rlimits_oom(env, mutate, frags):
    b = env.bundle(rootfs="empty", mutate=mutate)
    create_fails(env, b, *frags)


def test_19_rlimit_the_kernel_refuses(env):
    """A hard RLIMIT_NOFILE above fs.nr_open passes every static check; setrlimit fails in the init:
    one line naming the limit and the values, nothing left behind."""
    with open("/proc/sys/fs/nr_open") as f:
        too_many = int(f.read()) + 1
    b = env.bundle(mutate=lambda s: s["process"].update(rlimits=[{"type": "RLIMIT_NOFILE", "soft": 1024,
                                                                  "hard": too_many}]))
    create_fails(env, b, "error setting rlimit type 7", f"RLIMIT_NOFILE soft 1024 hard {too_many}")


# ------------------------------------------------------------------------------ #19b process attributes

def _proc(**kw):
    return lambda s: s["process"].update(kw)


def _linux(**kw):
    return lambda s: s["linux"].update(kw)


@pytest.mark.parametrize("mutate,frags", [
    (_proc(scheduler={"policy": "SCHED_ISO"}),
     ["/process/scheduler/policy", "SCHED_ISO is not implemented by Linux"]),
    (_proc(scheduler={"policy": "SCHED_FIFO", "priority": 0}), ["/process/scheduler/priority", "[1, 99]"]),
    (_proc(scheduler={"policy": "SCHED_OTHER", "nice": -21}), ["/process/scheduler/nice", "[-20, 19]"]),
    (_proc(scheduler={"policy": "SCHED_OTHER", "flags": ["SCHED_FLAG_NOPE"]}), ["/process/scheduler/flags/0"]),
    (_proc(scheduler={"policy": "SCHED_DEADLINE", "runtime": 10, "deadline": 100}),
     ["/process/scheduler/runtime", "minimum of 1024"]),
    (_proc(scheduler={"nice": 1}), ["/process/scheduler", "policy"]),
    (_proc(ioPriority={"class": "IOPRIO_CLASS_NONE", "priority": 0}), ["/process/ioPriority/class"]),
    (_proc(ioPriority={"class": "IOPRIO_CLASS_BE", "priority": 8}), ["/process/ioPriority/priority"]),
    (_proc(execCPUAffinity={"initial": "0-3,x"}), ["/process/execCPUAffinity/initial",
                                                    "is not a list of numbers and ranges such as \"0-3,7\""]),
    (_proc(execCPUAffinity={"final": "5-2"}), ["/process/execCPUAffinity/final", "ends before it starts"]),
    (_proc(commandLine="cmd /c dir"), ["/process/commandLine", "Windows-only", "not applicable on Linux"]),
    (_linux(personality={"domain": "LINUX64"}), ["/linux/personality/domain"]),
    (_linux(personality={"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]}),
     ["/linux/personality/flags/0", "the runtime-spec defines none"]),
    (_linux(memoryPolicy={"mode": "MPOL_BIND"}), ["/linux/memoryPolicy/nodes", "needs at least one node"]),
    (_linux(memoryPolicy={"mode": "MPOL_DEFAULT", "nodes": "0"}), ["/linux/memoryPolicy/nodes", "takes no nodes"]),
    (_linux(memoryPolicy={"mode": "MPOL_BIND", "nodes": "0-"}),
     ["/linux/memoryPolicy/nodes", "invalid node list"]),
    (_linux(memoryPolicy={"mode": "MPOL_BIND", "nodes": "99999"}), ["/linux/memoryPolicy/nodes", "above 65535"]),
    (_linux(memoryPolicy={"mode": "MPOL_FOO", "nodes": "0"}), ["/linux/memoryPolicy/mode"]),
    (_linux(memoryPolicy={"mode": "MPOL_LOCAL", "flags": ["MPOL_F_STATIC_NODES"]}),
     ["/linux/memoryPolicy/flags/0", "needs nodes"]),
    (_linux(memoryPolicy={"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES",
                                                                      "MPOL_F_RELATIVE_NODES"]}),
     ["/linux/memoryPolicy/flags/0", "exclude each other"]),
    (_linux(memoryPolicy={"mode": "MPOL_PREFERRED", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]}),
     ["/linux/memoryPolicy/flags/0", "MPOL_BIND or MPOL_PREFERRED_MANY"]),
], ids=["sched-iso", "fifo-prio-0", "nice-21", "sched-flag", "dl-runtime", "sched-no-policy", "ioprio-class",
        "ioprio-8", "affinity-syntax", "affinity-range", "commandLine", "personality-domain", "personality-flag",
        "mpol-bind-no-nodes", "mpol-default-nodes", "mpol-nodes-syntax", "mpol-node-huge", "mpol-mode",
        "mpol-local-static", "mpol-static-relative", "mpol-balancing"])
def test_19b_process_attributes(env, mutate, frags):
    b = env.bundle(rootfs="empty", mutate=mutate)
    create_fails(env, b, *frags)


# ------------------------------------------------------------------------------ #20 process

def test_20_no_process(env):
    b = env.bundle(rootfs="empty", mutate=_del(("process",)))
    create_fails(env, b, "/process", "required")


def test_20_empty_args(env):
    b = env.bundle(args=(), rootfs="empty")
    create_fails(env, b, "/process/args")


# ------------------------------------------------------------------------------ #21 args[0]

@pytest.mark.parametrize("arg0,frags", [
    ("no-such-binary", ['"no-such-binary"', "executable file not found in $PATH"]),
    ("/bin/no-such-binary", ['"/bin/no-such-binary"', "no such file or directory"]),
    ("/etc/passwd", ['"/etc/passwd"', "ermission denied"]),
    ("/tmp", ['"/tmp"', "directory"]),
])
def test_21_args0_not_executable(env, arg0, frags):
    b = env.bundle(args=(arg0,))
    create_fails(env, b, *frags)


# ------------------------------------------------------------------------------ #22 cwd

def test_22_cwd_relative(env):
    b = env.bundle(rootfs="empty", mutate=_set(("process", "cwd"), "tmp"))
    create_fails(env, b, "/process/cwd", "absolute")


def test_22_cwd_is_a_file(env):
    b = env.bundle(mutate=_set(("process", "cwd"), "/etc/passwd"))
    create_fails(env, b, "/etc/passwd", re.compile("not a directory|file exists", re.I))


def test_22_cwd_missing_is_created_inside_the_rootfs(env):
    outside = env.outside_dir(base="/tmp")  # a path that lies on the rootfs itself inside the container
    cwd = "/../../../.." + outside + "/newcwd"
    b = env.bundle(args=("pwd",), mutate=_set(("process", "cwd"), cwd))
    out = os.path.join(env.tmp, "out")
    with open(out, "wb") as f:
        cid = env.created(b, stdout=f)
    env.rt("start", cid).check()
    assert env.wait_stopped(cid)
    assert open(out).read().strip() == outside + "/newcwd"
    assert os.listdir(outside) == [], "cwd was created on the host"
    assert os.path.isdir(os.path.join(b.rootfs, outside.lstrip("/"), "newcwd"))


# ------------------------------------------------------------------------------ #23 signals

BAD_SIGNALS = ["SIGFOO", "-1", "0x9", "65", "RTMIN+99", "RTMAX-31", "", "SIG", "9999999999999", "KILL9", "sig kill"]


def test_23_invalid_signal(env):
    b = env.bundle()
    cid = env.created(b)
    pid = env.rt.init_pid(cid)
    for sig in BAD_SIGNALS:
        r = env.rt("kill", cid, "--", sig)
        assert r.rc != 0, r
        assert r.error_msg() == f'unknown signal "{sig}"'
    assert env.rt.status(cid) == "created" and env.rt.init_pid(cid) == pid and pid_alive(pid)


# ------------------------------------------------------------------------------ #24 kill on stopped / missing

def _stopped(env, b=None):
    b = b or env.bundle(args=("true",))
    cid = env.created(b)
    env.rt("start", cid).check()
    assert env.wait_stopped(cid)
    return cid


def _spawn_victim(env):
    p = subprocess.Popen(["sleep", "60"])
    env.helper_pids.append(p.pid)
    return p


def test_24_kill_stopped(env):
    cid = _stopped(env)
    r = env.rt("kill", cid, "KILL")
    assert r.rc != 0
    assert r.error_msg() == "container not running"
    r = env.rt("kill", "--all", cid, "KILL")
    assert r.rc == 0 and r.stderr == "", r  # runc: --all turns "not running" into success


def test_24_kill_missing(env):
    r = env.rt("kill", env.new_id(), "KILL")
    assert r.rc != 0 and r.error_msg() == "container does not exist"


def test_24_kill_does_not_signal_a_reused_pid(env):
    """The saved pid now belongs to another process (pid reuse): kill must refuse, not signal it."""
    cid = _stopped(env)
    victim = _spawn_victim(env)
    path = os.path.join(env.root, cid, "state.json")
    st = json.load(open(path))
    st["pid"] = victim.pid
    with open(path, "w") as f:
        json.dump(st, f)
    assert env.rt.status(cid) == "stopped"
    for args in (("kill", cid, "KILL"), ("kill", "--all", cid, "KILL"), ("kill", cid, "TERM")):
        r = env.rt(*args)
        no_traceback(r)
    r = env.rt("kill", cid, "KILL")
    assert r.rc != 0 and r.error_msg() == "container not running"
    env.rt("delete", cid).check()
    assert victim.poll() is None and pid_alive(victim.pid), "an unrelated process was signalled"


# ------------------------------------------------------------------------------ #25 start in wrong state

def test_25_start_running(env):
    b = env.bundle()
    cid = env.running(b)
    st = env.rt.state(cid)
    r = env.rt("start", cid)
    assert r.rc != 0 and r.error_msg() == "cannot start an already running container"
    assert env.rt.state(cid) == st and pid_alive(st["pid"])


def test_25_start_stopped(env):
    cid = _stopped(env)
    r = env.rt("start", cid)
    assert r.rc != 0 and r.error_msg() == "cannot start a container that has stopped"
    assert env.rt.status(cid) == "stopped"


def test_25_start_missing(env):
    cid = env.new_id()
    snap = env.snapshot(cid)
    r = env.rt("start", cid)
    assert r.rc != 0 and r.error_msg() == "container does not exist"
    snap.assert_clean()


def test_25_start_twice(env):
    out = os.path.join(env.tmp, "out")
    b = env.bundle(args=("sh", "-c", "echo RAN; sleep 30"))
    with open(out, "wb") as f:
        cid = env.created(b, stdout=f)
    env.rt("start", cid).check()
    r = env.rt("start", cid)
    assert r.rc != 0 and r.error_msg() == "cannot start an already running container"
    assert wait_for(lambda: "RAN" in open(out).read())
    time.sleep(0.1)
    assert open(out).read().count("RAN") == 1


# ------------------------------------------------------------------------------ #26 delete of running

def test_26_delete_running_without_force(env):
    b = env.bundle()
    cid = env.running(b)
    pid = env.rt.init_pid(cid)
    r = env.rt("delete", cid)
    assert r.rc != 0
    assert r.error_msg() == f"cannot delete container {cid} that is not stopped: running"
    assert env.rt.status(cid) == "running" and pid_alive(pid)
    snap = env.snapshot(cid)
    r = env.rt("delete", "--force", cid)
    assert r.rc == 0 and r.stderr == "", r
    assert not pid_alive(pid)
    snap.assert_clean()


def test_26_delete_created_without_force_kills_it(env):
    """runc (and containerd) semantics: a created container is killed and deleted without --force."""
    b = env.bundle()
    cid = env.created(b)
    pid = env.rt.init_pid(cid)
    snap = env.snapshot(cid)
    r = env.rt("delete", cid)
    assert r.rc == 0 and r.stderr == "", r
    assert wait_for(lambda: not pid_alive(pid))
    snap.assert_clean()


# ------------------------------------------------------------------------------ #27 delete missing

def test_27_delete_missing(env):
    cid = env.new_id()
    snap = env.snapshot(cid)
    r = env.rt("delete", cid)
    assert r.rc != 0 and r.error_msg() == "container does not exist"
    r = env.rt("delete", "--force", cid)
    assert r.rc == 0 and r.stdout == "" and r.stderr == "", r
    snap.assert_clean()


def test_27_delete_missing_root(env):
    r = env.rt("delete", "--force", env.new_id(), root=os.path.join(env.tmp, "no-root"))
    assert r.rc == 0 and r.stderr == "", r
    assert not os.path.exists(os.path.join(env.tmp, "no-root"))


# ------------------------------------------------------------------------------ #28 state dir corruption

def test_28_dir_without_state_json(env):
    """A crashed create (mkdir <root>/<id> only): does not exist; delete removes it (runc delete.go)."""
    cid = env.new_id()
    os.mkdir(os.path.join(env.root, cid), 0o711)
    for args in (("state", cid), ("kill", cid, "KILL"), ("start", cid)):
        r = env.rt(*args)
        assert r.rc != 0 and r.error_msg() == "container does not exist", r
    r = env.rt("list", "--format", "json")
    assert r.rc == 0 and len(r.stderr.splitlines()) <= 1 and "Traceback" not in r.stderr, r
    assert cid not in r.stdout
    r = env.rt("delete", cid)
    assert r.rc != 0 and r.error_msg() == "container does not exist"
    assert not os.path.exists(os.path.join(env.root, cid)), "plain delete must remove the leftover dir"
    os.mkdir(os.path.join(env.root, cid), 0o711)
    snap = env.snapshot(cid)
    r = env.rt("delete", "--force", cid)
    assert r.rc == 0 and r.stderr == "", r
    snap.assert_clean()
    assert os.listdir(env.root) == []


CORRUPT = [
    ("empty", b"", None),
    ("truncated", b'{"id": "x", "pid": 12', FASTJSON_BUG),
    ("unterminated-string", b'{"id": "x', FASTJSON_BUG),
    ("missing-colon", b'{"pid" 1}', FASTJSON_BUG),
    ("not-json", b"\x00\xff garbage", None),
    ("array", b"[1, 2, 3]", None),
    ("null", b"null", None),
    ("pid-string", b'{"pid": "12"}',
     "BUG: state.init_alive compares a non-int pid with 0 (TypeError traceback in state/list/kill/delete); "
     "Container.read_state accepts any dict with a 'pid' key"),
    ("missing-keys", b'{"pid": 1}',
     "BUG: lifecycle.state_json indexes st['id'], st['bundle']... (KeyError traceback in state/list); "
     "Container.read_state must validate the schema and treat a bad one as missing"),
    ("pid-negative-float", b'{"pid": -1.5, "id": "x", "bundle": "/", "rootfs": "/", "created": "x"}', None),
]


@pytest.mark.parametrize("name,data,bug", CORRUPT, ids=[c[0] for c in CORRUPT])
def test_28_corrupt_state_json(env, request, name, data, bug):
    cid = env.new_id()
    d = os.path.join(env.root, cid)
    os.mkdir(d, 0o711)
    with open(os.path.join(d, "state.json"), "wb") as f:
        f.write(data)
    victim = _spawn_victim(env)
    for args in (("state", cid), ("list",), ("kill", cid, "KILL"), ("start", cid)):
        r = env.rt(*args)
        no_traceback(r)
        if args[0] == "list":
            assert r.rc == 0, r
        elif args[0] == "state" and r.rc == 0:
            assert json.loads(r.stdout)["status"] == "stopped"
        else:
            assert r.rc != 0, r
    snap = env.snapshot(cid)
    r = env.rt("delete", "--force", cid)
    no_traceback(r)
    assert r.rc == 0, r
    snap.assert_clean()
    assert pid_alive(victim.pid)


def test_28_state_json_symlink_not_followed(env):
    cid = env.new_id()
    target_dir = env.outside_dir()
    target = os.path.join(target_dir, "state.json")
    with open(target, "w") as f:
        json.dump({"id": cid, "pid": 1, "init_start": 0, "bundle": "/", "rootfs": "/", "created": "x"}, f)
    d = os.path.join(env.root, cid)
    os.mkdir(d, 0o711)
    os.symlink(target, os.path.join(d, "state.json"))
    r = env.rt("state", cid)
    no_traceback(r)
    assert r.rc != 0 and r.error_msg() == "container does not exist"
    r = env.rt("delete", "--force", cid)
    assert r.rc == 0, r
    assert os.path.exists(target) and not os.path.exists(d)


def test_28_container_dir_symlink_not_followed(env):
    cid = env.new_id()
    victim = env.outside_dir()
    for n in ("state.json", "exec.fifo", "keep"):
        open(os.path.join(victim, n), "w").close()
    os.symlink(victim, os.path.join(env.root, cid))
    for args in (("state", cid), ("delete", cid), ("delete", "--force", cid), ("kill", cid)):
        r = env.rt(*args)
        no_traceback(r)
    assert sorted(os.listdir(victim)) == ["exec.fifo", "keep", "state.json"]


# ------------------------------------------------------------------------------ #29 crash mid-create

def _hook_sleeping_bundle(env):
    info = os.path.join(env.tmp, "hookstate")
    hookpid = os.path.join(env.tmp, "hookpid")
    script = f"cat > {info}.tmp; mv {info}.tmp {info}; echo $$ > {hookpid}; exec sleep 20"
    b = env.bundle()
    b.spec["hooks"] = {"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", script]}]}
    b.write()
    return b, info, hookpid


def _kill_create_during_hook(env, b, info, hookpid, cid):
    p = env.rt.popen("create", "--bundle", b.path, cid)
    try:
        assert wait_for(lambda: os.path.exists(hookpid) and os.path.getsize(hookpid) > 0, timeout=10), \
            "createRuntime hook did not start"
    finally:
        kill_pid(p.pid)
    env.helper_pids.append(int(open(hookpid).read()))
    return json.load(open(info))["pid"]


def test_29_sigkilled_create_init_exits_and_delete_cleans_state(env):
    b, info, hookpid = _hook_sleeping_bundle(env)
    cid = env.new_id()
    init = _kill_create_during_hook(env, b, info, hookpid, cid)
    # the orphaned init sees EOF on its sync socket and exits by itself
    assert wait_for(lambda: not pid_alive(init), timeout=5), f"orphaned init {init} is still {pid_state(init)}"
    r = env.rt("state", cid)
    no_traceback(r)
    if r.rc == 0:
        assert json.loads(r.stdout)["status"] == "stopped"
    r = env.rt("list")
    no_traceback(r)
    assert r.rc == 0
    r = env.rt("delete", "--force", cid)
    assert r.rc == 0, r
    assert os.listdir(env.root) == []


def test_29_sigkilled_create_delete_force_cleans_everything(env):
    b, info, hookpid = _hook_sleeping_bundle(env)
    cid = env.new_id()
    snap = env.snapshot(cid)
    init = _kill_create_during_hook(env, b, info, hookpid, cid)
    assert wait_for(lambda: not pid_alive(init), timeout=5)
    r = env.rt("delete", "--force", cid)
    assert r.rc == 0, r
    snap.assert_clean()


def test_29_init_killed_while_waiting_on_fifo(env):
    b = env.bundle()
    cid = env.created(b)
    pid = env.rt.init_pid(cid)
    os.kill(pid, signal.SIGKILL)  # our container's init, by pid
    assert env.wait_stopped(cid)
    t0 = time.monotonic()
    r = env.rt("start", cid)
    assert r.rc != 0 and r.error_msg() in ("cannot start a container that has stopped",
                                           "container process is already dead")
    assert time.monotonic() - t0 < 5
    snap = env.snapshot(cid)
    r = env.rt("delete", cid)
    assert r.rc == 0, r
    snap.assert_clean()


# ------------------------------------------------------------------------------ #30 --root, --pid-file

def test_30_world_writable_root(env):
    root = env.mkdir("wwroot", 0o777)
    b = env.bundle(rootfs="empty")
    cid = env.new_id()
    env.extra_roots.append(root)
    r = env.rt("create", "--bundle", b.path, cid, root=root)
    assert r.rc != 0
    msg = r.error_msg()
    assert root in msg and "writable" in msg
    assert os.listdir(root) == []
    assert not cgroup_dirs_named([cid])


def test_30_root_owned_by_other_user(env):
    root = env.mkdir("otherroot", 0o700)
    os.chown(root, 65534, 65534)
    b = env.bundle(rootfs="empty")
    cid = env.new_id()
    env.extra_roots.append(root)
    r = env.rt("create", "--bundle", b.path, cid, root=root)
    assert r.rc != 0
    assert root in r.error_msg() and "owned" in r.error_msg()
    assert os.listdir(root) == []


def test_30_root_is_a_symlink(env):
    real = env.mkdir("realroot", 0o700)
    root = os.path.join(env.tmp, "linkroot")
    os.symlink(real, root)
    b = env.bundle(rootfs="empty")
    cid = env.new_id()
    env.extra_roots.append(root)
    r = env.rt("create", "--bundle", b.path, cid, root=root)
    assert r.rc != 0
    assert root in r.error_msg()
    assert os.listdir(real) == []


def test_30_new_root_is_private(env):
    root = os.path.join(env.tmp, "newroot", "sub")
    b = env.bundle()
    env.extra_roots.append(root)
    cid = env.new_id()
    env.rt("create", "--bundle", b.path, cid, root=root).check()
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    env.rt("delete", "--force", cid, root=root).check()


def test_30_pid_file_in_missing_dir_rolls_back(env):
    b = env.bundle()
    pidfile = os.path.join(env.tmp, "no-dir", "pid")
    create_fails(env, b, pidfile, "No such file", extra=("--pid-file", pidfile))


# ------------------------------------------------------------------------------ #31 console socket

def test_31_terminal_without_console_socket(env):
    b = env.bundle(rootfs="empty", mutate=_set(("process", "terminal"), True))
    create_fails(env, b, "console socket", "tty")


def test_31_console_socket_without_terminal(env):
    b = env.bundle(rootfs="empty")
    sock = os.path.join(env.tmp, "console.sock")
    create_fails(env, b, "console socket", extra=("--console-socket", sock))


@pytest.mark.parametrize("kind", ["missing", "regular-file"])
def test_31_console_socket_not_a_socket(env, kind):
    b = env.bundle(rootfs="empty", mutate=_set(("process", "terminal"), True))
    sock = os.path.join(env.tmp, "console.sock")
    if kind == "regular-file":
        open(sock, "w").close()
    create_fails(env, b, "console socket", sock, extra=("--console-socket", sock))


# ------------------------------------------------------------------------------ #32 hooks

def test_32_hook_path_relative(env):
    b = env.bundle(rootfs="empty")
    b.spec["hooks"] = {"prestart": [{"path": "bin/true"}]}
    b.write()
    create_fails(env, b, "/hooks/prestart/0/path", "absolute")


@pytest.mark.parametrize("kind", ["prestart", "createRuntime", "createContainer"])
def test_32_hook_not_executable(env, request, kind):
    hook = os.path.join(env.tmp, "hook.sh")
    with open(hook, "w") as f:
        f.write("#!/bin/sh\nexit 0\n")
    os.chmod(hook, 0o644)
    b = env.bundle()
    b.spec["hooks"] = {kind: [{"path": hook}]}
    b.write()
    create_fails(env, b, kind, hook, "ermission denied")


@pytest.mark.parametrize("kind", ["prestart", "createRuntime", "createContainer"])
def test_32_hook_fails(env, request, kind):
    b = env.bundle()
    b.spec["hooks"] = {kind: [{"path": "/bin/sh", "args": ["sh", "-c", "echo broken hook >&2; exit 3"]}]}
    b.write()
    create_fails(env, b, kind, "exit status 3")


@pytest.mark.parametrize("kind", ["createContainer"])  # createRuntime: test_32_hook_hangs_with_grandchild
def test_32_hook_hangs(env, kind):
    b = env.bundle()
    b.spec["hooks"] = {kind: [{"path": "/bin/sleep", "args": ["sleep", "20"], "timeout": 1}]}
    b.write()
    t0 = time.monotonic()
    create_fails(env, b, kind, "hook ran past specified timeout of 1.0s")
    assert time.monotonic() - t0 < 6


def test_32_hook_hangs_with_grandchild(env):
    """The timeout bounds create even when a grandchild keeps the hook's stderr pipe open."""
    gpid = os.path.join(env.tmp, "gpid")
    b = env.bundle()
    b.spec["hooks"] = {"createRuntime": [{"path": "/bin/sh", "timeout": 1,
                                          "args": ["sh", "-c", f"sleep 4 & echo $! > {gpid}; wait"]}]}
    b.write()
    t0 = time.monotonic()
    try:
        create_fails(env, b, "createRuntime", "hook ran past specified timeout of 1.0s")
    finally:
        if os.path.exists(gpid):
            env.helper_pids.append(int(open(gpid).read()))
    assert time.monotonic() - t0 < 3, "the hook timeout did not bound create"


def test_32_poststop_failure_is_only_a_warning(env):
    b = env.bundle(args=("true",))
    b.spec["hooks"] = {"poststop": [{"path": "/bin/false"}]}
    b.write()
    cid = env.created(b)
    snap = env.snapshot(cid)
    r = env.rt("delete", cid)
    assert r.rc == 0, r
    assert "Traceback" not in r.stderr and len(r.stderr.splitlines()) <= 1, r
    snap.assert_clean()


def test_32_poststart_failure_kills_the_container(env):
    b = env.bundle()
    b.spec["hooks"] = {"poststart": [{"path": "/bin/false"}]}
    b.write()
    cid = env.created(b)
    pid = env.rt.init_pid(cid)
    r = env.rt("start", cid)
    assert r.rc != 0
    assert "poststart" in r.error_msg()
    assert wait_for(lambda: not pid_alive(pid))
    assert env.rt.status(cid) == "stopped"


# ------------------------------------------------------------------------------ #33 existing cgroup

def _own_cgroup(hier):
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if ctrls == hier:
                return path
    return None


def test_33_cgroup_not_empty(env):
    if not os.path.isdir("/sys/fs/cgroup/pids") or _own_cgroup("pids") is None:
        pytest.skip("this host mounts no cgroup v1 pids hierarchy (or this process has no place in it)")
    cid = env.new_id()
    name = cid + "-cg"
    cg = os.path.join("/sys/fs/cgroup/pids", _own_cgroup("pids").lstrip("/"), name)
    os.mkdir(cg)
    env.cleanup_cgroups.add(cg)
    victim = _spawn_victim(env)
    with open(os.path.join(cg, "cgroup.procs"), "w") as f:
        f.write(str(victim.pid))
    b = env.bundle(mutate=lambda s: s["linux"].update(cgroupsPath=name))
    # the member leaves after 1 s: a runtime that wrongly retries rmdir of this (foreign) cgroup then
    # removes it, instead of stalling the whole suite for its 5 s retry budget
    timer = threading.Timer(1.0, kill_pid, (victim.pid,))
    timer.start()
    try:
        t0 = time.monotonic()
        create_fails(env, b, cg, "not empty", cid=cid, cgroup_names=(name,))
        elapsed = time.monotonic() - t0
    finally:
        timer.cancel()
    assert os.path.isdir(cg), "the runtime removed a cgroup it did not create"
    assert elapsed < 1.0, f"create took {elapsed:.1f}s to refuse a non-empty cgroup"


def test_33_cgroup_frozen(env):
    if not os.path.isdir("/sys/fs/cgroup/freezer") or _own_cgroup("freezer") is None:
        pytest.skip("this host mounts no cgroup v1 freezer hierarchy (or this process has no place in it)")
    cid = env.new_id()
    name = cid + "-cg"
    cg = os.path.join("/sys/fs/cgroup/freezer", _own_cgroup("freezer").lstrip("/"), name)
    os.mkdir(cg)
    env.cleanup_cgroups.add(cg)
    try:
        with open(os.path.join(cg, "freezer.state"), "w") as f:
            f.write("FROZEN")
        b = env.bundle(mutate=lambda s: s["linux"].update(cgroupsPath=name))
        create_fails(env, b, cg, "frozen", cid=cid, cgroup_names=(name,))
        assert os.path.isdir(cg), "the runtime removed a cgroup it did not create"
    finally:
        try:
            with open(os.path.join(cg, "freezer.state"), "w") as f:
                f.write("THAWED")
        except FileNotFoundError:
            pass


# ------------------------------------------------------------------------------ #34 inherited fds

@pytest.mark.parametrize("target", [None, 3, 5, 200], ids=["pass_fds", "3", "5", "200"])
def test_34_inherited_fd_does_not_reach_the_container(env, target):
    """target None: subprocess pass_fds at the fd's own number; else an inheritable copy placed at target."""
    secret = env.outside_dir("secret-")
    fd = os.open(secret, os.O_RDONLY | os.O_DIRECTORY)  # CLOEXEC in the parent; inheritable in the child
    b = env.bundle(args=("ls", "-l", "/proc/self/fd/"))
    out = os.path.join(env.tmp, "out")
    try:
        with open(out, "wb") as f:
            if target is None:
                cid = env.created(b, stdout=f, pass_fds=(fd,))
            else:
                cid = env.created(b, stdout=f, close_fds=False, preexec_fn=place_fds({target: fd}))
    finally:
        os.close(fd)
    init = env.rt.init_pid(cid)
    held = proc_fds(init)
    assert secret not in held.values(), f"the init holds the caller's fd: {held}"
    env.rt("start", cid).check()
    assert env.wait_stopped(cid)
    text = open(out).read()
    assert secret not in text, text
    fds = parse_ls_fds(text)
    extra = set(fds) - {0, 1, 2}
    assert len(extra) == 1 and extra == set(own_fd_of_ls(fds)), f"unexpected fds in the container: {fds}"
