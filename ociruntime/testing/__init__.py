"""``ociruntime.testing``: bundle-level testing of OCI runtimes (ours, runc, crun, …).

* ``busybox_rootfs`` / ``RootfsTemplate``: a minimal busybox root filesystem;
* ``Bundle`` / ``make_bundle`` / ``default_config``: bundles starting from ``runc spec``;
* ``Runtime``: drive a runtime binary with a private ``--root`` and clean up after it;
* ``container_view`` / ``diff_views``: the differential harness;
* ``check`` / ``assert_findings``: what ``ociruntime check`` finds in a bundle;
* ``ociruntime.testing.plugin``: the pytest plugin (``--oci-runtime``, fixtures).
"""

from .bundle import (HOOK_KINDS, NS_PROC_NAMES, SPEC_VERSION, Bundle, deep_merge,
                     default_config, default_rootfs_template, make_bundle, new_bundle_dir,
                     set_default_rootfs_template, unique_hostname)
from .checks import assert_findings, check
from .rootfs import (BUSYBOX, RootfsError, RootfsTemplate, busybox_applets, busybox_rootfs,
                     copy_rootfs)
from .runtime import (CRUN_SPEC_VERSION, NamespaceHolder, Result, Runtime, RuntimeCommandError,
                      cgroup_dirs_named, hybrid_cgroups, mounts_under, new_container_id,
                      proc_start_time, safe_rmtree, unmount_under)
from .view import (DEFAULT_IGNORE, DEFAULT_SECTIONS, assert_views_equal, build_script,
                   container_view, diff_views, flatten_view, host_namespace_link,
                   normalize_ls, normalize_mountinfo, normalize_state_text, parse_proc_status,
                   parse_sections, wait_for)

__all__ = [
    "BUSYBOX", "Bundle", "assert_findings", "check", "CRUN_SPEC_VERSION", "DEFAULT_IGNORE", "DEFAULT_SECTIONS",
    "HOOK_KINDS", "NS_PROC_NAMES", "NamespaceHolder", "Result", "RootfsError", "RootfsTemplate",
    "Runtime", "RuntimeCommandError", "SPEC_VERSION", "assert_views_equal", "build_script",
    "busybox_applets", "busybox_rootfs", "cgroup_dirs_named", "container_view", "copy_rootfs",
    "deep_merge", "default_config", "default_rootfs_template", "diff_views", "flatten_view",
    "host_namespace_link", "hybrid_cgroups", "make_bundle", "mounts_under", "new_bundle_dir", "new_container_id",
    "normalize_ls", "normalize_mountinfo", "normalize_state_text", "parse_proc_status", "parse_sections",
    "proc_start_time", "safe_rmtree", "set_default_rootfs_template", "unique_hostname",
    "unmount_under", "wait_for",
]
