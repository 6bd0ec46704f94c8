/* plan.h - the binary plan that the Python side builds and ociruntime-init executes.
 *
 * Layout (native endianness, the same machine builds and reads it):
 *   header : "OCIP" u32 version u32 record_count
 *   record : u32 op, u32 len, payload[len]
 * Payload primitives: u32, i32, u64, i64; str = u32 n (bytes, including a final NUL) + bytes;
 * strv = u32 count + str*. The decoder checks every length against the record and the record
 * against the buffer, refuses embedded NULs and caps the total size (CVE-2021-43784 lesson).
 *
 * ociruntime/plan.py mirrors these numbers; tests/unit/test_plan.py round-trips through
 * `ociruntime-init --check-plan`.
 */
#ifndef OCI_PLAN_H
#define OCI_PLAN_H
#include <stdint.h>

#define PLAN_MAGIC "OCIP"
#define PLAN_VERSION 1
#define PLAN_MAX_SIZE (64u << 20)

enum plan_op {
	OP_FDS = 1,          /* u32 sync_fd, i32 fifo_fd, i32 console_fd, u32 close_from */
	OP_NS_JOIN = 2,      /* u32 clone_flag, str path */
	OP_NS_NEW = 3,       /* u32 clone_flags (may include CLONE_NEWUSER) */
	OP_TIMENS = 4,       /* i64 mono_s, i64 mono_ns, i64 boot_s, i64 boot_ns */
	OP_OOM_SCORE_ADJ = 5,/* i32 value */
	OP_ROOTFS = 6,       /* str path, u32 propagation, u32 flags (ROOTFS_*) */
	OP_MOUNT = 7,        /* str src, str dst, str fstype, str data, u32 flags, u32 kind (MOUNT_KIND_*),
	                        u64 attr_set, u64 attr_clr, u32 npflags, u32 pflags[npflags] */
	OP_DEVICE = 8,       /* str path, u32 mode (S_IFMT|perm), u32 major, u32 minor, u32 uid, u32 gid, u32 bind:
	                        0 mknod by the init, 1 bind of the host's node at that path (user namespace),
	                        DEVICE_HOSTNODE: made by stage-1 outside the user namespace on a private tmpfs
	                        (uid/gid are then host ids) and bound in by the init */
	OP_SYMLINK = 9,      /* str target, str linkpath */
	OP_MASK = 10,        /* str path */
	OP_READONLY = 11,    /* str path */
	OP_HOSTNAME = 12,    /* str */
	OP_DOMAINNAME = 13,  /* str */
	OP_SYSCTL = 14,      /* str key, str value */
	OP_RLIMIT = 15,      /* u32 resource, u64 soft, u64 hard */
	OP_CAPS = 16,        /* u64 bounding, effective, permitted, inheritable, ambient */
	OP_USER = 17,        /* u32 uid, u32 gid, u32 umask (UMASK_UNSET), u32 flags (USER_*), u32 n, u32 gids[n] */
	OP_PROCESS = 18,     /* str cwd, strv args, strv env, u32 flags (PROC_*) */
	OP_HOOK = 19,        /* u32 kind (HOOK_*), i32 timeout_s, str path, strv args, strv env */
	OP_MKDIR = 20,       /* str path, u32 mode: mkdir -p inside the rootfs (after the mounts) */
	OP_CONSOLE = 21,     /* u32 height, u32 width: allocate a pty in the container's devpts */
	OP_SECCOMP = 22,     /* u32 flags (seccomp(2) SECCOMP_FILTER_FLAG_*; bit 31 is ours: "SPEC_ALLOW was
	                        implied, drop it if the kernel refuses it", stripped by the init), u32 n,
	                        n bytes of sock_filter */
	OP_SCHED = 23,       /* u32 policy, i32 nice, u32 priority, u64 flags, u64 runtime, u64 deadline, u64 period:
	                        sched_setattr(2) just before exec (create and exec) */
	OP_IOPRIO = 24,      /* u32 class (IOPRIO_CLASS_*), u32 level: ioprio_set(IOPRIO_WHO_PROCESS, 0) */
	OP_CPU_AFFINITY = 25,/* u32 flags (AFFINITY_*), u32 n, u64 mask[n] (bit i of word i/64 = CPU i):
	                        sched_setaffinity right after the cgroup join (stage-1, after GO) */
	OP_PERSONALITY = 26, /* u32 persona: personality(2) just before exec */
	OP_MEMPOLICY = 27,   /* u32 mode, u32 flags (MPOL_F_*), u32 n, u64 nodemask[n]: set_mempolicy(2) */
	OP_LSM_ATTR = 28,    /* u32 lsm (LSM_*), u32 flags (LSM_F_*), str procroot, str subpath, str value:
	                        write value to <procroot>/<subpath> (e.g. /proc + thread-self/attr/exec) just
	                        before the process setup drops privileges; procroot must be procfs */
	OP_MOUNT_LABEL = 29, /* str label: SELinux context= of the tmpfs the init mounts itself (masked
	                        directories) and the label of the mqueue root; config mounts carry it in data */
	OP_MOUNT_IDMAP = 30, /* i32 userns_fd, u32 flags (IDMAP_*), u32 config_index: makes the OP_MOUNT just before
	                        it (a bind mount) idmapped: stage-1, still in the runtime's user and mount
	                        namespaces, clones the source with open_tree() and sets MOUNT_ATTR_IDMAP with
	                        the user namespace userns_fd (an fd slot the runtime filled); the container
	                        init moves the detached tree onto the destination */
	OP_CGROUP2_FALLBACK = 36, /* str path, u32 flags (CG2_*): the OP_MOUNT just before it is the container's
	                        cgroup mount on a pure v2 host (a fresh cgroup2); where the kernel refuses it
	                        (EPERM/EBUSY: a user namespace without its own cgroup namespace, or /sys/fs/cgroup
	                        already the same cgroup2 mount) path is bind-mounted instead (runc mountCgroupV2);
	                        CG2_MASK_MISSING: a missing path (rootless, no cgroup of its own) masks the
	                        destination with a read-only tmpfs instead */
	OP_NETDEV = 32,      /* u32 n: linux.netDevices has n entries; stage-1 hands the runtime a NETLINK_ROUTE
	                        socket opened in the container's network namespace (SYNC_NETDEV_FD) */
	OP_TRACE = 35,       /* u32 flags (0): report the init's steps (SYNC_TRACE); absent: tracing off */
	OP_TEST_REMOUNT_DELAY = 34, /* u32 microseconds. TEST ONLY (ociruntime/plan.py OCIRUNTIME_TEST_REMOUNT_DELAY_US):
	                        sleep between a config mount's mount() and the re-opening of its destination,
	                        to widen the window a rename race needs (tests/integration/test_security.py) */
	OP_EXEC_TARGET = 33, /* i32 pidfd, i32 root_fd (exec only; fd slots the runtime filled): the OP_NS_JOINs are
	                        joined through the pidfd of the container's init in one setns(pidfd, flags)
	                        (the paths are the fallback on kernels without it, and count only if the
	                        pidfd shows the init still alive after they were opened); root_fd >= 0: the
	                        container has no mount namespace, the process is chrooted there after the joins */
};

#define LSM_APPARMOR 1u
#define LSM_SELINUX 2u
#define LSM_F_FAKE_PROC 1u /* TEST ONLY (ociruntime/lsm.py OCIRUNTIME_TEST_FAKE_LSM_PROC): procroot is a
                              plain directory inside the container, the target a regular file */

#define AFFINITY_RESET 1u  /* every CPU (the kernel clamps to the cpuset); the mask is empty */
#define PLAN_MASK_WORDS 1024u /* CPU / node ids up to 65535 */

#define ROOTFS_READONLY 1u
#define ROOTFS_NO_PIVOT 2u
#define ROOTFS_NO_MOUNTNS 4u

#define DEVICE_HOSTNODE 2u

#define MOUNT_KIND_FS 0u
#define MOUNT_KIND_BIND 1u
#define MOUNT_KIND_RBIND 2u
#define MOUNT_KIND_CGROUP_TMPFS 3u /* reserved */
#define MOUNT_COPYUP 0x100u        /* or'd into kind: tmpcopyup, the tmpfs gets the directory's contents */
#define MOUNT_CLEARS 0x200u        /* or'd into kind: a bind mount's options clear a flag (rw, dev, suid, ...) */
#define MOUNT_FROM_RUNTIME 0x400u  /* or'd into kind: a bind source the container's root cannot reach: cloned by
                                      stage-1 in the runtime's namespaces, moved into place by the init */
#define MOUNT_IDMAP_IN_ROOT 0x800u /* or'd into kind of an idmapped bind (OP_MOUNT_IDMAP follows) whose source is
                                      inside the container's root: not stage-1's; the init clones it when its turn
                                      comes, in the container's mount namespace (after the earlier mounts), and
                                      hands the tree to the runtime, which sets the mapping (SYNC_IDMAP_FD) */
/* or'd into kind with MOUNT_CLEARS: which lockable flags the options clear explicitly (bit = MOUNT_CLR_SHIFT + i,
 * i indexing rdonly, nosuid, nodev, noexec, noatime, nodiratime, relatime) */
#define MOUNT_CLR_SHIFT 16u

#define CG2_MASK_MISSING 1u        /* OP_CGROUP2_FALLBACK: the rootless cgroup manager (runc rootlessCgroups) */

#define IDMAP_RECURSIVE 1u         /* "ridmap": MOUNT_ATTR_IDMAP on every mount of an rbind tree, not just the top */

#define UMASK_UNSET 0xffffffffu
#define USER_SETGROUPS 1u          /* setgroups() is allowed (false in a userns with setgroups=deny) */

#define PROC_NNP 1u
#define PROC_MKCWD 2u
#define PROC_EXEC 4u   /* exec into a running container: join only, no rootfs, no exec fifo */
#define PROC_RELAY_TTY 8u /* the runtime relays the terminal itself (foreground run/exec -t): clear ONLCR */

#define HOOK_CREATE_CONTAINER 1u
#define HOOK_START_CONTAINER 2u
#define HOOK_F_PROCESS_ENV 0x100u /* or'd into kind: the hook has no env of its own and gets the process's
                                     environment as it is at that point (runc) */

/* Sync messages on the SOCK_SEQPACKET socket between ociruntime (Python) and the init.
 *
 *   python                       stage-1 (host ns)          stage-2 = container init
 *   spawn, cgroup apply  --GO-->  join/unshare
 *                        <--USERMAP_PLS (new userns)
 *   write uid/gid maps   --USERMAP_ACK-->
 *                        <--NETDEV_FD (linux.netDevices: netlink socket in the new netns)
 *   move the devices     --NETDEV_ACK-->
 *                        <--PID (init pid)               clone(CLONE_PARENT) -> mounts
 *                        <--------------------------------IDMAP_FD (an idmapped bind inside the root: its tree)
 *   MOUNT_ATTR_IDMAP on it --IDMAP_ACK------------------->  moves it onto its destination
 *                        <--------------------------------HOOKS_PLS
 *   prestart/createRuntime --HOOKS_ACK (state json)----->  createContainer hooks, pivot_root, ...
 *                        <--------------------------------READY
 *   write state.json     --RUN (state json)------------->  close sync, wait on exec fifo, exec
 * Any stage may send ERROR (text) instead and exit.
 */
enum sync_msg {
	SYNC_GO = 0x40,          /* python -> stage-1: cgroup placed, go on */
	SYNC_USERMAP_PLS = 0x41, /* stage-1 -> python: write my uid_map/gid_map */
	SYNC_USERMAP_ACK = 0x42, /* python -> stage-1: maps written */
	SYNC_PID = 0x43,         /* stage-1 -> python: i32 pid of the container init (host pid ns) */
	SYNC_HOOKS_PLS = 0x44,   /* init -> python: mounts done, run prestart/createRuntime now */
	SYNC_HOOKS_ACK = 0x45,   /* python -> init: hooks ok; payload = state json for createContainer hooks */
	SYNC_READY = 0x46,       /* init -> python: all set up, about to wait on the exec fifo */
	SYNC_RUN = 0x47,         /* python -> init: state saved; payload = state json for startContainer hooks */
	SYNC_SECCOMP_FD = 0x48,  /* init -> python: the seccomp notify fd (SCM_RIGHTS); python forwards it */
	SYNC_SECCOMP_ACK = 0x49, /* python -> init: forwarded to listenerPath */
	SYNC_NETDEV_FD = 0x4a,   /* stage-1 -> python: a NETLINK_ROUTE socket in the container's network namespace
	                            (SCM_RIGHTS); python moves linux.netDevices in and configures them with it */
	SYNC_NETDEV_ACK = 0x4b,  /* python -> stage-1: devices moved, addresses set, links up */
	SYNC_TIMENS_PLS = 0x4c,  /* stage-1 -> python: write this (payload) to my timens_offsets (user namespace) */
	SYNC_TIMENS_ACK = 0x4d,  /* python -> stage-1: written */
	SYNC_WARNING = 0x4e,     /* init -> python: payload = one-line warning text; python logs it and reads on */
	SYNC_ERROR = 0x4f,       /* any -> python: payload = one-line error text [NUL step\tindex\tdetail] */
	SYNC_IDMAP_FD = 0x51,    /* init -> python: i32 config index of a MOUNT_IDMAP_IN_ROOT mount; its detached tree
	                            (SCM_RIGHTS): python sets MOUNT_ATTR_IDMAP on it */
	SYNC_IDMAP_ACK = 0x52,   /* python -> init: the tree is idmapped */
	SYNC_TRACE = 0x50,       /* stage-1/init -> python (OP_TRACE only, no answer): the steps since the last
	                            one, "name\tindex\tdetail\tstart_ns\tdur_ns\terrno\n" each (csrc/init/trace.c) */
};

struct sync_hdr {
	uint32_t type;
	int32_t value;
};
#define SYNC_MAX_PAYLOAD 65536

#endif
