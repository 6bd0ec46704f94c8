"""Hooks that run in the runtime namespace: prestart, createRuntime, poststart, poststop.
A hook without `env` gets the runtime's environment (runc and crun), one with `env` exactly that.
The state JSON goes on stdin; a hook's timeout kills it; a failure is an error (poststop: a warning)."""
import os
import subprocess

from ociruntime.errors import HookError


def run(hooks, name, state_json, cwd=None):
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
        try:
            p = subprocess.run(args, executable=path, input=state_json, env=env, close_fds=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout or None,
                               restore_signals=True, cwd=cwd)
        except subprocess.TimeoutExpired:
            raise HookError(f"error running {name} hook #{i} ({path}): timed out after {timeout} s")
        except OSError as e:
            raise HookError(f"error running {name} hook #{i} ({path}): {e.strerror}")
        if p.returncode != 0:
            err = p.stderr.decode(errors="replace").strip().splitlines()
            detail = f": {err[-1]}" if err else ""
            what = f"signal {-p.returncode}" if p.returncode < 0 else f"exit status {p.returncode}"
            raise HookError(f"error running {name} hook #{i} ({path}): {what}{detail}")
