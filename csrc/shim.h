/* shim.h - the whole cffi surface (parent side only; never runs in the container). */
int oci_spawn(int exec_fd, char *const argv[], const int *fds, int nfds, int base, int cgroup_fd, int *pidfd_out);
int oci_set_child_subreaper(void);
int oci_userns_helper(int *hold_fd);
struct oci_sc_arg { unsigned int index; unsigned int op; unsigned long long value; unsigned long long value2; };
struct oci_sc_rule { const char *name; unsigned int action; unsigned int nargs; struct oci_sc_arg args[6]; };
int oci_seccomp_compile(int out_fd, unsigned int default_action, unsigned int narchs, const char *const *archs,
                        unsigned int nrules, const struct oci_sc_rule *rules, char *err, int errlen);
int oci_bpf_dev_prog_load(const void *insns, int ninsns, char *log, int loglen);
int oci_bpf_dev_prog_attach(int prog_fd, int cgroup_fd, int replace_old);
int oci_umount(const char *path, int flags);
int oci_idmap_tree(int tree_fd, int userns_fd, int recursive);
