/* controller/exec-log: a test-only executor (compiled with -Dtest_hooks=true, chosen by
 * CAIRN_TEST_EXECUTOR=log). Each step appends one line to CAIRN_TEST_EXEC_LOG, so tests can
 * count how often each step ran per host; CAIRN_TEST_FAIL_STEP=STEP[:HOST] fails a step. It
 * lets the job machinery be tested end to end without hosts; real deploys use exec-agent.c. */
#ifdef CAIRN_TEST_HOOKS
#include "controller/controller-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int log_line(const char *fmt, ...)
{
	const char *path = getenv("CAIRN_TEST_EXEC_LOG");
	char line[512];
	va_list ap;
	if (!path)
		return 0;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	int r = fs_write_all(fd, line, (size_t)n);
	close(fd);
	return r;
}

static bool matches(const char *env, const char *step, const char *host)
{
	const char *v = getenv(env);
	size_t n = strlen(step);
	if (!v || strncmp(v, step, n) || (v[n] && v[n] != ':'))
		return false;
	return !v[n] || !strcmp(v + n + 1, host);
}

static int lx_step(struct executor *x, const struct exec_job *j, const char *host,
		   enum deploy_step s, struct buf *detail, struct err *e)
{
	(void)x;
	if (matches("CAIRN_TEST_FAIL_STEP", deploy_step_name(s), host))
		return err_set(e, CAIRN_ECHECK, "test hook: %s fails on %s", deploy_step_name(s), host);
	int r = log_line("job=%lld host=%s step=%s release=%s\n", (long long)j->id, host,
			 deploy_step_name(s), j->release);
	if (r < 0)
		return err_set(e, -r, "test log: %s", strerror(-r));
	buf_addf(detail, "{\"executor\":\"log\"}");
	return 0;
}

static int lx_rollback(struct executor *x, const struct exec_job *j, const char *host,
		       struct buf *detail, struct err *e)
{
	(void)x, (void)e;
	log_line("job=%lld host=%s step=rollback release=%s\n", (long long)j->id, host,
		 j->from_release);
	buf_addf(detail, "{\"executor\":\"log\"}");
	return 0;
}

static int lx_reconcile(struct executor *x, const struct exec_job *j, const char *host,
			enum deploy_step s, struct err *e)
{
	const char *path = getenv("CAIRN_TEST_EXEC_LOG");
	char want[256];
	struct buf b;
	(void)x;
	if (!path)
		return 0;
	buf_init(&b, 64 * 1024 * 1024);
	if (fs_read_file(path, &b, e) < 0) {
		buf_done(&b);
		return 0;
	}
	snprintf(want, sizeof(want), "job=%lld host=%s step=%s ", (long long)j->id, host,
		 deploy_step_name(s));
	bool found = strstr(buf_str(&b), want) != NULL;
	buf_done(&b);
	return found;
}

static int lx_stop(struct executor *x, const char *app, const char *host, struct buf *detail,
		   struct err *e)
{
	(void)x, (void)e;
	log_line("stop app=%s host=%s\n", app, host);
	buf_addf(detail, "{\"executor\":\"log\"}");
	return 0;
}

static int lx_remove(struct executor *x, const char *app, const char *host, struct buf *detail,
		     struct err *e)
{
	(void)x, (void)e;
	log_line("remove app=%s host=%s\n", app, host);
	buf_addf(detail, "{\"executor\":\"log\"}");
	return 0;
}

static int lx_instances(struct executor *x, const char *app, const char *host, int64_t bound_ms,
			json_t **out, struct err *e)
{
	(void)x, (void)app, (void)host, (void)bound_ms, (void)e;
	*out = json_array();
	return 0;
}

static void lx_free(struct executor *x)
{
	free(x);
}

static const struct executor_ops log_ops = {
	.name = "log",
	.step = lx_step,
	.rollback = lx_rollback,
	.reconcile = lx_reconcile,
	.instances = lx_instances,
	.stop = lx_stop,
	.remove = lx_remove,
	.free = lx_free,
};

struct executor *exec_log_new(void)
{
	struct executor *x = calloc(1, sizeof(*x));
	if (x)
		x->ops = &log_ops;
	return x;
}
#endif
