/* seccomp.c - load the BPF program the parent compiled; hand a notify listener fd to the runtime.
 *
 * The plan's flags are seccomp(2) SECCOMP_FILTER_FLAG_* bits plus one of ours (bit 31): SPEC_ALLOW was
 * implied (the profile has no "flags", runc >= 1.2 default), so a kernel without it just loads the
 * filter without it. A flag the config asked for and the kernel lacks is reported by name. */
#include "init.h"
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_seccomp
#define SYS_seccomp 317
#endif
#define OCI_SECCOMP_SET_MODE_FILTER 1
#define OCI_FLAG_TSYNC 1U
#define OCI_FLAG_LOG 2U
#define OCI_FLAG_SPEC_ALLOW 4U
#define OCI_FLAG_NEW_LISTENER 8U
#define OCI_FLAG_TSYNC_ESRCH 16U
#define OCI_FLAG_WAIT_KILLABLE_RECV 32U
#define OCI_FLAG_SPEC_ALLOW_IMPLIED 0x80000000U

struct oci_sock_fprog { unsigned short len; const void *filter; };

static void send_listener(int fd)
{
	struct sync_hdr h = { SYNC_SECCOMP_FD, 0 };
	if (send_fd(g_sync_fd, fd, &h, sizeof(h)) < 0) bail("send the seccomp notify fd to the runtime");
	sync_expect(SYNC_SECCOMP_ACK, NULL, NULL);
	close(fd);
}

static long do_seccomp(unsigned int flags, const struct oci_sock_fprog *prog)
{
	return syscall(SYS_seccomp, OCI_SECCOMP_SET_MODE_FILTER, flags, prog);
}

/* EINVAL: name the first flag this kernel does not know (a NULL program: EFAULT = flag accepted) */
static void explain_flags(unsigned int flags)
{
	static const struct { unsigned int bit; const char *name; } names[] = {
		{ OCI_FLAG_TSYNC, "SECCOMP_FILTER_FLAG_TSYNC" },
		{ OCI_FLAG_LOG, "SECCOMP_FILTER_FLAG_LOG" },
		{ OCI_FLAG_SPEC_ALLOW, "SECCOMP_FILTER_FLAG_SPEC_ALLOW" },
		{ OCI_FLAG_NEW_LISTENER, "SECCOMP_FILTER_FLAG_NEW_LISTENER (SCMP_ACT_NOTIFY)" },
		{ OCI_FLAG_TSYNC_ESRCH, "SECCOMP_FILTER_FLAG_TSYNC_ESRCH (TSYNC with SCMP_ACT_NOTIFY)" },
		{ OCI_FLAG_WAIT_KILLABLE_RECV, "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" },
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		unsigned int bit = names[i].bit;
		if (!(flags & bit)) continue;
		unsigned int probe = bit == OCI_FLAG_WAIT_KILLABLE_RECV ? bit | OCI_FLAG_NEW_LISTENER
			: bit == OCI_FLAG_TSYNC_ESRCH ? bit | OCI_FLAG_TSYNC : bit;
		if (do_seccomp(probe, NULL) < 0 && errno == EINVAL)
			bailx("seccomp flag %s is not supported by this kernel", names[i].name);
	}
}

void load_seccomp(struct plan *p)
{
	if (!p->seccomp) return;
	struct oci_sock_fprog prog = { (unsigned short)(p->seccomp_len / 8), p->seccomp };
	unsigned int flags = p->seccomp_flags & ~OCI_FLAG_SPEC_ALLOW_IMPLIED;
	long rc = do_seccomp(flags, &prog);
	if (rc < 0 && errno == EINVAL && (p->seccomp_flags & OCI_FLAG_SPEC_ALLOW_IMPLIED)) {
		flags &= ~OCI_FLAG_SPEC_ALLOW; /* a kernel before 4.17: runc's default is best-effort */
		rc = do_seccomp(flags, &prog);
	}
	if (rc < 0) {
		int e = errno;
		if (e == EINVAL) explain_flags(flags);
		errno = e;
		bail("load seccomp filter (flags 0x%x)", flags);
	}
	if (flags & OCI_FLAG_NEW_LISTENER) send_listener((int)rc);
	p->seccomp = NULL; /* once */
}
