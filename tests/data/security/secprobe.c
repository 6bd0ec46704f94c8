/* secprobe.c - a static helper copied into test containers by tests/integration/test_security.py.
 * It only reports what the kernel lets it do; every target is one the test made.
 *
 *   secprobe ids                      print "sid=S pgrp=P"
 *   secprobe tty DELAY PATH           after DELAY s (in a background child when DELAY > 0, the caller
 *                                     returns at once) open PATH (the controlling terminal: /dev/tty)
 *                                     and push "INJECTED\n" into its input queue with TIOCSTI; prints
 *                                     "open=OK|<errno>" and "sti=OK|<errno>"
 *   secprobe kill0 SIG                kill(0, SIG) (ignoring SIG itself): signal the caller's whole process group; prints
 *                                     "kill0=OK|<errno>"
 *   secprobe swap A B SECONDS         renameat2(A, B, RENAME_EXCHANGE) in a loop for SECONDS
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE 2
#endif

static const char *err(int e) { return e ? strerrorname_np(e) : "OK"; }

static int tty(int delay, const char *path)
{
	if (delay > 0) {
		pid_t p = fork();
		if (p < 0) return 1;
		if (p > 0) return 0;
		sleep(delay);
	}
	int fd = open(path, O_RDWR | O_NOCTTY);
	int e = fd < 0 ? errno : 0;
	printf("open=%s\n", err(e));
	if (fd >= 0) {
		const char *s = "INJECTED\n";
		int se = 0;
		for (const char *c = s; *c; c++)
			if (ioctl(fd, TIOCSTI, c) < 0) { se = errno; break; }
		printf("sti=%s\n", err(se));
	}
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "ids")) {
		printf("sid=%d pgrp=%d\n", (int)getsid(0), (int)getpgrp());
		return 0;
	}
	if (argc == 4 && !strcmp(argv[1], "tty")) return tty(atoi(argv[2]), argv[3]);
	if (argc == 3 && !strcmp(argv[1], "kill0")) {
		signal(atoi(argv[2]), SIG_IGN); /* the probe itself survives to report */
		int r = kill(0, atoi(argv[2]));
		printf("kill0=%s\n", err(r < 0 ? errno : 0));
		return 0;
	}
	if (argc == 5 && !strcmp(argv[1], "swap")) {
		time_t end = time(NULL) + atoi(argv[4]);
		long n = 0;
		while (time(NULL) < end)
			for (int i = 0; i < 1000; i++)
				if (syscall(SYS_renameat2, AT_FDCWD, argv[2], AT_FDCWD, argv[3], RENAME_EXCHANGE) == 0) n++;
		printf("swaps=%ld\n", n);
		return 0;
	}
	fprintf(stderr, "usage: secprobe ids | tty DELAY PATH | kill0 SIG | swap A B SECONDS\n");
	return 2;
}
