/* shim.h - the whole cffi surface (parent side only; never runs in the container). */
int oci_spawn(int exec_fd, char *const argv[], const int *fds, int nfds, int base, int cgroup_fd, int *pidfd_out);
int oci_set_child_subreaper(void);
