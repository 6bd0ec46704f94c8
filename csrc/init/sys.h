/* sys.h - raw syscall wrappers for the new mount API and openat2 (not all libcs wrap them). */
#ifndef OCI_SYS_H
#define OCI_SYS_H
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_open_tree
#define SYS_open_tree 428
#define SYS_move_mount 429
#define SYS_fsopen 430
#define SYS_fsconfig 431
#define SYS_fsmount 432
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

#define OCI_OPEN_TREE_CLONE 1
#define OCI_OPEN_TREE_CLOEXEC 02000000
#define OCI_MOVE_MOUNT_F_EMPTY_PATH 0x4
#define OCI_MOVE_MOUNT_T_EMPTY_PATH 0x40
#define OCI_FSOPEN_CLOEXEC 1
#define OCI_FSCONFIG_SET_FLAG 0
#define OCI_FSCONFIG_SET_STRING 1
#define OCI_FSCONFIG_CMD_CREATE 6
#define OCI_FSMOUNT_CLOEXEC 1
#define OCI_MOUNT_ATTR_RDONLY 0x1
#define OCI_MOUNT_ATTR_NOSUID 0x2
#define OCI_MOUNT_ATTR_NOEXEC 0x8
#define OCI_MOUNT_ATTR_IDMAP 0x100000
#define OCI_AT_RECURSIVE 0x8000

#define OCI_RESOLVE_NO_XDEV 0x01
#define OCI_RESOLVE_NO_MAGICLINKS 0x02
#define OCI_RESOLVE_NO_SYMLINKS 0x04
#define OCI_RESOLVE_BENEATH 0x08
#define OCI_RESOLVE_IN_ROOT 0x10

struct oci_open_how { uint64_t flags, mode, resolve; };
struct oci_mount_attr { uint64_t attr_set, attr_clr, propagation, userns_fd; };

static inline int sys_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve)
{
	struct oci_open_how how = { flags, mode, resolve };
	return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}
static inline int sys_open_tree(int dirfd, const char *path, unsigned flags)
{ return (int)syscall(SYS_open_tree, dirfd, path, flags); }
static inline int sys_move_mount(int from_dfd, const char *from, int to_dfd, const char *to, unsigned flags)
{ return (int)syscall(SYS_move_mount, from_dfd, from, to_dfd, to, flags); }
static inline int sys_fsopen(const char *fs, unsigned flags) { return (int)syscall(SYS_fsopen, fs, flags); }
static inline int sys_fsconfig(int fd, unsigned cmd, const char *key, const void *val, int aux)
{ return (int)syscall(SYS_fsconfig, fd, cmd, key, val, aux); }
static inline int sys_fsmount(int fd, unsigned flags, unsigned attr) { return (int)syscall(SYS_fsmount, fd, flags, attr); }
static inline int sys_mount_setattr(int dfd, const char *path, unsigned flags, struct oci_mount_attr *a)
{ return (int)syscall(SYS_mount_setattr, dfd, path, flags, a, sizeof(*a)); }
#endif
