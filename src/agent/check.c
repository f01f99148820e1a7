/* agent check: one acceptance request against one instance, sent and judged on the host that
 * runs it (so it works the same for local and SSH hosts) — on a worker thread, libcurl through
 * base/httpc. The answer says whether it passed, why not, and the first bytes of the body. */
#include "agent/agent-internal.h"

#include "base/httpc.h"

#include <errno.h>
#include <event2/http.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_BODY_MAX (1024 * 1024) /* read at most this much of the answer */
#define SNIPPET_MAX 300

struct check_job {
	struct work w;
	struct evhttp_request *req;
	struct check_req cr;
	int port;
	bool ok;
	long status;
	int64_t latency_ms;
	char error[512];
	char snippet[SNIPPET_MAX + 1];
};

/* Printable ASCII of the body's start (others as '.'), for the answer and the job's detail. */
static void snip(const struct buf *b, char *out)
{
	size_t n = b->len < SNIPPET_MAX ? b->len : SNIPPET_MAX, i;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)b->data[i];
		out[i] = c >= 0x20 && c < 0x7f ? (char)c : '.';
	}
	out[i] = '\0';
}

static void check_run(struct work *w)
{
	struct check_job *j = (struct check_job *)w;
	char base[64];
	struct httpc_resp resp;
	struct err e = {0};
	snprintf(base, sizeof(base), "http://127.0.0.1:%d", j->port);
	struct httpc hc = {.base_url = base, .timeout_ms = j->cr.timeout_ms};
	struct httpc_req rq = {.method = j->cr.method, .path = j->cr.path,
			       .headers = (const char *const *)j->cr.headers.v, .body = j->cr.body,
			       .body_n = j->cr.body_n};
	buf_init(&resp.body, CHECK_BODY_MAX);
	int r = httpc_do(&hc, &rq, &resp, &e);
	j->latency_ms = resp.latency_ms;
	if (r < 0) {
		snprintf(j->error, sizeof(j->error), "%s %s: %s", j->cr.method, j->cr.path, e.msg);
		goto out;
	}
	j->status = resp.status;
	snip(&resp.body, j->snippet);
	if (resp.status != j->cr.expect_status)
		snprintf(j->error, sizeof(j->error), "%s %s answered %ld, expected %d", j->cr.method,
			 j->cr.path, resp.status, j->cr.expect_status);
	else if (j->cr.expect_body && !memmem(resp.body.data ? resp.body.data : "", resp.body.len,
					     j->cr.expect_body, strlen(j->cr.expect_body)))
		snprintf(j->error, sizeof(j->error), "the answer does not contain \"%.200s\"",
			 j->cr.expect_body);
	else if (j->cr.expect_max_latency_ms && resp.latency_ms > j->cr.expect_max_latency_ms)
		snprintf(j->error, sizeof(j->error), "took %lld ms, more than max_latency %lld ms",
			 (long long)resp.latency_ms, (long long)j->cr.expect_max_latency_ms);
	else
		j->ok = true;
out:
	buf_done(&resp.body);
}

static void check_done(struct work *w)
{
	struct check_job *j = (struct check_job *)w;
	if (w->cancelled) {
		agent_reply_error(j->req, 503, "unavailable", "the agent is shutting down");
	} else {
		json_t *o = json_pack("{s:b,s:I,s:s,s:s}", "ok", j->ok, "latency_ms",
				      (json_int_t)j->latency_ms, "error", j->error, "body", j->snippet);
		json_object_set_new(o, "status", j->status ? json_integer(j->status) : json_null());
		if (!j->error[0])
			json_object_set_new(o, "error", json_null());
		agent_reply_json(j->req, 200, o);
	}
	check_req_done(&j->cr);
	free(j);
}

void agent_handle_check(struct agent *ag, struct evhttp_request *req, struct instance *in)
{
	struct check_job *j = calloc(1, sizeof(*j));
	struct err e = {0};
	size_t n = 0;
	char *body = agent__body_of(req, &n);
	if (!j || !body) {
		free(j);
		free(body);
		agent_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	int r = agent_parse_check(body, n, &j->cr, &e);
	free(body);
	if (r < 0) {
		free(j);
		agent_reply_err(req, &e);
		return;
	}
	if (in->pid <= 0 || !in->port) {
		check_req_done(&j->cr);
		free(j);
		agent__reply_not_running(req, in);
		return;
	}
	j->w.run = check_run;
	j->w.done = check_done;
	j->req = req;
	j->port = in->port;
	if (work_submit(ag->pool, &j->w) < 0) {
		check_req_done(&j->cr);
		free(j);
		agent_reply_error(req, 503, "busy", "too many requests queued; try again");
	}
}
