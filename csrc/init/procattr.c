/* procattr.c - per-process kernel attributes of the container process: CPU affinity, scheduler
 * (sched_setattr), I/O priority, NUMA memory policy and personality. All of them are inherited
 * across fork and kept across execve, so the init sets them on itself. */
#include "init.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_sched_setattr
#define SYS_sched_setattr 314 /* x86_64 */
#endif

/* linux/sched/types.h, SCHED_ATTR_SIZE_VER1 (utilization clamps included, as runc sends it) */
struct oci_sched_attr {
	uint32_t size, sched_policy;
	uint64_t sched_flags;
	int32_t sched_nice;
	uint32_t sched_priority;
	uint64_t sched_runtime, sched_deadline, sched_period;
	uint32_t sched_util_min, sched_util_max;
};

static const char *policy_name(uint32_t p)
{
	static const char *names[] = { "SCHED_OTHER", "SCHED_FIFO", "SCHED_RR", "SCHED_BATCH", "SCHED_ISO",
				       "SCHED_IDLE", "SCHED_DEADLINE" };
	return p < sizeof(names) / sizeof(names[0]) ? names[p] : "?";
}

static const char *mpol_name(uint32_t m)
{
	static const char *names[] = { "MPOL_DEFAULT", "MPOL_PREFERRED", "MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_LOCAL",
				       "MPOL_PREFERRED_MANY", "MPOL_WEIGHTED_INTERLEAVE" };
	return m < sizeof(names) / sizeof(names[0]) ? names[m] : "?";
}

/* "0-3,7" of a mask, for error messages */
static void mask_text(const uint64_t *w, uint32_t n, char *buf, size_t len)
{
	size_t off = 0;
	buf[0] = 0;
	uint32_t bits = n * 64;
	for (uint32_t i = 0; i < bits && off + 24 < len; i++) {
		if (!(w[i / 64] >> (i % 64) & 1)) continue;
		uint32_t j = i;
		while (j + 1 < bits && (w[(j + 1) / 64] >> ((j + 1) % 64) & 1)) j++;
		off += (size_t)snprintf(buf + off, len - off, off ? ",%u" : "%u", i);
		if (j > i) off += (size_t)snprintf(buf + off, len - off, "-%u", j);
		i = j;
	}
}

void apply_cpu_affinity(struct plan *p)
{
	if (!p->has_affinity) return;
	if (p->affinity_flags & AFFINITY_RESET) {
		/* every possible CPU: the kernel clamps the mask to its CPUs and to the cgroup's cpuset */
		static uint64_t all[PLAN_MASK_WORDS / 8];
		memset(all, 0xff, sizeof(all));
		if (syscall(SYS_sched_setaffinity, 0, sizeof(all), all) < 0)
			bail("reset the CPU affinity");
		return;
	}
	if (syscall(SYS_sched_setaffinity, 0, (size_t)p->affinity_n * 8, p->affinity) < 0) {
		int e = errno;
		char cpus[256];
		mask_text(p->affinity, p->affinity_n, cpus, sizeof(cpus));
		errno = e;
		bail("error setting final CPU affinity (execCPUAffinity.final \"%s\"; none of them may be usable "
		     "in the container's cpuset)", cpus);
	}
}

void apply_sched_and_io(struct plan *p)
{
	if (p->has_sched) {
		struct oci_sched_attr a;
		memset(&a, 0, sizeof(a));
		a.size = sizeof(a);
		a.sched_policy = p->sched_policy;
		a.sched_flags = p->sched_flags;
		a.sched_nice = p->sched_nice;
		a.sched_priority = p->sched_priority;
		a.sched_runtime = p->sched_runtime;
		a.sched_deadline = p->sched_deadline;
		a.sched_period = p->sched_period;
		if (syscall(SYS_sched_setattr, 0, &a, 0) < 0) {
			if (errno == EPERM && (p->sched_policy == 1 || p->sched_policy == 2))
				bail("error setting scheduler %s priority %u (real-time needs CAP_SYS_NICE outside any "
				     "user namespace and, with cgroup v1 RT group scheduling, "
				     "linux.resources.cpu.realtimeRuntime)", policy_name(p->sched_policy), p->sched_priority);
			if ((errno == EPERM || errno == EBUSY) && p->sched_policy == 6)
				bail("error setting scheduler SCHED_DEADLINE (needs CAP_SYS_NICE outside any user namespace, "
				     "free deadline bandwidth and a cpuset spanning its root domain)");
			if (errno == EOPNOTSUPP && (p->sched_flags & 0x60))
				bail("error setting scheduler %s (SCHED_FLAG_UTIL_CLAMP_* needs a kernel built with "
				     "CONFIG_UCLAMP_TASK)", policy_name(p->sched_policy));
			bail("error setting scheduler %s", policy_name(p->sched_policy));
		}
	}
	if (p->has_ioprio) {
		/* IOPRIO_WHO_PROCESS, this process: inherited by everything it starts. (runc uses
		 * IOPRIO_WHO_PGRP, which for `exec` would also reach the caller's process group.) */
		uint32_t v = p->ioprio_class << 13 | p->ioprio_level;
		if (syscall(SYS_ioprio_set, 1, 0, v) < 0)
			bail("error setting I/O priority class %u level %u", p->ioprio_class, p->ioprio_level);
	}
}

void apply_mempolicy(struct plan *p)
{
	if (p->has_mempolicy) {
		unsigned long maxnode = p->mpol_n ? (unsigned long)p->mpol_n * 64 + 1 : 0;
		if (syscall(SYS_set_mempolicy, (int)(p->mpol_mode | p->mpol_flags), p->mpol_n ? p->mpol_nodes : NULL,
			    maxnode) < 0) {
			int e = errno;
			char nodes[256];
			mask_text(p->mpol_nodes, p->mpol_n, nodes, sizeof(nodes));
			errno = e;
			bail("error setting memory policy %s nodes \"%s\" flags 0x%x (set_mempolicy; nodes must have "
			     "memory and be in the container's cpuset.mems)", mpol_name(p->mpol_mode), nodes, p->mpol_flags);
		}
	}
}

void apply_personality(struct plan *p)
{
	if (p->has_personality && personality(p->personality) < 0)
		bail("error setting personality 0x%x", p->personality);
}
