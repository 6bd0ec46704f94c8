"""What the container process gets: hostname, env, cwd, user/groups, umask, rlimits,
capabilities, noNewPrivileges, oomScoreAdj (config.md "Process")."""

import resource

import pytest

from ociruntime.testing import parse_proc_status as proc_status
from ociruntime.testing.plugin import require_spec

pytestmark = pytest.mark.oci_root


def run_ok(rt, bundle, script):
    r = rt.run_shell(bundle, script)
    assert r.rc == 0, r.describe()
    return r.stdout


def test_hostname(oci_runtime, bundle):
    bundle.set_hostname("conformance-host")
    assert run_ok(oci_runtime, bundle, "hostname") == "conformance-host\n"


def test_domainname(oci_runtime, bundle):
    require_spec(oci_runtime, "1.1.0")
    bundle.set_domainname("example.test")
    assert run_ok(oci_runtime, bundle, "cat /proc/sys/kernel/domainname") == "example.test\n"


def test_env(oci_runtime, bundle):
    bundle.set_env("PATH=/bin:/sbin", "FOO=bar baz", "EMPTY=", "WITH_EQ=a=b", replace=True)
    out = run_ok(oci_runtime, bundle, "env")
    env = [line for line in out.splitlines() if line.split("=")[0] not in ("SHLVL", "PWD")]
    assert sorted(env) == sorted(["PATH=/bin:/sbin", "FOO=bar baz", "EMPTY=", "WITH_EQ=a=b",
                                  "HOME=/root"])


def test_home_from_passwd(oci_runtime, bundle):
    bundle.set_user(1000, 1000)
    out = run_ok(oci_runtime, bundle, 'echo "$HOME"')
    assert out == "/home/test\n"


def test_home_kept_when_set(oci_runtime, bundle):
    bundle.set_env("HOME=/custom")
    assert run_ok(oci_runtime, bundle, 'echo "$HOME"') == "/custom\n"


def test_cwd(oci_runtime, bundle):
    bundle.set_cwd("/tmp")
    assert run_ok(oci_runtime, bundle, "pwd") == "/tmp\n"


def test_cwd_is_created(oci_runtime, bundle):
    bundle.set_readonly_root(False)
    bundle.set_cwd("/new/work/dir")
    assert run_ok(oci_runtime, bundle, "pwd") == "/new/work/dir\n"


def test_args_are_exec_vector(oci_runtime, bundle):
    bundle.set_args("/bin/echo", "a b", "", "$HOME", "'q'")
    bundle.write()
    r = oci_runtime.run(None, bundle)
    assert r.rc == 0, r.describe()
    assert r.stdout == "a b  $HOME 'q'\n"


def test_args0_resolved_in_path(oci_runtime, bundle):
    bundle.set_args("echo", "found")
    bundle.write()
    r = oci_runtime.run(None, bundle)
    assert (r.rc, r.stdout) == (0, "found\n"), r.describe()


def test_missing_executable_fails_create(oci_runtime, bundle):
    bundle.set_args("no-such-binary")
    bundle.write()
    cid = oci_runtime.new_id()
    r = oci_runtime.create(cid, bundle)
    assert r.rc != 0
    assert "executable file not found" in r.output or "no such file" in r.output.lower()
    assert oci_runtime.state_result(cid).rc != 0


@pytest.mark.parametrize("uid,gid,extra", [(1000, 1000, [10, 100]), (65534, 65534, []),
                                           (0, 0, [10]), (4242, 4343, [])])
def test_user_and_groups(oci_runtime, bundle, uid, gid, extra):
    bundle.set_user(uid, gid, additional_gids=extra)
    st = proc_status(run_ok(oci_runtime, bundle, "cat /proc/$$/status"))
    assert st["Uid"] == f"{uid} {uid} {uid} {uid}"
    assert st["Gid"] == f"{gid} {gid} {gid} {gid}"
    assert st["Groups"].split() == [str(g) for g in sorted(extra)]


@pytest.mark.parametrize("umask,expected", [(None, "0022"), (0o077, "0077"), (0, "0000"),
                                            (0o027, "0027")])
def test_umask(oci_runtime, bundle, umask, expected):
    bundle.set_user(0, 0, umask=umask)
    assert run_ok(oci_runtime, bundle, "umask") == expected + "\n"


def test_rlimits(oci_runtime, bundle):
    bundle.add_rlimit("RLIMIT_NOFILE", 512, 1000)
    bundle.add_rlimit("RLIMIT_CORE", 0, 0)
    bundle.add_rlimit("RLIMIT_MSGQUEUE", 4096, 8192)
    out = run_ok(oci_runtime, bundle, "cat /proc/$$/limits")
    lines = {line[:26].strip(): line[26:].split() for line in out.splitlines()[1:]}
    assert lines["Max open files"][:2] == ["512", "1000"]
    assert lines["Max core file size"][:2] == ["0", "0"]
    assert lines["Max msgqueue size"][:2] == ["4096", "8192"]


def test_rlimit_above_hard_limit_fails_cleanly(oci_runtime, bundle):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard >= 1 << 20:
        pytest.skip("the hard RLIMIT_NOFILE here is too high to exceed")
    bundle.add_rlimit("RLIMIT_NOFILE", hard + 1, hard + 1)
    bundle.write()
    cid = oci_runtime.new_id()
    r = oci_runtime.create(cid, bundle)
    if r.rc == 0 and _can_raise_rlimits():
        pytest.skip("this process may raise hard limits (CAP_SYS_RESOURCE)")
    assert r.rc != 0, r.describe()
    assert "rlimit" in r.output.lower()
    assert oci_runtime.state_result(cid).rc != 0
    assert cid not in oci_runtime.container_dirs()


def _can_raise_rlimits():
    with open("/proc/self/status") as f:
        eff = int(proc_status(f.read())["CapEff"], 16)
    return bool(eff & (1 << 24))  # CAP_SYS_RESOURCE


def test_rlimit_soft_above_hard_fails(oci_runtime, bundle):
    bundle.add_rlimit("RLIMIT_NOFILE", 1024, 10)
    bundle.write()
    cid = oci_runtime.new_id()
    assert oci_runtime.create(cid, bundle).rc != 0
    assert oci_runtime.state_result(cid).rc != 0


CAP = {"CAP_CHOWN": 0, "CAP_KILL": 5, "CAP_NET_BIND_SERVICE": 10, "CAP_SYS_ADMIN": 21,
       "CAP_AUDIT_WRITE": 29, "CAP_SETUID": 7, "CAP_SETGID": 6}


def capmask(*names):
    return "%016x" % sum(1 << CAP[n] for n in names)


def test_default_capabilities(oci_runtime, bundle):
    st = proc_status(run_ok(oci_runtime, bundle, "cat /proc/$$/status"))
    want = capmask("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE")
    assert (st["CapBnd"], st["CapEff"], st["CapPrm"]) == (want, want, want)
    assert st["CapInh"] == "0" * 16
    assert st["CapAmb"] == "0" * 16


def test_capability_subset(oci_runtime, bundle):
    bundle.set_capabilities(["CAP_CHOWN", "CAP_KILL"])
    st = proc_status(run_ok(oci_runtime, bundle, "cat /proc/$$/status"))
    want = capmask("CAP_CHOWN", "CAP_KILL")
    assert (st["CapBnd"], st["CapEff"], st["CapPrm"]) == (want, want, want)


def test_no_capabilities(oci_runtime, bundle):
    bundle.process["capabilities"] = {"bounding": [], "effective": [], "permitted": []}
    st = proc_status(run_ok(oci_runtime, bundle, "cat /proc/$$/status"))
    assert st["CapBnd"] == st["CapEff"] == st["CapPrm"] == "0" * 16


def test_ambient_capabilities_for_non_root(oci_runtime, bundle):
    bundle.set_user(1000, 1000)
    bundle.set_capabilities(["CAP_NET_BIND_SERVICE"],
                            sets=("bounding", "effective", "permitted", "inheritable", "ambient"))
    st = proc_status(run_ok(oci_runtime, bundle, "cat /proc/$$/status"))
    want = capmask("CAP_NET_BIND_SERVICE")
    assert st["CapAmb"] == want
    assert st["CapEff"] == want
    assert st["CapBnd"] == want


def test_non_root_loses_caps_without_ambient(oci_runtime, bundle):
    bundle.set_user(1000, 1000)
    bundle.set_capabilities(["CAP_KILL"])
    st = proc_status(run_ok(oci_runtime, bundle, "cat /proc/$$/status"))
    assert st["CapEff"] == "0" * 16
    assert st["CapBnd"] == capmask("CAP_KILL")


@pytest.mark.parametrize("nnp,expected", [(True, "1"), (False, "0")])
def test_no_new_privileges(oci_runtime, bundle, nnp, expected):
    bundle.set_no_new_privileges(nnp)
    st = proc_status(run_ok(oci_runtime, bundle, "cat /proc/$$/status"))
    assert st["NoNewPrivs"] == expected


def test_oom_score_adj(oci_runtime, bundle):
    bundle.set_oom_score_adj(500)
    assert run_ok(oci_runtime, bundle, "cat /proc/$$/oom_score_adj") == "500\n"


def test_stdio_passthrough_detached(oci_runtime, bundle):
    """create/start: the container writes to the stdio create was given."""
    bundle.set_shell("echo to-stdout; echo to-stderr >&2")
    bundle.write()
    cid = oci_runtime.new_id()
    oci_runtime.create(cid, bundle).check()
    oci_runtime.start(cid).check()
    oci_runtime.wait_stopped(cid)
    out, err = oci_runtime.output(cid)
    assert out == "to-stdout\n"
    assert err.endswith("to-stderr\n")


# --- runtime-spec 1.2 process attributes (runtimes that report an older ociVersionMax are skipped, and
#     so is crun without a `features` command, assumed to implement runtime-spec 1.1 by the plugin)

def require_1_2(runtime, spec_version):
    require_spec(runtime, "1.2.0")
    from ociruntime.testing.plugin import spec_version_tuple
    if spec_version_tuple(spec_version) < (1, 2, 0):
        pytest.skip(f"{runtime.name} is tested as a runtime-spec {spec_version} runtime (< 1.2.0)")


def test_scheduler_nice(oci_runtime, bundle, oci_spec_version):
    """config.md process.scheduler: the policy and nice value reach the process (/proc/self/stat
    fields 41 and 19)."""
    require_1_2(oci_runtime, oci_spec_version)
    bundle.process["scheduler"] = {"policy": "SCHED_BATCH", "nice": 3}
    fields = run_ok(oci_runtime, bundle, "cat /proc/self/stat").rpartition(")")[2].split()
    assert (fields[41 - 3], fields[19 - 3]) == ("3", "3")


def test_io_priority(oci_runtime, bundle, oci_spec_version):
    """config.md process.ioPriority, read back with ioprio_get (busybox ionice)."""
    require_1_2(oci_runtime, oci_spec_version)
    bundle.process["ioPriority"] = {"class": "IOPRIO_CLASS_BE", "priority": 6}
    assert run_ok(oci_runtime, bundle, "ionice") == "best-effort: prio 6\n"


def test_personality_linux(oci_runtime, bundle, oci_spec_version):
    """config-linux.md personality LINUX: the default execution domain (PER_LINUX = 0)."""
    require_1_2(oci_runtime, oci_spec_version)
    bundle.config["linux"]["personality"] = {"domain": "LINUX"}
    assert run_ok(oci_runtime, bundle, "cat /proc/self/personality") == "00000000\n"
