"""checkpoint/restore, differential: the same bundle under runc 1.1.5 and ociruntime with the same CRIU.
What the restored container sees (its processes, mounts, fds, cgroup, the bind-mounted data, the count)
must be what it saw before the checkpoint, and the same under both runtimes; the one deliberate
difference is loopback (runc restores the container's network namespace with lo down).
"""
import os
import re
import subprocess

import pytest

from _util import env, rootfs_template, _subreaper, RUNTIME  # noqa: F401
from criu_util import COUNTER, RUNC, Runner, criu_bin, restore_counter, start_counter  # noqa: F401

pytestmark = pytest.mark.timeout(240)

VIEW = ("echo PROCS; for p in /proc/[0-9]*; do [ -r $p/comm ] && echo $(basename $p) $(cat $p/comm); done | "
        "grep -v ' sleep$' | sort -n; "
        "echo MOUNTS; awk '{print $5, $(NF-2)}' /proc/1/mountinfo; "
        "echo FDS; for f in /proc/1/fd/*; do echo $(basename $f) $(readlink $f); done; "
        "echo CGROUP; cat /proc/1/cgroup; "
        "echo DATA; cat /data/file; "
        "echo HOST; hostname; id")


def normalize(text, cid):
    text = re.sub(r"pipe:\[\d+\]", "pipe", text)
    text = text.replace(cid, "<ID>")
    # the exec'd view script's own pid and fds are volatile; the init's are not
    out = []
    for ln in text.splitlines():
        if re.match(r"^\d+\s*$", ln):  # a pid without a name: a process that exited while listed (sleep's)
            continue
        # (runc's exec helper shows up as "exe" or "runc:[..." while it joins the container)
        if re.match(r"^\d+ (sh|cat|awk|grep|sort|basename|readlink|hostname|id|exe|runc:\S*|ociruntime\S*)$",
                    ln) and not ln.startswith("1 "):
            continue
        out.append(ln)
    return "\n".join(out)


def _view(runner, cid):
    p = subprocess.run(runner.argv("exec", cid, "sh", "-c", VIEW), stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return normalize(p.stdout, cid)


def _lo_up(runner, cid):
    p = subprocess.run(runner.argv("exec", cid, "ip", "-o", "link", "show", "lo"), stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=30)
    return "UP" in p.stdout.split(">")[0]


def _cycle(env, runner, bundle, tag):
    cid = env.new_id(tag)
    io = start_counter(runner, bundle.path, cid)
    before = _view(runner, cid)
    img = env.mkdir(f"img-{cid}", 0o700)
    runner.ok("checkpoint", "--image-path", img, cid)
    last = io.read_ints()[-1]
    io2, rc, err = restore_counter(runner, img, bundle.path, cid)
    assert rc == 0, f"{runner.binary}: {err}"
    io2.wait_count(5)
    after = _view(runner, cid)
    lo = _lo_up(runner, cid)
    counter_ok = last - 2 <= io2.values[0] <= last + 2 and io2.values[-1] > last
    runner.ok("delete", "--force", cid)
    io.close()
    io2.close()
    return before, after, lo, counter_ok


def test_restored_container_sees_the_same_under_runc_and_ociruntime(env, criu_bin):
    if not os.access(RUNC, os.X_OK):
        pytest.fail(f"the reference runtime {RUNC} is missing (apt package runc)")
    data = env.mkdir("data")
    with open(os.path.join(data, "file"), "w") as f:
        f.write("bind-mounted\n")

    def mutate(spec):
        spec["mounts"].append({"destination": "/data", "type": "bind", "source": data, "options": ["rbind", "ro"]})
        spec["hostname"] = "ckpt"
    b = env.bundle(args=("sh", "-c", COUNTER), mutate=mutate)
    ours = Runner(RUNTIME, env.root, criu_bin)
    runc_root = os.path.join(env.tmp, "runc-root")
    env.extra_roots.append(runc_root)
    ref = Runner(RUNC, runc_root, criu_bin)
    r_before, r_after, r_lo, r_count = _cycle(env, ref, b, "runc")
    o_before, o_after, o_lo, o_count = _cycle(env, ours, b, "ours")
    assert r_count and o_count
    # under both runtimes the restored container sees what it saw before, but for two things CRIU decides:
    # the order of mountinfo (CRIU mounts in tree order) and the masked files, which come back as binds of
    # the host's /dev/null (devtmpfs) instead of the container's (tmpfs) - runc's external-mount scheme
    for name, before, after in (("ociruntime", o_before, o_after), ("runc", r_before, r_after)):
        assert _stable(after) == _stable(before), f"{name}: the restored container sees something else:\n" \
            f"{before}\n---\n{after}"
    # and exactly the same under both (mount order included)
    assert o_after == r_after, f"runc vs ociruntime after restore:\n{r_after}\n---\n{o_after}"
    assert "bind-mounted" in o_after and "/data" in o_after and "0 pipe" in o_after
    # the deliberate difference: loopback
    assert o_lo is True and r_lo is False


def _stable(view):
    head, _, rest = view.partition("MOUNTS\n")
    mounts, _, tail = rest.partition("FDS\n")
    lines = sorted(re.sub(r" devtmpfs$", " tmpfs", ln) for ln in mounts.splitlines())
    return head + "MOUNTS\n" + "\n".join(lines) + "\nFDS\n" + tail
