#!/usr/bin/env python3
"""Resolve Docker's (moby) default seccomp profile into an OCI ``linux.seccomp`` object, as the Docker
daemon does for a container (github.com/moby/profiles/seccomp ``setupSeccomp``), for:

* x86_64 (``archMap`` -> SCMP_ARCH_X86_64 + its sub-architectures SCMP_ARCH_X86, SCMP_ARCH_X32;
  ``includes/excludes.arches`` against "amd64");
* Docker's default capability set (moby daemon/pkg/oci/caps/defaults.go) as the bounding set
  (``includes/excludes.caps``);
* a kernel >= 4.8 (the only ``minKernel`` in the profile is 4.8; this is decided here, not from the
  running kernel, so that the data file does not depend on the machine).

Input: moby-default.upstream.json, a verbatim copy of moby's vendor/github.com/moby/profiles/seccomp/
default.json (moby/profiles v0.2.3, moby/moby commit b985e2313a). Output: docker-default.json.

    python3 gen_docker_default.py [UPSTREAM] [OUT]
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ARCH = "amd64"
NATIVE = "SCMP_ARCH_X86_64"
KERNEL = (6, 1)  # any kernel >= 4.8 gives the same result
DOCKER_DEFAULT_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]


def _kernel_ge(v):
    parts = tuple(int(x) for x in v.split(".")[:2])
    return KERNEL >= parts


def resolve(profile, caps=DOCKER_DEFAULT_CAPS, arch=ARCH, native=NATIVE):
    out = {"defaultAction": profile["defaultAction"]}
    if "defaultErrnoRet" in profile:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    archs = []
    for a in profile.get("archMap") or ():
        if a["architecture"] == native:
            archs = [a["architecture"]] + list(a.get("subArchitectures") or [])
            break
    out["architectures"] = archs
    syscalls = []
    for call in profile["syscalls"]:
        exc = call.get("excludes") or {}
        inc = call.get("includes") or {}
        if arch in (exc.get("arches") or ()):
            continue
        if any(c in caps for c in exc.get("caps") or ()):
            continue
        if exc.get("minKernel") and _kernel_ge(exc["minKernel"]):
            continue
        if inc.get("arches") and arch not in inc["arches"]:
            continue
        if inc.get("caps") and not all(c in caps for c in inc["caps"]):
            continue
        if inc.get("minKernel") and not _kernel_ge(inc["minKernel"]):
            continue
        rule = {"names": list(call["names"]), "action": call["action"]}
        for k in ("errnoRet",):
            if k in call:
                rule[k] = call[k]
        if call.get("args"):
            rule["args"] = [{"index": a["index"], "value": a["value"], "valueTwo": a.get("valueTwo", 0),
                             "op": a["op"]} for a in call["args"]]
        syscalls.append(rule)
    out["syscalls"] = syscalls
    return out


def main(argv):
    src = argv[1] if len(argv) > 1 else os.path.join(HERE, "moby-default.upstream.json")
    dst = argv[2] if len(argv) > 2 else os.path.join(HERE, "docker-default.json")
    with open(src) as f:
        profile = json.load(f)
    with open(dst, "w") as f:
        json.dump(resolve(profile), f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv)
