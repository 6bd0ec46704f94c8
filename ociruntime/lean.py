"""Start-up tricks, in one place. Every command starts a Python interpreter, and the light ones
(state, start, kill, delete, list) are a few milliseconds of work, so their imports are the cost:

- ``posix`` instead of ``os``: ``os`` costs ≈1.2 ms (``_collections_abc``, ``os.environ``);
- ``signal`` is the C module ``_signal``: the ``signal`` module wraps it in enums (≈3 ms);
- ``struct`` and ``socket`` are the C modules ``_struct``/``_socket``, loaded on first use: ``struct.py`` is
  only ``from _struct import *`` and ``socket.py`` pulls in enum, selectors and more.

- ``trace``: ``ociruntime.trace`` when the CLI turned tracing on (--trace, $OCIRUNTIME_TRACE, --debug),
  else a do-nothing stand-in: with tracing off the lifecycle does not even import the trace module.

Business code writes ``from ociruntime.lean import posix, signal, struct, socket, trace`` and uses the usual
names. A module off the light path that needs the whole of ``os`` simply imports ``os``.
tests/unit/test_import_hygiene.py pins what the light commands load.
"""
import posix
import _signal as signal

_LAZY = {"struct": "_struct", "socket": "_socket"}


class _NoTrace:
    """ociruntime.trace's interface, doing nothing (tracing off)."""
    __slots__ = ()

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        return False

    def step(self, name, **args):
        return self

    def active(self):
        return False

    def _nothing(self, *a, **kw):
        pass

    arg = add = name_process = init_records = complete_open = _nothing


def __getattr__(name):  # PEP 562: `from ociruntime.lean import struct` loads _struct only then
    if name == "trace":
        import sys
        return sys.modules.get("ociruntime.trace") or _NoTrace()
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'ociruntime.lean' has no attribute {name!r}")
    m = __import__(mod)
    globals()[name] = m
    return m


__all__ = ["posix", "signal", "struct", "socket", "trace"]
