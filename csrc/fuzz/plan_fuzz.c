/* plan_fuzz.c - libFuzzer harness for plan_decode() (csrc/init/plan.c, included directly).
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
 *         -o plan_fuzz csrc/fuzz/plan_fuzz.c
 *   ASAN_OPTIONS=detect_leaks=0 ./plan_fuzz -max_total_time=60 -detect_leaks=0 CORPUS_DIR
 *
 * (leak detection off: plan_decode leaks p->groups when a plan holds two OP_USER records, see
 * tests/unit/test_plan_fuzz.py; everything else it allocates is released by plan_free() below.)
 *
 * The same file, built without libFuzzer and with -DPLAN_DUMP, is a decoder dump tool used by
 * tests/unit/test_plan.py for a field-by-field round trip of ociruntime/plan.py's encoder:
 *
 *   cc -DPLAN_DUMP -o plan_dump csrc/fuzz/plan_fuzz.c && ./plan_dump PLAN_FILE...
 *
 * prints, for each file in order, one line: the decoded struct plan as a JSON object, or
 * `error: <message>`; exit 0 if every file decoded, else 1 (2: a file could not be read). Built
 * with -fsanitize=address,undefined it decodes thousands of mutated plans in one process.
 *
 * What the fuzz target checks besides "no sanitizer report": a successful decode yields only
 * NUL-terminated strings that lie inside the input buffer, arrays of the announced lengths, and a
 * failed decode always leaves a non-empty, NUL-terminated error message.
 */
#include "../init/plan.c"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t *g_lo, *g_hi;

/* A decoded string must point into the input buffer (or be the "" literal the decoder returns
 * for bad strings, which can only be seen on failure) and be NUL-terminated before its end. */
static void check_str(const char *s)
{
	if (!s) return;
	const uint8_t *u = (const uint8_t *)s;
	if (u < g_lo || u >= g_hi) abort();
	if (!memchr(s, 0, (size_t)(g_hi - u))) abort();
}

static void check_vec(const struct str_vec *v)
{
	if (!v->v) abort();
	for (uint32_t i = 0; i < v->n; i++) check_str(v->v[i]);
	if (v->v[v->n] != NULL) abort(); /* execve needs the NULL terminator */
}

static void check_plan(const struct plan *p)
{
	for (uint32_t i = 0; i < p->njoins; i++) check_str(p->joins[i].path);
	check_str(p->rootfs);
	for (uint32_t i = 0; i < p->nmounts; i++) {
		const struct mount_op *m = &p->mounts[i];
		check_str(m->src); check_str(m->dst); check_str(m->fstype); check_str(m->data);
		if (m->cg2_fallback) check_str(m->cg2_fallback);
		if (m->npflags > 16) abort();
		volatile uint32_t sink = 0;
		for (uint32_t k = 0; k < m->npflags; k++) sink ^= m->pflags[k];
		(void)sink;
	}
	for (uint32_t i = 0; i < p->ndevices; i++) check_str(p->devices[i].path);
	for (uint32_t i = 0; i < p->nsymlinks; i++) { check_str(p->symlinks[i].a); check_str(p->symlinks[i].b); }
	for (uint32_t i = 0; i < p->nmasked; i++) check_str(p->masked[i]);
	for (uint32_t i = 0; i < p->nreadonly; i++) check_str(p->readonly[i]);
	check_str(p->hostname); check_str(p->domainname);
	{
		volatile uint64_t sink = 0;
		if (p->affinity_n > PLAN_MASK_WORDS || p->mpol_n > PLAN_MASK_WORDS) abort();
		for (uint32_t k = 0; k < p->affinity_n; k++) sink ^= p->affinity[k];
		for (uint32_t k = 0; k < p->mpol_n; k++) sink ^= p->mpol_nodes[k];
		(void)sink;
	}
	for (uint32_t i = 0; i < p->nsysctls; i++) { check_str(p->sysctls[i].a); check_str(p->sysctls[i].b); }
	if (p->has_user) {
		volatile uint32_t sink = 0;
		for (uint32_t k = 0; k < p->ngroups; k++) sink ^= p->groups[k];
		(void)sink;
	}
	check_str(p->cwd);
	check_vec(&p->args);
	check_vec(&p->env);
	for (uint32_t i = 0; i < p->nhooks; i++) {
		check_str(p->hooks[i].path);
		check_vec(&p->hooks[i].args);
		check_vec(&p->hooks[i].env);
	}
	for (uint32_t i = 0; i < p->nmkdirs; i++) check_str(p->mkdirs[i].path);
	if (p->seccomp) {
		/* the BPF program is used in place: it must lie inside the buffer, whole sock_filters */
		const uint8_t *b = p->seccomp;
		if (b < g_lo || b > g_hi || p->seccomp_len > (size_t)(g_hi - b)) abort();
		if (p->seccomp_len == 0 || p->seccomp_len % 8) abort();
		volatile uint8_t sink = 0;
		for (uint32_t k = 0; k < p->seccomp_len; k++) sink ^= b[k];
		(void)sink;
	} else if (p->seccomp_len) {
		abort();
	}
	if (p->nlsms > 8) abort();
	for (uint32_t i = 0; i < p->nlsms; i++) {
		check_str(p->lsms[i].procroot); check_str(p->lsms[i].subpath); check_str(p->lsms[i].value);
	}
	check_str(p->mount_label);
}

/* Everything plan_decode() allocates, also after a failed decode (it may stop half-way). */
static void plan_free(struct plan *p)
{
	free(p->joins);
	for (uint32_t i = 0; i < p->nmounts; i++) free((void *)p->mounts[i].pflags);
	free(p->mounts);
	free(p->devices);
	free(p->symlinks);
	free(p->masked);
	free(p->readonly);
	free(p->sysctls);
	free(p->rlimits);
	free(p->groups);
	free(p->args.v);
	free(p->env.v);
	for (uint32_t i = 0; i < p->nhooks; i++) {
		free(p->hooks[i].args.v);
		free(p->hooks[i].env.v);
	}
	free(p->hooks);
	free(p->mkdirs);
	free(p->lsms);
	free(p->affinity);
	free(p->mpol_nodes);
}

#ifndef PLAN_DUMP

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* libFuzzer's buffer is exactly `size` bytes on the heap: ASan catches any read past it */
	struct plan p;
	char err[256];
	memset(err, 0x55, sizeof(err));
	g_lo = data;
	g_hi = data + size;
	int rc = plan_decode(data, size, &p, err, sizeof(err));
	if (rc == 0) {
		check_plan(&p);
	} else {
		if (rc != -1) abort();
		if (!memchr(err, 0, sizeof(err)) || err[0] == 0) abort();
	}
	plan_free(&p);
	return 0;
}

#else /* PLAN_DUMP */

static void jstr(const char *s)
{
	if (!s) { fputs("null", stdout); return; }
	putchar('"');
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (*c == '"' || *c == '\\') printf("\\%c", *c);
		else if (*c < 0x20) printf("\\u%04x", *c);
		else putchar(*c);
	}
	putchar('"');
}

static void jvec(const struct str_vec *v)
{
	putchar('[');
	for (uint32_t i = 0; i < v->n; i++) { if (i) putchar(','); jstr(v->v[i]); }
	putchar(']');
}

static void dump(const struct plan *p)
{
	printf("{\"sync_fd\":%d,\"fifo_fd\":%d,\"console_fd\":%d,\"close_from\":%d",
	       p->sync_fd, p->fifo_fd, p->console_fd, p->close_from);
	printf(",\"joins\":[");
	for (uint32_t i = 0; i < p->njoins; i++) {
		printf("%s{\"flag\":%u,\"path\":", i ? "," : "", p->joins[i].flag);
		jstr(p->joins[i].path);
		putchar('}');
	}
	printf("],\"new_ns\":%u", p->new_ns);
	if (p->has_timens)
		printf(",\"timens\":[%lld,%lld,%lld,%lld]", (long long)p->timens[0], (long long)p->timens[1],
		       (long long)p->timens[2], (long long)p->timens[3]);
	else
		printf(",\"timens\":null");
	if (p->has_oom) printf(",\"oom\":%d", p->oom); else printf(",\"oom\":null");
	printf(",\"rootfs\":"); jstr(p->rootfs);
	printf(",\"root_propagation\":%u,\"root_flags\":%u", p->root_propagation, p->root_flags);
	printf(",\"mounts\":[");
	for (uint32_t i = 0; i < p->nmounts; i++) {
		const struct mount_op *m = &p->mounts[i];
		printf("%s{\"src\":", i ? "," : ""); jstr(m->src);
		printf(",\"dst\":"); jstr(m->dst);
		printf(",\"fstype\":"); jstr(m->fstype);
		printf(",\"data\":"); jstr(m->data);
		printf(",\"flags\":%u,\"kind\":%u,\"attr_set\":%llu,\"attr_clr\":%llu,\"pflags\":[", m->flags, m->kind,
		       (unsigned long long)m->attr_set, (unsigned long long)m->attr_clr);
		for (uint32_t k = 0; k < m->npflags; k++) printf("%s%u", k ? "," : "", m->pflags[k]);
		printf("]");
		if (m->idmap_fd >= 0)
			printf(",\"idmap\":{\"fd\":%d,\"flags\":%u,\"index\":%u}", m->idmap_fd, m->idmap_flags, m->idmap_index);
		if (m->cg2_fallback) {
			printf(",\"cgroup2_fallback\":{\"path\":"); jstr(m->cg2_fallback);
			printf(",\"flags\":%u}", m->cg2_flags);
		}
		printf("}");
	}
	printf("],\"devices\":[");
	for (uint32_t i = 0; i < p->ndevices; i++) {
		const struct device_op *d = &p->devices[i];
		printf("%s{\"path\":", i ? "," : ""); jstr(d->path);
		printf(",\"mode\":%u,\"major\":%u,\"minor\":%u,\"uid\":%u,\"gid\":%u,\"bind\":%u}", d->mode, d->major,
		       d->minor, d->uid, d->gid, d->bind);
	}
	printf("],\"symlinks\":[");
	for (uint32_t i = 0; i < p->nsymlinks; i++) {
		printf("%s[", i ? "," : ""); jstr(p->symlinks[i].a); putchar(','); jstr(p->symlinks[i].b); putchar(']');
	}
	printf("],\"masked\":[");
	for (uint32_t i = 0; i < p->nmasked; i++) { if (i) putchar(','); jstr(p->masked[i]); }
	printf("],\"readonly\":[");
	for (uint32_t i = 0; i < p->nreadonly; i++) { if (i) putchar(','); jstr(p->readonly[i]); }
	printf("],\"hostname\":"); jstr(p->hostname);
	printf(",\"domainname\":"); jstr(p->domainname);
	printf(",\"sysctls\":[");
	for (uint32_t i = 0; i < p->nsysctls; i++) {
		printf("%s[", i ? "," : ""); jstr(p->sysctls[i].a); putchar(','); jstr(p->sysctls[i].b); putchar(']');
	}
	printf("],\"rlimits\":[");
	for (uint32_t i = 0; i < p->nrlimits; i++)
		printf("%s[%u,%llu,%llu]", i ? "," : "", p->rlimits[i].resource, (unsigned long long)p->rlimits[i].soft,
		       (unsigned long long)p->rlimits[i].hard);
	printf("]");
	if (p->has_caps)
		printf(",\"caps\":[%llu,%llu,%llu,%llu,%llu]", (unsigned long long)p->caps[0],
		       (unsigned long long)p->caps[1], (unsigned long long)p->caps[2], (unsigned long long)p->caps[3],
		       (unsigned long long)p->caps[4]);
	else
		printf(",\"caps\":null");
	if (p->has_user) {
		printf(",\"user\":{\"uid\":%u,\"gid\":%u,\"umask\":%u,\"flags\":%u,\"groups\":[", p->uid, p->gid,
		       p->umask, p->user_flags);
		for (uint32_t k = 0; k < p->ngroups; k++) printf("%s%u", k ? "," : "", p->groups[k]);
		printf("]}");
	} else {
		printf(",\"user\":null");
	}
	printf(",\"cwd\":"); jstr(p->cwd);
	printf(",\"args\":"); jvec(&p->args);
	printf(",\"env\":"); jvec(&p->env);
	printf(",\"proc_flags\":%u", p->proc_flags);
	printf(",\"hooks\":[");
	for (uint32_t i = 0; i < p->nhooks; i++) {
		const struct hook_op *h = &p->hooks[i];
		printf("%s{\"kind\":%u,\"timeout\":%d,\"path\":", i ? "," : "", h->kind, h->timeout);
		jstr(h->path);
		printf(",\"args\":"); jvec(&h->args);
		printf(",\"env\":"); jvec(&h->env);
		putchar('}');
	}
	printf("],\"mkdirs\":[");
	for (uint32_t i = 0; i < p->nmkdirs; i++) {
		printf("%s[", i ? "," : ""); jstr(p->mkdirs[i].path); printf(",%u]", p->mkdirs[i].mode);
	}
	printf("]");
	if (p->has_console) printf(",\"console\":[%u,%u]", p->console_h, p->console_w);
	else printf(",\"console\":null");
	if (p->seccomp) {
		printf(",\"seccomp\":{\"flags\":%u,\"bpf\":\"", p->seccomp_flags);
		for (uint32_t k = 0; k < p->seccomp_len; k++) printf("%02x", p->seccomp[k]);
		printf("\"}");
	} else {
		printf(",\"seccomp\":null");
	}
	printf(",\"netdevs\":%u", p->netdevs);
	printf(",\"lsms\":[");
	for (uint32_t i = 0; i < p->nlsms; i++) {
		printf("%s{\"lsm\":%u,\"flags\":%u,\"procroot\":", i ? "," : "", p->lsms[i].lsm, p->lsms[i].flags);
		jstr(p->lsms[i].procroot);
		printf(",\"subpath\":"); jstr(p->lsms[i].subpath);
		printf(",\"value\":"); jstr(p->lsms[i].value);
		putchar('}');
	}
	printf("],\"mount_label\":"); jstr(p->mount_label);
	if (p->has_sched)
		printf(",\"sched\":{\"policy\":%u,\"nice\":%d,\"priority\":%u,\"flags\":%llu,\"runtime\":%llu,"
		       "\"deadline\":%llu,\"period\":%llu}", p->sched_policy, p->sched_nice, p->sched_priority,
		       (unsigned long long)p->sched_flags, (unsigned long long)p->sched_runtime,
		       (unsigned long long)p->sched_deadline, (unsigned long long)p->sched_period);
	else
		printf(",\"sched\":null");
	if (p->has_ioprio) printf(",\"ioprio\":[%u,%u]", p->ioprio_class, p->ioprio_level);
	else printf(",\"ioprio\":null");
	if (p->has_affinity) {
		printf(",\"affinity\":{\"flags\":%u,\"mask\":[", p->affinity_flags);
		for (uint32_t k = 0; k < p->affinity_n; k++) printf("%s%llu", k ? "," : "", (unsigned long long)p->affinity[k]);
		printf("]}");
	} else {
		printf(",\"affinity\":null");
	}
	if (p->has_personality) printf(",\"personality\":%u", p->personality);
	else printf(",\"personality\":null");
	if (p->has_mempolicy) {
		printf(",\"mempolicy\":{\"mode\":%u,\"flags\":%u,\"nodes\":[", p->mpol_mode, p->mpol_flags);
		for (uint32_t k = 0; k < p->mpol_n; k++) printf("%s%llu", k ? "," : "", (unsigned long long)p->mpol_nodes[k]);
		printf("]}");
	} else {
		printf(",\"mempolicy\":null");
	}
	printf("}\n");
}

/* 0: decoded (JSON line printed), 1: rejected (`error: ...` printed), 2: cannot read the file */
static int dump_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) { perror(path); return 2; }
	size_t cap = 1 << 16, len = 0;
	uint8_t *buf = malloc(cap);
	for (;;) {
		if (!buf) { perror("malloc"); exit(2); }
		if (len == cap) { cap *= 2; buf = realloc(buf, cap); continue; }
		size_t n = fread(buf + len, 1, cap - len, f);
		if (n == 0) break;
		len += n;
	}
	fclose(f);
	/* an exact-size copy, so that a sanitizer build catches reads past the end */
	uint8_t *exact = malloc(len ? len : 1);
	if (!exact) { perror("malloc"); exit(2); }
	memcpy(exact, buf, len);
	free(buf);
	g_lo = exact;
	g_hi = exact + len;
	struct plan p;
	char err[256];
	int rc = plan_decode(exact, len, &p, err, sizeof(err));
	if (rc < 0) {
		printf("error: %s\n", err);
	} else {
		check_plan(&p);
		dump(&p);
	}
	fflush(stdout);
	plan_free(&p);
	free(exact);
	return rc < 0 ? 1 : 0;
}

/* plan_dump FILE...: one output line per file, in order; exit 0 if every file decoded, else 1 */
int main(int argc, char **argv)
{
	if (argc < 2) { fprintf(stderr, "usage: %s PLAN_FILE...\n", argv[0]); return 2; }
	int status = 0;
	for (int i = 1; i < argc; i++) {
		int rc = dump_file(argv[i]);
		if (rc == 2) return 2;
		if (rc) status = 1;
	}
	return status;
}

#endif
