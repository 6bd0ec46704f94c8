"""cffi builder for ociruntime._shim (API mode, out of line): the parent-side C helpers."""
import os
from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(os.path.dirname(HERE), "csrc")

ffibuilder = FFI()
with open(os.path.join(CSRC, "shim.h")) as f:
    ffibuilder.cdef("".join(line for line in f if not line.startswith("/*")))
ffibuilder.set_source(
    "ociruntime._shim",
    '#include "shim.h"',
    sources=[os.path.relpath(os.path.join(CSRC, "shim.c"))],
    include_dirs=[os.path.relpath(CSRC)],
    extra_compile_args=["-O2", "-Wall"],
    libraries=["seccomp"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=False)
