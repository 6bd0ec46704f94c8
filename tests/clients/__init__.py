"""Client tests: podman/conmon and containerd/ctr driving ociruntime (see conftest.py)."""
