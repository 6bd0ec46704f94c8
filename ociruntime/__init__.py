"""ociruntime: an OCI runtime-spec v1.3 runtime, runc-compatible on the command line."""
__version__ = "0.1.0"
OCI_VERSION = "1.3.0"
