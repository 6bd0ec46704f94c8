"""The benchmarks' one bundle builder: a config.json from the project's default spec (no terminal,
the given args) and, unless an existing rootfs is named, a busybox rootfs of its own."""
import json
import os


def write_bundle(path, args, rootfs=None, readonly=None):
    """Write a bundle at ``path`` running ``args``; ``rootfs``: an existing root to point at
    (absolute) instead of a fresh busybox one in ``path/rootfs``. Returns ``path``."""
    from ociruntime.misc import default_spec
    os.makedirs(path, exist_ok=True)
    spec = default_spec()
    spec["process"].update(terminal=False, args=list(args))
    if rootfs is None:
        from ociruntime.demo import busybox_rootfs
        busybox_rootfs(os.path.join(path, "rootfs"))
    else:
        spec["root"]["path"] = rootfs
    if readonly is not None:
        spec["root"]["readonly"] = readonly
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(spec, f)
    return path
