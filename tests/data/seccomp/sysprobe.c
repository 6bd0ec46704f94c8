/* sysprobe - make one raw system call and report the result (built static by the seccomp tests and
 * copied into the busybox rootfs as /bin/sysprobe; busybox cannot pass arbitrary syscall arguments).
 *
 *   sysprobe NR [ARG...]       syscall(NR, ARG...)            (x86_64 ABI, up to 6 args, strtoull base 0)
 *   sysprobe -32 NR [ARG...]   the same through int $0x80     (i386 ABI, 5 args: seccomp sees AUDIT_ARCH_I386)
 *
 * Prints "ok RET" or "err ERRNO STRERROR" and exits 0 (1 on usage errors). A clone(2) child _exits at
 * once and is reaped, so `sysprobe 56 FLAGS` probes clone flags safely. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static long int80(long nr, const unsigned long *a)
{
#if defined(__x86_64__)
	long ret;
	/* i386 ABI: ebx, ecx, edx, esi, edi (the 6th argument, ebp, is not supported); the kernel may
	 * clobber r8-r11 on the way back */
	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "a"(nr), "b"(a[0]), "c"(a[1]), "d"(a[2]), "S"(a[3]), "D"(a[4])
			 : "memory", "cc", "r8", "r9", "r10", "r11");
	if (ret < 0 && ret > -4096) { errno = (int)-ret; return -1; }
	return ret;
#else
	(void)nr; (void)a;
	errno = ENOSYS;
	return -1;
#endif
}

int main(int argc, char **argv)
{
	int i = 1, compat = 0;
	if (argc > 1 && strcmp(argv[1], "-32") == 0) { compat = 1; i++; }
	if (i >= argc) { fprintf(stderr, "usage: sysprobe [-32] NR [ARG...]\n"); return 1; }
	long nr = strtol(argv[i++], NULL, 0);
	unsigned long a[6] = { 0 };
	for (int k = 0; k < 6 && i < argc; k++, i++) a[k] = strtoull(argv[i], NULL, 0);
	errno = 0;
	long ret = compat ? int80(nr, a) : syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
	int e = errno;
	if (!compat && nr == SYS_clone && ret == 0) _exit(0);
	if (!compat && nr == SYS_clone && ret > 0) waitpid((pid_t)ret, NULL, __WALL);
	if (ret == -1 && e) printf("err %d %s\n", e, strerror(e));
	else printf("ok %ld\n", ret);
	return 0;
}
