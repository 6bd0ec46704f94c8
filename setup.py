"""Builds the cffi extension (ociruntime._shim) and the static C init (ociruntime/libexec/ociruntime-init)."""
import os
import shutil
import subprocess

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py
from distutils.command.build_scripts import build_scripts  # setuptools (imported above) provides distutils

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


def _launcher():
    """ociruntime/launcher.py's functions, without importing the package (not built yet)."""
    import runpy
    return runpy.run_path(os.path.join(HERE, "ociruntime", "launcher.py"))


def entry_command():
    """The `ociruntime` command a wheel installs: csrc/entry/main.c, a small static program that execs
    the install's Python with -I -S (no site), as make build's `#!<python> -IS` launcher starts it (pip
    would drop the -IS of a #!python script; see ociruntime/launcher.py). launcher.py is run without
    importing the package."""
    return _launcher()["build_entry"](os.path.join("build", "entry", "ociruntime"), HERE)


class BuildPy(build_py):
    """schemas/ (the source of truth) goes into the package as ociruntime/schemas: an installed runtime
    finds its schemas next to its modules, whatever the prefix. In a source tree (make build's editable
    install) ociruntime.schema reads ../schemas itself."""

    def run(self):
        super().run()
        if self.editable_mode:
            return
        out = os.path.join(self.build_lib, "ociruntime", "schemas")
        os.makedirs(out, exist_ok=True)
        for f in sorted(os.listdir(os.path.join(HERE, "schemas"))):
            if f.endswith(".json"):
                self.copy_file(os.path.join(HERE, "schemas", f), os.path.join(out, f))


class BuildScripts(build_scripts):
    """The command is a program, not a script: copied as it is (build_scripts would read it as Python
    text to adjust a shebang)."""

    def copy_scripts(self):
        self.mkpath(self.build_dir)
        outfiles = []
        for script in self.scripts:
            out = os.path.join(self.build_dir, os.path.basename(script))
            self.copy_file(script, out)
            outfiles.append(out)
        return outfiles, outfiles


class BuildExt(build_ext):
    def run(self):
        super().run()
        target = os.path.join(HERE, "ociruntime", "libexec") if self.inplace else \
            os.path.join(self.build_lib, "ociruntime", "libexec")
        build_init(target)
        if not self.inplace:  # `--version`'s `commit:` line, as make build's launcher.write records it
            _launcher()["write_commit"](HERE, os.path.join(target, "commit"))


setup(
    name="ociruntime",
    version="0.1.0",
    description="OCI runtime-spec v1.3 container runtime, runc-compatible, Python with a small C core",
    license="Apache-2.0",
    packages=["ociruntime", "ociruntime.cgroups", "ociruntime.lifecycle", "ociruntime.testing"],
    package_data={"ociruntime": ["libexec/ociruntime-init"]},
    setup_requires=["cffi>=1.15"],
    install_requires=["cffi>=1.15", "jsonschema>=4", "pyroute2>=0.7", "protobuf>=4.21", "jeepney>=0.8"],
    cffi_modules=["ociruntime/_shim_build.py:ffibuilder"],
    cmdclass={"build_ext": BuildExt, "build_py": BuildPy, "build_scripts": BuildScripts},
    scripts=[entry_command()],
    entry_points={"pytest11": ["ociruntime=ociruntime.testing.plugin"]},
    python_requires=">=3.9",
)
