/* plan.c - bounds-checked decoder of the plan (see plan.h). Strings point into the buffer, which
 * stays mapped while the init needs them. Every length is checked before use. */
#include "init.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rd { const uint8_t *p; size_t left; int bad; };

static int take(struct rd *r, void *dst, size_t n)
{
	if (r->bad || r->left < n) { r->bad = 1; if (dst) memset(dst, 0, n); return -1; }
	if (dst) memcpy(dst, r->p, n);
	r->p += n; r->left -= n;
	return 0;
}
static uint32_t u32(struct rd *r) { uint32_t v; take(r, &v, 4); return v; }
static int32_t i32(struct rd *r) { int32_t v; take(r, &v, 4); return v; }
static uint64_t u64(struct rd *r) { uint64_t v; take(r, &v, 8); return v; }
static int64_t i64(struct rd *r) { int64_t v; take(r, &v, 8); return v; }
static const char *str(struct rd *r)
{
	uint32_t n = u32(r);
	if (r->bad || n == 0 || n > r->left) { r->bad = 1; return ""; }
	const char *s = (const char *)r->p;
	if (s[n - 1] != 0 || memchr(s, 0, n - 1)) { r->bad = 1; return ""; }
	take(r, NULL, n);
	return s;
}
static struct str_vec strv(struct rd *r)
{
	struct str_vec v = { 0, NULL };
	uint32_t n = u32(r);
	if (r->bad || n > r->left / 5) { r->bad = 1; n = 0; }
	v.v = calloc(n + 1, sizeof(char *));
	if (!v.v) { r->bad = 1; return v; }
	for (uint32_t i = 0; i < n && !r->bad; i++) v.v[i] = str(r);
	v.n = r->bad ? 0 : n;
	return v;
}

#define GROW(arr, n) do { void *_t = realloc((arr), sizeof(*(arr)) * ((n) + 1)); if (!_t) return fail(err, errlen, "out of memory"); (arr) = _t; } while (0)

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

int plan_decode(const uint8_t *buf, size_t len, struct plan *p, char *err, size_t errlen)
{
	memset(p, 0, sizeof(*p));
	p->fifo_fd = p->console_fd = -1;
	p->sync_fd = -1;
	p->target_pidfd = p->target_rootfd = -1;
	p->devnodes_fd = -1;
	p->umask = UMASK_UNSET;
	p->env.v = calloc(1, sizeof(char *));
	p->args.v = calloc(1, sizeof(char *));
	if (len < 12 || len > PLAN_MAX_SIZE) return fail(err, errlen, "plan: bad size %zu", len);
	if (memcmp(buf, PLAN_MAGIC, 4) != 0) return fail(err, errlen, "plan: bad magic");
	struct rd r = { buf + 4, len - 4, 0 };
	uint32_t version = u32(&r), count = u32(&r);
	if (version != PLAN_VERSION) return fail(err, errlen, "plan: version %u, want %u", version, PLAN_VERSION);
	for (uint32_t i = 0; i < count; i++) {
		uint32_t op = u32(&r), rlen = u32(&r);
		if (r.bad || rlen > r.left) return fail(err, errlen, "plan: record %u truncated", i);
		struct rd q = { r.p, rlen, 0 };
		take(&r, NULL, rlen);
		switch (op) {
		case OP_FDS:
			p->sync_fd = (int)u32(&q); p->fifo_fd = i32(&q); p->console_fd = i32(&q); p->close_from = (int)u32(&q);
			break;
		case OP_NS_JOIN:
			GROW(p->joins, p->njoins);
			p->joins[p->njoins].flag = u32(&q);
			p->joins[p->njoins].path = str(&q);
			p->joins[p->njoins].fd = -1;
			p->njoins++;
			break;
		case OP_NS_NEW: p->new_ns = u32(&q); break;
		case OP_TIMENS:
			p->has_timens = 1;
			for (int k = 0; k < 4; k++) p->timens[k] = i64(&q);
			break;
		case OP_OOM_SCORE_ADJ: p->has_oom = 1; p->oom = i32(&q); break;
		case OP_ROOTFS:
			p->rootfs = str(&q); p->root_propagation = u32(&q); p->root_flags = u32(&q);
			break;
		case OP_MOUNT: {
			GROW(p->mounts, p->nmounts);
			struct mount_op *m = &p->mounts[p->nmounts];
			memset(m, 0, sizeof(*m)); /* realloc'd: late_ro, cg2_fallback, ... start cleared */
			m->src = str(&q); m->dst = str(&q); m->fstype = str(&q); m->data = str(&q);
			m->flags = u32(&q); m->kind = u32(&q); m->attr_set = u64(&q); m->attr_clr = u64(&q);
			m->npflags = u32(&q);
			if (q.bad || m->npflags > 16 || m->npflags * 4u > q.left) return fail(err, errlen, "plan: mount %u malformed", p->nmounts);
			uint32_t *pf = calloc(m->npflags + 1, 4);
			if (!pf) return fail(err, errlen, "out of memory");
			for (uint32_t k = 0; k < m->npflags; k++) pf[k] = u32(&q);
			m->pflags = pf;
			m->idmap_fd = m->tree_fd = -1;
			p->nmounts++;
			break;
		}
		case OP_MOUNT_IDMAP: {
			if (!p->nmounts) return fail(err, errlen, "plan: idmap record %u without a mount before it", i);
			struct mount_op *m = &p->mounts[p->nmounts - 1];
			if (m->idmap_fd >= 0) return fail(err, errlen, "plan: mount %u has two idmap records", p->nmounts - 1);
			int32_t fd = i32(&q);
			m->idmap_flags = u32(&q);
			m->idmap_index = u32(&q);
			if (q.bad || fd < 0 || (m->idmap_flags & ~IDMAP_RECURSIVE))
				return fail(err, errlen, "plan: idmap record %u malformed", i);
			m->idmap_fd = fd;
			break;
		}
		case OP_CGROUP2_FALLBACK: {
			if (!p->nmounts) return fail(err, errlen, "plan: cgroup2 fallback record %u without a mount before it", i);
			struct mount_op *m = &p->mounts[p->nmounts - 1];
			if (m->cg2_fallback) return fail(err, errlen, "plan: mount %u has two cgroup2 fallbacks", p->nmounts - 1);
			const char *path = str(&q);
			m->cg2_flags = u32(&q);
			if (q.bad || !path || path[0] != '/' || strcmp(m->fstype, "cgroup2") != 0 ||
			    (m->kind & 0xffu) != MOUNT_KIND_FS || (m->cg2_flags & ~CG2_MASK_MISSING))
				return fail(err, errlen, "plan: cgroup2 fallback record %u malformed", i);
			m->cg2_fallback = path;
			break;
		}
		case OP_DEVICE: {
			GROW(p->devices, p->ndevices);
			struct device_op *d = &p->devices[p->ndevices++];
			d->path = str(&q); d->mode = u32(&q); d->major = u32(&q); d->minor = u32(&q);
			d->uid = u32(&q); d->gid = u32(&q); d->bind = u32(&q);
			break;
		}
		case OP_SYMLINK:
			GROW(p->symlinks, p->nsymlinks);
			p->symlinks[p->nsymlinks].a = str(&q);
			p->symlinks[p->nsymlinks].b = str(&q);
			p->nsymlinks++;
			break;
		case OP_MASK: GROW(p->masked, p->nmasked); p->masked[p->nmasked++] = str(&q); break;
		case OP_READONLY: GROW(p->readonly, p->nreadonly); p->readonly[p->nreadonly++] = str(&q); break;
		case OP_HOSTNAME: p->hostname = str(&q); break;
		case OP_DOMAINNAME: p->domainname = str(&q); break;
		case OP_SYSCTL:
			GROW(p->sysctls, p->nsysctls);
			p->sysctls[p->nsysctls].a = str(&q);
			p->sysctls[p->nsysctls].b = str(&q);
			p->nsysctls++;
			break;
		case OP_RLIMIT:
			GROW(p->rlimits, p->nrlimits);
			p->rlimits[p->nrlimits].resource = u32(&q);
			p->rlimits[p->nrlimits].soft = u64(&q);
			p->rlimits[p->nrlimits].hard = u64(&q);
			p->nrlimits++;
			break;
		case OP_CAPS:
			p->has_caps = 1;
			for (int k = 0; k < 5; k++) p->caps[k] = u64(&q);
			break;
		case OP_USER:
			p->has_user = 1;
			p->uid = u32(&q); p->gid = u32(&q); p->umask = u32(&q); p->user_flags = u32(&q);
			p->ngroups = u32(&q);
			if (q.bad || p->ngroups > 65536 || p->ngroups * 4u > q.left) return fail(err, errlen, "plan: user malformed");
			free(p->groups);
			p->groups = calloc(p->ngroups + 1, 4);
			if (!p->groups) return fail(err, errlen, "out of memory");
			for (uint32_t k = 0; k < p->ngroups; k++) p->groups[k] = u32(&q);
			break;
		case OP_PROCESS:
			p->cwd = str(&q);
			free(p->args.v); free(p->env.v);
			p->args = strv(&q); p->env = strv(&q); p->proc_flags = u32(&q);
			break;
		case OP_HOOK: {
			GROW(p->hooks, p->nhooks);
			struct hook_op *h = &p->hooks[p->nhooks++];
			h->kind = u32(&q); h->timeout = i32(&q); h->path = str(&q);
			h->args = strv(&q); h->env = strv(&q);
			break;
		}
		case OP_MKDIR:
			GROW(p->mkdirs, p->nmkdirs);
			p->mkdirs[p->nmkdirs].path = str(&q);
			p->mkdirs[p->nmkdirs].mode = u32(&q);
			p->nmkdirs++;
			break;
		case OP_SECCOMP: {
			p->seccomp_flags = u32(&q);
			uint32_t n = u32(&q);
			if (q.bad || n > q.left || n % 8 || n == 0 || n / 8 > 65535) return fail(err, errlen, "plan: seccomp program malformed");
			p->seccomp = q.p;
			p->seccomp_len = n;
			take(&q, NULL, n);
			break;
		}
		case OP_LSM_ATTR: {
			if (p->nlsms >= 8) return fail(err, errlen, "plan: too many LSM records");
			GROW(p->lsms, p->nlsms);
			struct lsm_op *l = &p->lsms[p->nlsms++];
			l->lsm = u32(&q); l->flags = u32(&q);
			l->procroot = str(&q); l->subpath = str(&q); l->value = str(&q);
			if (!q.bad && ((l->lsm != LSM_APPARMOR && l->lsm != LSM_SELINUX) || (l->flags & ~LSM_F_FAKE_PROC) ||
				       l->procroot[0] != '/' || l->subpath[0] == '/' || !l->value[0]))
				return fail(err, errlen, "plan: LSM record %u malformed", p->nlsms - 1);
			break;
		}
		case OP_MOUNT_LABEL: p->mount_label = str(&q); break;
		case OP_SCHED:
			p->has_sched = 1;
			p->sched_policy = u32(&q); p->sched_nice = i32(&q); p->sched_priority = u32(&q);
			p->sched_flags = u64(&q); p->sched_runtime = u64(&q); p->sched_deadline = u64(&q);
			p->sched_period = u64(&q);
			break;
		case OP_IOPRIO:
			p->has_ioprio = 1;
			p->ioprio_class = u32(&q); p->ioprio_level = u32(&q);
			if (!q.bad && (p->ioprio_class < 1 || p->ioprio_class > 3 || p->ioprio_level > 7))
				return fail(err, errlen, "plan: ioprio %u/%u out of range", p->ioprio_class, p->ioprio_level);
			break;
		case OP_CPU_AFFINITY:
		case OP_MEMPOLICY: {
			/* a mask of n u64 words ends the record; the count is stored only with its array */
			uint32_t *count = op == OP_MEMPOLICY ? &p->mpol_n : &p->affinity_n;
			uint64_t **mask = op == OP_MEMPOLICY ? &p->mpol_nodes : &p->affinity;
			if (op == OP_MEMPOLICY) { p->has_mempolicy = 1; p->mpol_mode = u32(&q); p->mpol_flags = u32(&q); }
			else { p->has_affinity = 1; p->affinity_flags = u32(&q); }
			uint32_t n = u32(&q);
			if (q.bad || n > PLAN_MASK_WORDS || n * 8u != q.left)
				return fail(err, errlen, "plan: %s mask malformed", op == OP_MEMPOLICY ? "node" : "cpu");
			uint64_t *words = calloc(n + 1, 8);
			if (!words) return fail(err, errlen, "out of memory");
			for (uint32_t k = 0; k < n; k++) words[k] = u64(&q);
			free(*mask);
			*mask = words;
			*count = n;
			break;
		}
		case OP_PERSONALITY: p->has_personality = 1; p->personality = u32(&q); break;
		case OP_CONSOLE:
			p->has_console = 1;
			p->console_h = u32(&q);
			p->console_w = u32(&q);
			break;
		case OP_NETDEV: p->netdevs = u32(&q); break;
		case OP_TRACE: p->trace = 1; (void)u32(&q); break;
		case OP_TEST_REMOUNT_DELAY: p->test_remount_delay_us = u32(&q); break;
		case OP_EXEC_TARGET:
			p->target_pidfd = i32(&q);
			p->target_rootfd = i32(&q);
			if (p->target_pidfd < 0 || p->target_rootfd < -1)
				return fail(err, errlen, "plan: record %u: bad exec target fds", i);
			break;
		default:
			return fail(err, errlen, "plan: unknown op %u in record %u", op, i);
		}
		if (q.bad) return fail(err, errlen, "plan: record %u (op %u) malformed", i, op);
		if (q.left) return fail(err, errlen, "plan: record %u (op %u) has %zu trailing bytes", i, op, q.left);
	}
	if (r.bad) return fail(err, errlen, "plan: truncated");
	if (r.left) return fail(err, errlen, "plan: %zu trailing bytes", r.left);
	return 0;
}
