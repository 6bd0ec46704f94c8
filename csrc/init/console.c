/* console.c - the container's terminal: a pty from the container's own devpts, its master sent to the
 * --console-socket with SCM_RIGHTS (cli-contract.md §8.3), the peer made stdio and controlling tty.
 * No path lookups for the peer (TIOCGPTPEER) and the ptmx handle is verified (CVE-2025-52565). */
#include "init.h"
#include "sys.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#define DEVPTS_SUPER_MAGIC 0x1cd1
#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

void setup_console(struct plan *p, int bind_dev_console)
{
	if (!p->has_console) return;
	if (p->console_fd < 0) bailx("a terminal was requested without a console socket");
	int ptmx = open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (ptmx < 0) bail("open /dev/pts/ptmx in the container");
	struct stat st;
	struct statfs sf;
	if (fstat(ptmx, &st) < 0 || fstatfs(ptmx, &sf) < 0) bail("stat ptmx");
	if (sf.f_type != DEVPTS_SUPER_MAGIC || !S_ISCHR(st.st_mode) || major(st.st_rdev) != 5 || minor(st.st_rdev) != 2 || st.st_ino != 2)
		bailx("/dev/pts/ptmx in the container is not a devpts ptmx: refusing to allocate a terminal");
	int unlock = 0;
	if (ioctl(ptmx, TIOCSPTLCK, &unlock) < 0) bail("unlockpt");
	int peer = ioctl(ptmx, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (peer < 0) bail("open the pty peer (TIOCGPTPEER)");
	if (fstat(peer, &st) < 0 || fstatfs(peer, &sf) < 0) bail("stat pty peer");
	if (sf.f_type != DEVPTS_SUPER_MAGIC || !S_ISCHR(st.st_mode) || major(st.st_rdev) < 136 || major(st.st_rdev) > 143)
		bailx("pty peer is not a devpts pty");
	if (p->console_h || p->console_w) {
		struct winsize ws = { (unsigned short)p->console_h, (unsigned short)p->console_w, 0, 0 };
		if (ioctl(peer, TIOCSWINSZ, &ws) < 0) bail("set the console size");
	}
	if (p->proc_flags & PROC_RELAY_TTY) {
		/* runc (tty.go, console.ClearONLCR) when it relays the terminal itself: what the process
		 * writes reaches the caller's stdout unchanged ("\n", not "\r\n"); before the process runs */
		struct termios t;
		if (tcgetattr(peer, &t) < 0) bail("get the console's attributes");
		t.c_oflag &= ~(tcflag_t)ONLCR;
		if (tcsetattr(peer, TCSANOW, &t) < 0) bail("clear ONLCR on the console");
	}
	if (p->has_user && fchown(peer, p->uid, -1) < 0) bail("chown the console to the process user");
	if (bind_dev_console) {
		/* /dev/console is a bind of the peer, mounted from the fd, never from a path */
		int dev = open_in_root(AT_FDCWD, "/dev", O_PATH | O_DIRECTORY, 0);
		if (dev < 0) bail("open /dev for /dev/console");
		char dp[64];
		snprintf(dp, sizeof(dp), "/proc/self/fd/%d", dev);
		int f = openat(dev, "console", O_CREAT | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (f < 0 && errno != EEXIST) bail("create /dev/console");
		if (f >= 0) close(f);
		int target = openat(dev, "console", O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (target < 0) bail("open /dev/console");
		int tree = sys_open_tree(peer, "", OCI_OPEN_TREE_CLONE | OCI_OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
		if (tree < 0) bail("clone the pty peer for /dev/console");
		if (sys_move_mount(tree, "", target, "", OCI_MOVE_MOUNT_F_EMPTY_PATH | OCI_MOVE_MOUNT_T_EMPTY_PATH) < 0)
			bail("mount /dev/console");
		close(tree);
		close(target);
		close(dev);
	}
	if (send_fd(p->console_fd, ptmx, "/dev/ptmx", 9) < 0) bail("send the console master to the console socket");
	close(ptmx);
	close(p->console_fd);
	p->console_fd = -1;
	for (int i = 0; i < 3; i++)
		if (dup2(peer, i) < 0) bail("dup the console to stdio");
	if (ioctl(0, TIOCSCTTY, 0) < 0) bail("make the console the controlling terminal");
	if (peer > 2) close(peer);
}
