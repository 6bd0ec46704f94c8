"""Start-up tricks, in one place. Every command starts a Python interpreter, and the light ones
(state, start, kill, delete, list) are a few milliseconds of work, so their imports are the cost:

- ``posix`` instead of ``os``: ``os`` costs ≈1.2 ms (``_collections_abc``, ``os.environ``);
- ``signal`` is the C module ``_signal``: the ``signal`` module wraps it in enums (≈3 ms);
- ``struct`` and ``socket`` are the C modules ``_struct``/``_socket``, loaded on first use: ``struct.py`` is
  only ``from _struct import *`` and ``socket.py`` pulls in enum, selectors and more.

Business code writes ``from ociruntime.lean import posix, signal, struct, socket`` and uses the usual
names. A module off the light path that needs the whole of ``os`` simply imports ``os``.
tests/unit/test_import_hygiene.py pins what the light commands load.
"""
import posix
import _signal as signal

_LAZY = {"struct": "_struct", "socket": "_socket"}


def __getattr__(name):  # PEP 562: `from ociruntime.lean import struct` loads _struct only then
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'ociruntime.lean' has no attribute {name!r}")
    m = __import__(mod)
    globals()[name] = m
    return m


__all__ = ["posix", "signal", "struct", "socket"]
