/* init.h - shared declarations of ociruntime-init (the C process between clone and execve). */
#ifndef OCI_INIT_H
#define OCI_INIT_H
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "../plan.h"

struct str_vec { uint32_t n; const char **v; };

struct ns_join { uint32_t flag; const char *path; int fd; };
struct mount_op {
	const char *src, *dst, *fstype, *data;
	uint32_t flags, kind, npflags;
	const uint32_t *pflags; /* unaligned copy, see plan.c */
	uint64_t attr_set, attr_clr;
	int idmap_fd;           /* OP_MOUNT_IDMAP: user namespace fd of the mapping, -1: not idmapped */
	uint32_t idmap_flags, idmap_index;
	int tree_fd;            /* the idmapped detached tree stage-1 made, moved into place by the init */
	int late_ro;            /* a read-only tmpfs or /dev: mounted rw, made read-only at the end (runc) */
	const char *cg2_fallback; /* OP_CGROUP2_FALLBACK: bound where the fresh cgroup2 is refused, NULL: none */
	uint32_t cg2_flags;     /* CG2_* */
};
struct device_op { const char *path; uint32_t mode, major, minor, uid, gid, bind; };

struct pair { const char *a, *b; };
struct rlimit_op { uint32_t resource; uint64_t soft, hard; };
struct hook_op { uint32_t kind; int32_t timeout; const char *path; struct str_vec args, env; };
struct mkdir_op { const char *path; uint32_t mode; };
struct lsm_op { uint32_t lsm, flags; const char *procroot, *subpath, *value; };

struct plan {
	int sync_fd, fifo_fd, console_fd, close_from;
	struct ns_join *joins; uint32_t njoins;
	int target_pidfd, target_rootfd; /* OP_EXEC_TARGET, -1: none */
	uint32_t test_remount_delay_us;  /* OP_TEST_REMOUNT_DELAY (TEST ONLY) */
	uint32_t new_ns;
	int has_timens; int64_t timens[4];
	int has_oom; int32_t oom;
	const char *rootfs; uint32_t root_propagation, root_flags;
	struct mount_op *mounts; uint32_t nmounts;
	struct device_op *devices; uint32_t ndevices;
	int devnodes_fd; /* DEVICE_HOSTNODE: the detached tmpfs stage-1 made the nodes on, -1: none */
	struct pair *symlinks; uint32_t nsymlinks;
	const char **masked; uint32_t nmasked;
	const char **readonly; uint32_t nreadonly;
	const char *hostname, *domainname;
	struct pair *sysctls; uint32_t nsysctls;
	struct rlimit_op *rlimits; uint32_t nrlimits;
	int has_caps; uint64_t caps[5]; /* bounding, effective, permitted, inheritable, ambient */
	int has_user; uint32_t uid, gid, umask, user_flags, ngroups; uint32_t *groups;
	const char *cwd; struct str_vec args, env; uint32_t proc_flags;
	struct hook_op *hooks; uint32_t nhooks;
	struct mkdir_op *mkdirs; uint32_t nmkdirs;
	int has_console; uint32_t console_h, console_w;
	uint32_t seccomp_flags, seccomp_len; const uint8_t *seccomp;
	int trace;        /* OP_TRACE: report the steps (trace.c) */
	uint32_t netdevs; /* linux.netDevices entries: hand the runtime a netlink socket (SYNC_NETDEV_FD) */
	struct lsm_op *lsms; uint32_t nlsms;
	const char *mount_label;
	int has_sched; uint32_t sched_policy, sched_priority; int32_t sched_nice;
	uint64_t sched_flags, sched_runtime, sched_deadline, sched_period;
	int has_ioprio; uint32_t ioprio_class, ioprio_level;
	int has_affinity; uint32_t affinity_flags, affinity_n; uint64_t *affinity;
	int has_personality; uint32_t personality;
	int has_mempolicy; uint32_t mpol_mode, mpol_flags, mpol_n; uint64_t *mpol_nodes;
};

/* plan.c */
int plan_decode(const uint8_t *buf, size_t len, struct plan *p, char *err, size_t errlen);

/* util.c */
extern int g_sync_fd;
extern const char *g_stage;
void bail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));   /* appends ": strerror(errno)" */
void bailx(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));  /* no errno */
void warn_runtime(const char *fmt, ...) __attribute__((format(printf, 1, 2)));     /* logged as a warning */
void sync_send(uint32_t type, int32_t value, const void *payload, size_t len);
/* receives one message of the expected type; payload (NUL-terminated, malloc'd) into *out if non-NULL */
int32_t sync_expect(uint32_t type, char **out, size_t *outlen);
int write_all(int fd, const void *buf, size_t len);
int send_fd(int sock, int fd, const void *payload, size_t len);
int run_hooks(struct plan *p, uint32_t kind, const char *state, size_t state_len);

/* rootfs.c */
void setup_rootfs(struct plan *p);          /* before HOOKS_PLS: propagation, rootfs bind, mounts, devices */
void finish_rootfs(struct plan *p);         /* after createContainer hooks: pivot_root, ro root */
void masked_and_readonly(struct plan *p);   /* after pivot_root */
void write_sysctls(struct plan *p);
int open_in_root(int rootfd, const char *path, int flags, uint64_t resolve);
void prepare_idmapped_mounts(struct plan *p); /* stage-1, in the runtime's namespaces */
void prepare_device_nodes(struct plan *p);    /* stage-1: DEVICE_HOSTNODE nodes on a private tmpfs (devnodes.c) */
void attach_device_nodes(struct plan *p, int rootfd); /* init: that tmpfs at a temporary place below /dev */
int hostnode_fd(struct plan *p, uint32_t index); /* init: O_PATH fd of node index on it */
void detach_device_nodes(struct plan *p, int rootfd); /* init: the temporary place goes again */


/* seccomp.c */
void load_seccomp(struct plan *p);

/* lsm.c */
void apply_lsm_labels(struct plan *p);      /* AppArmor/SELinux exec attrs, through a verified procfs */

/* console.c */
void setup_console(struct plan *p, int bind_dev_console);

/* procattr.c */
void apply_cpu_affinity(struct plan *p);     /* stage-1, right after the cgroup join (GO) */
void apply_sched_and_io(struct plan *p);     /* before the caps are dropped (CAP_SYS_NICE, CAP_SYS_ADMIN) */
void apply_personality(struct plan *p);
void apply_mempolicy(struct plan *p);

/* trace.c: the init's steps (see there); timestamps only when the plan has OP_TRACE */
extern int g_trace;
extern const char *g_step_name;
void step(const char *name, int index, const char *detail); /* ends the previous step, starts this one */
void step_end(void);
void step_open(const char *name);  /* a step that outlives the sync socket (the exec fifo wait) */
void step_failed(int err);
void trace_flush(void);
void trace_forget(void);
size_t step_context(char *out, size_t n);

/* creds.c */
void apply_rlimits(struct plan *p);
void apply_user_and_caps(struct plan *p);
const char *lookup_exec(struct plan *p, char *buf, size_t buflen);
void prepare_env(struct plan *p);
int enter_cwd(struct plan *p, int after_user);
#endif
