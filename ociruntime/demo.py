"""`make run`: build a busybox bundle in DIR and print the command that runs it."""
import json
import os
import shutil
import subprocess
import sys

from ociruntime.misc import default_spec


def busybox_rootfs(rootfs, busybox="/bin/busybox"):
    for d in ("bin", "proc", "sys", "dev", "etc", "tmp", "root"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    os.chmod(os.path.join(rootfs, "tmp"), 0o1777)
    shutil.copy2(busybox, os.path.join(rootfs, "bin", "busybox"))
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for a in applets:
        link = os.path.join(rootfs, "bin", a)
        if a != "busybox" and not os.path.lexists(link):
            os.symlink("busybox", link)
    with open(os.path.join(rootfs, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    with open(os.path.join(rootfs, "etc", "group"), "w") as f:
        f.write("root:x:0:\nnogroup:x:65534:\n")


def main(argv):
    bundle = os.path.abspath(argv[1] if len(argv) > 1 else "demo")
    rootfs = os.path.join(bundle, "rootfs")
    if not os.path.exists(os.path.join(rootfs, "bin", "busybox")):
        busybox_rootfs(rootfs)
    spec = default_spec()
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["sh", "-c", "echo Hello from ociruntime; echo \"uid=$(id -u) host=$(hostname) "
                               "pid=$$\"; grep -E '^Cap(Eff|Bnd)' /proc/self/status"]
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f, indent="\t")
    print(f"bundle ready: {bundle}")


if __name__ == "__main__":
    main(sys.argv)
