/* seccomp.c - load the BPF program the parent compiled; hand a notify listener fd to the runtime. */
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
#define OCI_FLAG_NEW_LISTENER 8

struct oci_sock_fprog { unsigned short len; const void *filter; };

static void send_listener(int fd)
{
	struct sync_hdr h = { SYNC_SECCOMP_FD, 0 };
	char cbuf[CMSG_SPACE(sizeof(int))];
	memset(cbuf, 0, sizeof(cbuf));
	struct iovec iov = { &h, sizeof(h) };
	struct msghdr msg = { 0 };
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cbuf;
	msg.msg_controllen = sizeof(cbuf);
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	if (sendmsg(g_sync_fd, &msg, MSG_NOSIGNAL) < 0) bail("send the seccomp notify fd to the runtime");
	sync_expect(SYNC_SECCOMP_ACK, NULL, NULL);
	close(fd);
}

void load_seccomp(struct plan *p)
{
	if (!p->seccomp) return;
	struct oci_sock_fprog prog = { (unsigned short)(p->seccomp_len / 8), p->seccomp };
	long rc = syscall(SYS_seccomp, OCI_SECCOMP_SET_MODE_FILTER, p->seccomp_flags, &prog);
	if (rc < 0) bail("load seccomp filter (flags 0x%x)", p->seccomp_flags);
	if (p->seccomp_flags & OCI_FLAG_NEW_LISTENER) send_listener((int)rc);
	p->seccomp = NULL; /* once */
}
