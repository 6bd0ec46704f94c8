"""Hooks that run in the runtime namespace: prestart, createRuntime, poststart, poststop.
A hook without `env` gets the runtime's environment (runc and crun), one with `env` exactly that.
The state JSON goes on stdin; a hook's timeout kills it; a failure is an error (poststop: a warning)."""
import os
import subprocess

from ociruntime.errors import HookError


def _text(b):
    return b.decode(errors="replace")


def run(hooks, name, state_json, cwd=None):
    """runc's wording (libcontainer/configs Hooks.Run, Command.Run): `error running <name> hook #<i>:
    <why>`, where why is Go's "exit status N, stdout: …, stderr: …", "signal: killed, …", a start
    error ("fork/exec <path>: …") or "hook ran past specified timeout of N.Ns"."""
    for i, h in enumerate(hooks.get(name) or ()):
        path = h["path"]
        args = h.get("args") or [path]
        env = None  # no env of its own: the runtime's environment (runc, crun); an explicit one as it is
        if h.get("env") is not None:
            env = {}
            for kv in h["env"]:
                k, _, v = kv.partition("=")
                env[k] = v
        timeout = h.get("timeout")
        from ociruntime.log import log
        log.debug(f"running {name} hook #{i}: {path} {args[1:]}")
        try:
            p = subprocess.run(args, executable=path, input=state_json, env=env, close_fds=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout or None,
                               restore_signals=True, cwd=cwd)
        except subprocess.TimeoutExpired:
            raise HookError(f"error running {name} hook #{i}: hook ran past specified timeout of {float(timeout):.1f}s")
        except OSError as e:
            raise HookError(f"error running {name} hook #{i}: fork/exec {path}: {(e.strerror or str(e)).lower()}")
        if p.returncode != 0:
            if p.returncode < 0:
                import signal
                try:
                    what = "signal: " + signal.strsignal(-p.returncode).lower()
                except (ValueError, AttributeError):
                    what = f"signal: {-p.returncode}"
            else:
                what = f"exit status {p.returncode}"
            raise HookError(f"error running {name} hook #{i}: {what}, stdout: {_text(p.stdout)}, "
                            f"stderr: {_text(p.stderr)}".rstrip())
