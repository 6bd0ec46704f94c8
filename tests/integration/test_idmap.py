"""Idmapped bind mounts: mounts[].uidMappings/gidMappings and the idmap/ridmap options (config.md,
runtime-spec 1.3; MOUNT_ATTR_IDMAP, Linux 5.12). runc 1.1.5 has no idmapped mounts (its `features`
lists neither idmap nor ridmap), so there is no differential test.

A host directory holds files owned by 1000:2000 on disk; with the mapping uid 1000 -> 3000 and gid
2000 -> 4000 the container sees them as 3000:4000, and what 3000:4000 writes lands on disk as 1000:2000.
The recursive test mounts a tmpfs below the source inside a private mount namespace it makes
(`unshare -m`), never in the host's."""
import json
import os
import subprocess

import pytest

from _util import env, rootfs_template, _subreaper  # noqa: F401  (fixtures)
from ociruntime.testing.hostfacts import idmap_lacks
from test_bad_input import create_fails

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

MAPS = {"uidMappings": [{"containerID": 1000, "hostID": 3000, "size": 2}],
        "gidMappings": [{"containerID": 2000, "hostID": 4000, "size": 1}]}
USERNS_MAPS = [{"containerID": 0, "hostID": 100000, "size": 65536}]


def _data_dir(env, name="data", mode=0o755):
    """A host directory owned by 1000:2000 holding f (1000:2000), g (1001:2000) and r (0:0)."""
    d = env.mkdir(name, mode)
    os.chown(d, 1000, 2000)
    for fname, uid, gid in (("f", 1000, 2000), ("g", 1001, 2000), ("r", 0, 0)):
        p = os.path.join(d, fname)
        with open(p, "w") as f:
            f.write(fname)
        os.chown(p, uid, gid)
    return d


def refused_here(env, b, src, dst, at=0):
    """Host fact: where the filesystem of ``src`` (the tests' temporary directory) has no idmapped mounts
    (tmpfs before Linux 6.3, NFS, ...) or the kernel has no mount_setattr, the runtime must refuse the
    bundle naming the mount, and leave nothing behind; True then (the test has nothing more to see)."""
    why = idmap_lacks(src)
    if not why:
        return False
    frags = [f"/mounts/{_n_mounts() + at}"]
    if "filesystem" in why:
        frags.append(f"cannot idmap the mount of {src} on {dst}: its filesystem does not support idmapped mounts")
    create_fails(env, b, *frags)
    return True


def _bind(dst, src, options=("bind",), **extra):
    return {"destination": dst, "type": "bind", "source": src, "options": list(options), **extra}


def _stat(paths):
    return "; ".join(f"stat -c '%u:%g %n' {p}" for p in paths)


def _parse_stat(out):
    return {line.split()[1]: line.split()[0] for line in out.splitlines() if line.startswith(tuple("0123456789"))
            and len(line.split()) == 2}


def test_idmapped_bind_mount_shows_and_writes_mapped_ids(env):
    data = _data_dir(env)
    script = (_stat(["/d", "/d/f", "/d/g", "/d/r", "/plain/f"]) +
              "; touch /d/new && echo wrote-idmapped; touch /plain/new 2>/dev/null || echo plain-denied")

    def mutate(spec):
        spec["mounts"] += [_bind("/d", data, **MAPS), _bind("/plain", data)]
        spec["process"]["user"] = {"uid": 3000, "gid": 4000}
    b = env.bundle(args=("sh", "-c", script), mutate=mutate)
    for d in ("d", "plain"):
        os.mkdir(os.path.join(b.rootfs, d))
    if refused_here(env, b, data, "/d"):
        return
    _, out = env.run_to_completion(b)
    st = _parse_stat(out)
    assert st["/d"] == "3000:4000" and st["/d/f"] == "3000:4000", out
    assert st["/d/g"] == "3001:4000", out          # the second id of the uid range
    assert st["/d/r"] == "65534:65534", out        # 0:0 is outside the mapping: the overflow ids
    assert st["/plain/f"] == "1000:2000", out      # the same directory without a mapping
    assert "wrote-idmapped" in out and "plain-denied" in out, out
    new = os.stat(os.path.join(data, "new"))
    assert (new.st_uid, new.st_gid) == (1000, 2000)  # 3000:4000 in the container is 1000:2000 on disk


def test_idmap_mount_is_read_only_with_ro(env):
    data = _data_dir(env)

    def mutate(spec):
        spec["mounts"].append(_bind("/d", data, options=("bind", "ro"), **MAPS))
        spec["process"]["user"] = {"uid": 3000, "gid": 4000}
    b = env.bundle(args=("sh", "-c", _stat(["/d/f"]) + "; touch /d/x 2>/dev/null || echo ro-denied"),
                   mutate=mutate)
    os.mkdir(os.path.join(b.rootfs, "d"))
    if refused_here(env, b, data, "/d"):
        return
    _, out = env.run_to_completion(b)
    assert _parse_stat(out)["/d/f"] == "3000:4000" and "ro-denied" in out, out
    assert not os.path.exists(os.path.join(data, "x"))


def test_idmapped_file_bind_mount(env):
    data = _data_dir(env)

    def mutate(spec):
        spec["mounts"].append(_bind("/etc/f", os.path.join(data, "f"), **MAPS))
    b = env.bundle(args=("sh", "-c", _stat(["/etc/f"]) + "; cat /etc/f"), mutate=mutate)
    if refused_here(env, b, os.path.join(data, "f"), "/etc/f"):
        return
    _, out = env.run_to_completion(b)
    assert _parse_stat(out)["/etc/f"] == "3000:4000" and out.rstrip().endswith("f"), out


def test_ridmap_maps_submounts_idmap_only_the_top(env):
    """rbind + idmap: only the top mount is idmapped; rbind + ridmap: every mount of the tree."""
    data = _data_dir(env)
    os.mkdir(os.path.join(data, "sub"))
    b = env.bundle(args=("sh", "-c", _stat(["/a/f", "/a/sub/s", "/b/f", "/b/sub/s"])), mutate=lambda spec:
                   spec["mounts"].extend([_bind("/a", data, options=("rbind", "idmap"), **MAPS),
                                          _bind("/b", data, options=("rbind", "ridmap"), **MAPS)]))
    for d in ("a", "b"):
        os.mkdir(os.path.join(b.rootfs, d))
    if refused_here(env, b, data, "/a"):
        return
    cid = env.new_id()
    out_path = os.path.join(env.tmp, "out")
    sub = os.path.join(data, "sub")
    # the submount (a tmpfs) exists only in a private mount namespace made for this test
    script = f"""set -e
mount -t tmpfs -o mode=755 sub-tmpfs {sub}
echo s > {sub}/s
chown 1000:2000 {sub}/s
{' '.join(env.rt.argv("run", "--bundle", b.path, cid))} > {out_path}
"""
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    with open(out_path) as f:
        out = f.read()
    st = _parse_stat(out)
    assert st["/a/f"] == "3000:4000" and st["/b/f"] == "3000:4000", out
    assert st["/a/sub/s"] == "1000:2000", out      # idmap: the submount keeps its own (identity) view
    assert st["/b/sub/s"] == "3000:4000", out      # ridmap: the submount is idmapped too


def _userns(spec):
    spec["linux"]["namespaces"].append({"type": "user"})
    spec["linux"]["uidMappings"] = USERNS_MAPS
    spec["linux"]["gidMappings"] = USERNS_MAPS


def test_idmap_with_container_user_namespace(env):
    """In a user namespace (0 -> 100000): `idmap` without mappings uses the container's mapping, so the
    files show their on-disk ids; explicit mappings still apply; a plain bind shows the overflow ids."""
    data = _data_dir(env, mode=0o777)   # the default spec's root has no CAP_DAC_OVERRIDE
    shifted = {"uidMappings": [{"containerID": 1000, "hostID": 100005, "size": 1}],
               "gidMappings": [{"containerID": 2000, "hostID": 100007, "size": 1}]}

    def mutate(spec):
        _userns(spec)
        spec["mounts"] += [_bind("/d", data, options=("bind", "idmap")),
                           _bind("/e", data, options=("rbind",), **shifted),
                           _bind("/n", data)]
    script = _stat(["/d/f", "/d/r", "/e/f", "/n/f"]) + "; touch /d/new 2>&1 && echo wrote"
    b = env.bundle(args=("sh", "-c", script), mutate=mutate)
    for d in ("d", "e", "n"):
        os.mkdir(os.path.join(b.rootfs, d))
    if refused_here(env, b, data, "/d"):
        return
    _, out = env.run_to_completion(b)
    st = _parse_stat(out)
    assert st["/d/f"] == "1000:2000" and st["/d/r"] == "0:0", out
    assert st["/e/f"] == "5:7", out
    assert st["/n/f"] == "65534:65534", out
    assert "wrote" in out, out
    new = os.stat(os.path.join(data, "new"))
    assert (new.st_uid, new.st_gid) == (0, 0)     # the container's root is uid 0 through the mount


# --- bad input: one line naming the field, nothing left behind ------------------------------------

def _n_mounts():
    from _util import base_spec
    return len(base_spec()["mounts"])


BAD = [
    ("maps on tmpfs", lambda d: {"destination": "/t", "type": "tmpfs", "source": "tmpfs", **MAPS},
     "uidMappings", "only supported for bind mounts"),
    ("idmap option on tmpfs", lambda d: {"destination": "/t", "type": "tmpfs", "source": "tmpfs",
                                         "options": ["idmap"]}, "options", "only supported for bind mounts"),
    ("idmap without maps or userns", lambda d: _bind("/t", d, options=("rbind", "ridmap")), "options",
     "needs uidMappings/gidMappings or a user namespace"),
    ("empty uidMappings", lambda d: _bind("/t", d, uidMappings=[], gidMappings=MAPS["gidMappings"]),
     "uidMappings", "at least one uidMappings entry"),
    ("uidMappings without gidMappings", lambda d: _bind("/t", d, uidMappings=MAPS["uidMappings"]),
     "", "gidMappings"),
    ("overlapping ranges", lambda d: _bind("/t", d, uidMappings=[{"containerID": 0, "hostID": 10, "size": 5},
                                                                  {"containerID": 9, "hostID": 12, "size": 1}],
                                           gidMappings=MAPS["gidMappings"]),
     "uidMappings/1/hostID", "overlap"),
    ("size 0", lambda d: _bind("/t", d, uidMappings=[{"containerID": 0, "hostID": 10, "size": 0}],
                               gidMappings=MAPS["gidMappings"]), "uidMappings/0/size", "size 0"),
    ("overflow", lambda d: _bind("/t", d, uidMappings=MAPS["uidMappings"],
                                 gidMappings=[{"containerID": 4294967290, "hostID": 0, "size": 100}]),
     "gidMappings/0/size", "overflows"),
]


@pytest.mark.parametrize("name,mount,field,fragment", BAD, ids=[b[0] for b in BAD])
def test_bad_idmap_config(env, name, mount, field, fragment):
    data = _data_dir(env)
    b = env.bundle(args=("true",), rootfs="empty", mutate=lambda spec: spec["mounts"].append(mount(data)))
    cid = env.new_id()
    snap = env.snapshot(cid)
    r = env.rt("create", "--bundle", b.path, cid)
    assert r.rc != 0
    msg = r.error_msg()
    ptr = f"/mounts/{_n_mounts()}" + (f"/{field}" if field else "")
    assert ptr in msg and fragment in msg, msg
    snap.assert_clean()


def test_filesystem_without_idmap_support(env, rootfs_template):
    """sysfs has no FS_ALLOW_IDMAP: the kernel's EINVAL becomes an error naming the mount."""
    b = env.bundle(args=("true",), mutate=lambda spec: spec["mounts"].append(_bind("/k", "/sys/kernel", **MAPS)))
    os.mkdir(os.path.join(b.rootfs, "k"))
    cid = env.new_id()
    snap = env.snapshot(cid)
    r = env.rt("create", "--bundle", b.path, cid)
    assert r.rc != 0
    msg = r.error_msg()
    assert f"/mounts/{_n_mounts()}: cannot idmap the mount of /sys/kernel on /k" in msg, msg
    assert "does not support idmapped mounts" in msg, msg
    snap.assert_clean()


def test_features_advertise_idmap(env):
    r = env.rt("features").check()
    feats = json.loads(r.stdout)
    # host fact: the kernel's mount_setattr (Linux >= 5.12), whatever the filesystem
    has_api = not (idmap_lacks(env.tmp) or "").startswith("this kernel has no mount_setattr")
    assert feats["linux"]["mountExtensions"]["idmap"]["enabled"] is has_api
    assert {"idmap", "ridmap"} <= set(feats["mountOptions"])


def test_idmap_in_a_joined_user_namespace(env):
    """Joining a user namespace by path: `idmap` without mappings uses that namespace's mapping."""
    data = _data_dir(env)
    a = env.bundle(args=("sleep", "30"), mutate=_userns)
    cid_a = env.running(a)
    pid_a = env.rt.init_pid(cid_a)

    def mutate(spec):
        spec["linux"]["namespaces"].append({"type": "user", "path": f"/proc/{pid_a}/ns/user"})
        spec["mounts"] += [_bind("/d", data, options=("bind", "idmap")), _bind("/n", data)]
    b = env.bundle(args=("sh", "-c", _stat(["/d/f", "/n/f"])), mutate=mutate)
    for d in ("d", "n"):
        os.mkdir(os.path.join(b.rootfs, d))
    if refused_here(env, b, data, "/d"):
        return
    _, out = env.run_to_completion(b)
    st = _parse_stat(out)
    assert st["/d/f"] == "1000:2000" and st["/n/f"] == "65534:65534", out
