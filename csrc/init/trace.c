/* trace.c - the init's steps, for `ociruntime --trace FILE` / --debug (Chrome Trace Event Format on
 * the runtime's side) and for naming the step a failure happened in.
 *
 * The init's work is a sequence of named steps: step() ends the previous one and starts the next, so
 * the steps cover the init's whole time between them. The name (and the index of the plan record,
 * e.g. the n-th mount) is kept always (two stores: the error report names the step); timestamps are
 * taken and records buffered only when the plan has OP_TRACE. The buffer goes to the runtime as a
 * SYNC_TRACE message on the sync socket just before the next sync message (trace_flush from
 * sync_send), so tracing adds no system call of its own beyond clock reads (vDSO) and that send, and
 * none at all when it is off.
 *
 * Record: "name\tindex\tdetail\tstart_ns\tdur_ns\terrno\n" (CLOCK_MONOTONIC, the clock of Python's
 * time.monotonic_ns). dur_ns -1: a step still running when the socket closes (the exec fifo wait),
 * completed by `start`. */
#include "init.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

int g_trace;
const char *g_step_name;
int g_step_index = -1;
const char *g_step_detail;
static uint64_t g_step_t0;
static char g_buf[SYNC_MAX_PAYLOAD - 64];
static size_t g_len;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void put_clean(char *out, size_t n, const char *s)
{
	size_t i = 0;
	for (; s && s[i] && i + 1 < n; i++) out[i] = (s[i] == '\t' || s[i] == '\n') ? ' ' : s[i];
	out[i] = 0;
}

static void record(uint64_t t0, int64_t dur, int err)
{
	char detail[256];
	put_clean(detail, sizeof(detail), g_step_detail);
	if (g_len + 512 > sizeof(g_buf)) trace_flush();
	int n = snprintf(g_buf + g_len, sizeof(g_buf) - g_len, "%s\t%d\t%s\t%llu\t%lld\t%d\n", g_step_name,
			 g_step_index, detail, (unsigned long long)t0, (long long)dur, err);
	if (n > 0 && (size_t)n < sizeof(g_buf) - g_len) g_len += (size_t)n;
}

void step(const char *name, int index, const char *detail)
{
	if (g_trace) {
		uint64_t t = now_ns();
		if (g_step_name) record(g_step_t0, (int64_t)(t - g_step_t0), 0);
		g_step_t0 = t;
	}
	g_step_name = name;
	g_step_index = index;
	g_step_detail = detail;
}

void step_end(void)
{
	if (g_trace && g_step_name) record(g_step_t0, (int64_t)(now_ns() - g_step_t0), 0);
	g_step_name = NULL;
}

void step_open(const char *name)
{
	step(name, -1, NULL);
	if (g_trace) record(g_step_t0, -1, 0);
	g_step_name = NULL;
}

void step_failed(int err)
{
	if (g_trace && g_step_name) record(g_step_t0, (int64_t)(now_ns() - g_step_t0), err ? err : -1);
}

/* the container init is a fork of stage-1: stage-1's unsent records are stage-1's to send */
void trace_forget(void)
{
	g_len = 0;
	g_step_name = NULL;
}

void trace_flush(void)
{
	if (!g_trace || !g_len || g_sync_fd < 0) return;
	char msg[sizeof(struct sync_hdr) + sizeof(g_buf)];
	struct sync_hdr h = { SYNC_TRACE, 0 };
	memcpy(msg, &h, sizeof(h));
	memcpy(msg + sizeof(h), g_buf, g_len);
	size_t len = sizeof(h) + g_len;
	g_len = 0;
	int saved = errno;
	(void)send(g_sync_fd, msg, len, MSG_NOSIGNAL);
	errno = saved;
}

/* for the error report: "\0name\tindex\tdetail" after the message (the runtime names the step and
 * maps the index to the config's JSON pointer) */
size_t step_context(char *out, size_t n)
{
	if (!g_step_name || n < 2) return 0;
	char detail[256];
	put_clean(detail, sizeof(detail), g_step_detail);
	int k = snprintf(out, n, "%c%s\t%d\t%s", 0, g_step_name, g_step_index, detail);
	return k < 0 ? 0 : ((size_t)k < n ? (size_t)k : n - 1);
}
