"""Builds the cffi extension (ociruntime._shim) and the static C init (ociruntime/libexec/ociruntime-init)."""
import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
INIT_SOURCES = sorted(
    os.path.join("csrc", "init", f) for f in os.listdir(os.path.join(HERE, "csrc", "init")) if f.endswith(".c")
)


def build_init(out_dir):
    """Static, small, hardened. musl-gcc when present (≈75 KB), else gcc -static (glibc, ≈800 KB)."""
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, "ociruntime-init")
    cc = os.environ.get("INIT_CC") or (shutil.which("musl-gcc") and "musl-gcc") or "gcc"
    flags = ["-Os", "-Wall", "-Wextra", "-static", "-fstack-protector-strong", "-D_FORTIFY_SOURCE=2",
             "-fno-strict-aliasing", "-s"]
    cmd = [cc, *flags, "-o", out, *[os.path.join(HERE, s) for s in INIT_SOURCES]]
    subprocess.check_call(cmd)
    return out


class BuildExt(build_ext):
    def run(self):
        super().run()
        target = os.path.join(HERE, "ociruntime", "libexec") if self.inplace else \
            os.path.join(self.build_lib, "ociruntime", "libexec")
        build_init(target)


setup(
    name="ociruntime",
    version="0.1.0",
    description="OCI runtime-spec v1.3 container runtime, runc-compatible, Python with a small C core",
    license="Apache-2.0",
    packages=["ociruntime", "ociruntime.cgroups", "ociruntime.testing"],
    package_data={"ociruntime": ["libexec/ociruntime-init"]},
    data_files=[("share/ociruntime/schemas", [os.path.join("schemas", f) for f in sorted(os.listdir("schemas"))
                                               if f.endswith(".json")])],
    setup_requires=["cffi>=1.15"],
    install_requires=["cffi>=1.15", "jsonschema>=4", "pyroute2>=0.7", "jeepney>=0.8"],
    cffi_modules=["ociruntime/_shim_build.py:ffibuilder"],
    cmdclass={"build_ext": BuildExt},
    entry_points={
        "console_scripts": ["ociruntime=ociruntime.cli:main"],
        "pytest11": ["ociruntime=ociruntime.testing.plugin"],
    },
    python_requires=">=3.9",
)
