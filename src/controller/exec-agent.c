/* controller/exec-agent: the deploy executor that drives a host's agent over its HTTP API
 * (briefs: agent API v1) — activate, start, probe, acceptance checks against each new
 * instance, record the new upstreams, stop the old instances. Until the proxy exists, switch
 * only records the upstream set and bake watches nothing; both say so in their detail. */
#include "controller/controller-internal.h"

#include "agent/agent.h"
#include "config/config.h"
#include "release/release.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct agent_exec {
	struct executor base;
	char *sock;	 /* owned: <state>/agent.sock */
	char *state_dir; /* owned */
	char *self_exe;	 /* owned: to start the local agent again; NULL: --no-agent */
};

/* One agent call through the agent's client; *out gets the parsed answer (2xx only). A local
 * agent that gave no answer (killed, or being restarted by its keeper) is started again when
 * it does not come back by itself, and the call made once more when that is safe. */
static int agent_call(struct agent_exec *ax, const char *host, const char *method, const char *path,
		      json_t *body, int64_t timeout_ms, json_t **out, struct err *e)
{
	int r = 0;
	/* an ssh host: its forwarded socket, kept (and repaired) by the transport (hosts.c) */
	if (strcmp(host, "local"))
		return hosts_call(host, method, path, body, NULL, 0,
				  timeout_ms ? timeout_ms : CTL_AGENT_CALL_MS, out, e);
	for (int attempt = 0; attempt < 2; attempt++) {
		struct agent_client *c = NULL;
		long status = 0;
		if (attempt > 0) {
			struct err e2 = {0};
			log_warn("controller", "agent on local: %s %s: %s; starting it again", method,
				 path, e->msg);
			if (hosts_local_start(ax->self_exe, ax->state_dir, &e2) < 0) {
				err_prefix(e, "agent on local (and %s)", e2.msg);
				break;
			}
			*e = (struct err){0};
		}
		r = agent_client_new_unix(ax->sock, timeout_ms ? timeout_ms : CTL_AGENT_CALL_MS, &c, e);
		if (r == 0)
			r = agent_client_call(c, method, path, body, &status, out, e);
		agent_client_free(c);
		/* status 0: no answer came back; ECONNREFUSED: nothing was sent */
		if (r == 0 || status != 0 || !ax->self_exe || attempt > 0 ||
		    (e->code != ECONNREFUSED && !hosts_repeatable(method, path))) {
			if (r < 0)
				err_prefix(e, "agent on %s", host);
			break;
		}
	}
	json_decref(body);
	return r;
}

/* Instances of the app on the host whose release is (or, with `other`, is not) `release` and
 * that are not stopped or failed. Returns a new array. */
static int instances(struct agent_exec *ax, const struct exec_job *j, const char *host,
		     const char *release, bool other, json_t **out, struct err *e)
{
	char path[256];
	json_t *ans, *arr = json_array(), *v;
	size_t i;
	snprintf(path, sizeof(path), "/v1/apps/%s/instances", j->app);
	int r = agent_call(ax, host, "GET", path, NULL, 0, &ans, e);
	if (r < 0) {
		json_decref(arr);
		return r;
	}
	json_array_foreach(json_object_get(ans, "instances"), i, v)
	{
		const char *rel = json_string_value(json_object_get(v, "release"));
		const char *st = json_string_value(json_object_get(v, "state"));
		if (!rel || !st || !strcmp(st, "stopped") || !strcmp(st, "failed"))
			continue;
		if ((strcmp(rel, release) == 0) != other)
			json_array_append(arr, v);
	}
	json_decref(ans);
	*out = arr;
	return 0;
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static int health(struct agent_exec *ax, const struct exec_job *j, const char *host,
		  struct buf *detail, struct err *e)
{
	const struct config *cfg = j->cfg;
	json_t *insts, *v;
	size_t i;
	int r = instances(ax, j, host, j->release, false, &insts, e);
	if (r < 0)
		return r;
	if (json_array_size(insts) == 0) {
		json_decref(insts);
		return err_set(e, CAIRN_ECHECK, "no instance of the release runs on %s", host);
	}
	int64_t t0 = time_mono_ns() / 1000000, deadline = t0 + cfg->health.start_deadline_ms;
	char last[256] = "no probe answered yet";
	json_array_foreach(insts, i, v)
	{
		const char *iid = json_string_value(json_object_get(v, "id"));
		char path[256];
		int ok_in_row = 0;
		snprintf(path, sizeof(path), "/v1/apps/%s/instances/%s/probe", j->app, iid ? iid : "");
		while (ok_in_row < cfg->health.healthy_after) {
			json_t *ans = NULL;
			if (atomic_load(j->abort)) {
				r = err_set(e, ECANCELED, "stopped while probing %s", iid);
				goto out;
			}
			int64_t now = time_mono_ns() / 1000000;
			if (now > deadline) {
				r = err_set(e, CAIRN_ECHECK,
					    "instance %s on %s was not healthy after %.1f s (start_deadline "
					    "%.1f s, %d good probes in a row needed); last probe: %s",
					    iid, host, (double)(now - t0) / 1000.0,
					    (double)cfg->health.start_deadline_ms / 1000.0,
					    cfg->health.healthy_after, last);
				goto out;
			}
			json_t *body = json_pack("{s:s?,s:I}", "http", cfg->health.http, "timeout_ms",
						 (json_int_t)cfg->health.timeout_ms);
			if ((r = agent_call(ax, host, "POST", path, body,
					    cfg->health.timeout_ms + CTL_AGENT_CALL_MS, &ans, e)) < 0)
				goto out;
			ok_in_row = json_is_true(json_object_get(ans, "ok")) ? ok_in_row + 1 : 0;
			if (!ok_in_row) {
				json_t *st = json_object_get(ans, "status");
				if (json_is_integer(st))
					snprintf(last, sizeof(last), "answered HTTP %lld",
						 (long long)json_integer_value(st));
				else
					snprintf(last, sizeof(last), "%.200s",
						 json_string_value(json_object_get(ans, "error")) ?: "not ok");
			}
			json_decref(ans);
			if (ok_in_row < cfg->health.healthy_after)
				sleep_ms(cfg->health.interval_ms);
		}
	}
	buf_addf(detail, "{\"healthy\":%zu}", json_array_size(insts));
out:
	json_decref(insts);
	return r;
}

int exec__check(struct executor *x, const struct exec_job *j, const char *host, const char *iid,
		const struct config_check *c, json_t **out, struct err *e)
{
	char path[256];
	json_t *hdrs = json_object();
	for (size_t i = 0; i < c->n_headers; i++)
		json_object_set_new(hdrs, c->headers[i].name, json_string(c->headers[i].value));
	int64_t tmo = c->expect_max_latency_ms ? c->expect_max_latency_ms * 4 + 1000 : 10000;
	json_t *body = json_pack("{s:s,s:s,s:o,s:s?,s:I,s:{s:i,s:s?,s:I}}", "method", c->method,
				 "path", c->path, "headers", hdrs, "body", c->body, "timeout_ms",
				 (json_int_t)tmo, "expect", "status", c->expect_status,
				 "body_contains", c->expect_body_contains, "max_latency_ms",
				 (json_int_t)c->expect_max_latency_ms);
	snprintf(path, sizeof(path), "/v1/apps/%s/instances/%s/check", j->app, iid);
	return agent_call((struct agent_exec *)x, host, "POST", path, body, tmo + CTL_AGENT_CALL_MS,
			  out, e);
}

/* One acceptance check against one instance, sent and judged by the instance's own agent (so
 * SSH hosts work the same as the local one). */
static int accept_one(struct agent_exec *ax, const struct exec_job *j, const char *host,
		      const char *iid, const struct config_check *c, struct err *e)
{
	json_t *ans = NULL;
	int r = exec__check(&ax->base, j, host, iid, c, &ans, e);
	if (r < 0)
		return r;
	if (!json_is_true(json_object_get(ans, "ok"))) {
		const char *snip = json_string_value(json_object_get(ans, "body"));
		r = err_set(e, CAIRN_ECHECK, "acceptance '%s' on %s: %s%s%.160s%s", c->name, iid,
			    json_string_value(json_object_get(ans, "error")) ?: "failed",
			    snip && *snip ? " (answer: \"" : "", snip ? snip : "",
			    snip && *snip ? "\")" : "");
	}
	json_decref(ans);
	return r;
}

static int acceptance(struct agent_exec *ax, const struct exec_job *j, const char *host,
		      struct buf *detail, struct err *e)
{
	json_t *insts, *v;
	size_t i;
	int r = instances(ax, j, host, j->release, false, &insts, e);
	if (r < 0)
		return r;
	json_array_foreach(insts, i, v)
	{
		const char *iid = json_string_value(json_object_get(v, "id"));
		for (size_t k = 0; r == 0 && k < j->cfg->n_acceptance; k++)
			r = accept_one(ax, j, host, iid ? iid : "", &j->cfg->acceptance[k], e);
		if (r < 0)
			break;
	}
	if (r == 0)
		buf_addf(detail, "{\"checks\":%zu,\"instances\":%zu}", j->cfg->n_acceptance,
			 json_array_size(insts));
	json_decref(insts);
	return r;
}

/* Points the host's proxy at `release` and records the upstream set for `cairn status`. */
static int switch_to(struct agent_exec *ax, const struct exec_job *j, const char *host,
		     const char *release, struct buf *detail, struct err *e)
{
	json_t *proxy = NULL;
	int r = traffic_point(&ax->base, j, host, release, &proxy, e);
	if (r < 0)
		return r;
	json_t *rec = json_pack("{s:s,s:s,s:s?,s:s?,s:O?,s:I}", "host", host, "release", release,
				"listen", json_string_value(json_object_get(proxy, "listen")),
				"mode", json_string_value(json_object_get(proxy, "mode")),
				"upstreams", json_object_get(proxy, "upstreams"), "switch_us",
				(json_int_t)json_integer_value(json_object_get(proxy, "switch_us")));
	json_decref(proxy);
	char *txt = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
	json_decref(rec);
	if (!txt)
		return err_set(e, ENOMEM, "out of memory");
	r = store_jobs(j->st)->app_set_upstreams(j->st, j->app, txt, e);
	if (r == 0 && strlen(txt) < STORE_DETAIL_MAX - 1)
		buf_adds(detail, txt);
	free(txt);
	return r;
}

static int stop_where(struct agent_exec *ax, const struct exec_job *j, const char *host,
		      const char *release, bool other, size_t *out_n, struct err *e)
{
	json_t *insts, *v;
	size_t i;
	int r = instances(ax, j, host, release, other, &insts, e);
	if (r < 0)
		return r;
	*out_n = 0;
	json_array_foreach(insts, i, v)
	{
		char path[256];
		snprintf(path, sizeof(path), "/v1/apps/%s/instances/%s", j->app,
			 json_string_value(json_object_get(v, "id")));
		if ((r = agent_call(ax, host, "DELETE", path, NULL,
				    j->cfg->run.stop_timeout_ms + CTL_AGENT_CALL_MS, NULL, e)) < 0)
			break;
		(*out_n)++;
	}
	json_decref(insts);
	return r;
}

static int ax_step(struct executor *x, const struct exec_job *j, const char *host,
		   enum deploy_step s, struct buf *detail, struct err *e)
{
	struct agent_exec *ax = (struct agent_exec *)x;
	char path[256];
	json_t *ans = NULL;
	size_t n;
	int r;

	switch (s) {
	case STEP_ENSURE_OBJECTS: {
		/* an ssh host: send what it lacks, then its agent verifies the release */
		if (strcmp(host, "local"))
			return hosts_push_release(j, host, detail, e);
		/* the local agent reads this state directory's object store: verify it is whole */
		struct objstore *os = NULL;
		if ((r = objstore_open(j->state_dir, &os, e)) == 0)
			r = release_verify(os, j->release, NULL, NULL, e);
		objstore_free(os);
		if (r == 0)
			buf_addf(detail, "{\"verified\":true}");
		return r;
	}
	case STEP_ACTIVATE:
		snprintf(path, sizeof(path), "/v1/releases/%s/activate", j->release);
		if ((r = agent_call(ax, host, "POST", path, json_object(), 0, &ans, e)) == 0) {
			buf_addf(detail, "{\"path\":\"%s\"}",
				 json_string_value(json_object_get(ans, "path")) ?: "");
			json_decref(ans);
		}
		return r;
	case STEP_START: {
		json_t *env = json_object();
		snprintf(path, sizeof(path), "/v1/apps/%s/instances", j->app);
		/* the proxy's port is not bound before the first switch: keep instances off it */
		json_t *body = json_pack("{s:s,s:i,s:o,s:I,s:s,s:[i]}", "release", j->release,
					 "count", j->cfg->instances, "env", env, "stop_timeout_ms",
					 (json_int_t)j->cfg->run.stop_timeout_ms, "stop_signal",
					 config_signal_name(j->cfg->run.stop_signal) ?: "SIGTERM",
					 "reserved_ports", j->cfg->listen_port);
		if ((r = agent_call(ax, host, "POST", path, body, 0, &ans, e)) == 0) {
			json_t *d = json_pack("{s:O}", "instances", json_object_get(ans, "instances"));
			char *txt = d ? json_dumps(d, JSON_COMPACT) : NULL;
			json_decref(d);
			if (txt && strlen(txt) < STORE_DETAIL_MAX - 1)
				buf_adds(detail, txt);
			free(txt);
			json_decref(ans);
		}
		return r;
	}
	case STEP_HEALTH:
		return health(ax, j, host, detail, e);
	case STEP_ACCEPT:
		return acceptance(ax, j, host, detail, e);
	case STEP_SWITCH:
		return switch_to(ax, j, host, j->release, detail, e);
	case STEP_BAKE:
		return traffic_bake(x, j, host, detail, e);
	case STEP_CLEANUP:
		if ((r = traffic_drain(x, j, host, j->release, true, CTL_DRAIN_MS, e)) == 0 &&
		    (r = stop_where(ax, j, host, j->release, true, &n, e)) == 0)
			buf_addf(detail, "{\"stopped\":%zu}", n);
		return r;
	default:
		return err_set(e, EINVAL, "unknown step %d", (int)s);
	}
}

/* Brings the previous release back on a host where none of its instances runs any more:
 * activate (verified), start, health — the same steps as a deploy, never a build. */
static int restart_previous(struct agent_exec *ax, const struct exec_job *j, const char *host,
			    struct err *e)
{
	struct exec_job prev = *j;
	struct config *pcfg = NULL;
	struct buf d;
	int r = plan_load(j->state_dir, j->from_release, &pcfg, e);
	if (r < 0)
		return r;
	prev.release = j->from_release;
	prev.cfg = pcfg;
	buf_init(&d, STORE_DETAIL_MAX - 1);
	for (int s = STEP_ACTIVATE; r == 0 && s <= STEP_HEALTH; s++) {
		buf_reset(&d);
		r = ax_step(&ax->base, &prev, host, (enum deploy_step)s, &d, e);
	}
	buf_done(&d);
	config_free(pcfg);
	if (r < 0)
		err_prefix(e, "restarting the previous release on %s", host);
	return r;
}

static int ax_rollback(struct executor *x, const struct exec_job *j, const char *host,
		       struct buf *detail, struct err *e)
{
	struct agent_exec *ax = (struct agent_exec *)x;
	struct buf ups;
	json_t *old = NULL;
	size_t n = 0, n_old = 0;
	bool restarted = false;
	int r = 0;
	/* traffic first: the old instances are still warm, so users are back on them at once */
	if (j->from_release[0]) {
		if ((r = instances(ax, j, host, j->from_release, false, &old, e)) < 0)
			return r;
		n_old = json_array_size(old);
		json_decref(old);
		if (n_old == 0) {
			if ((r = restart_previous(ax, j, host, e)) < 0)
				return r;
			restarted = true;
		}
	}
	buf_init(&ups, STORE_DETAIL_MAX);
	if ((r = switch_to(ax, j, host, j->from_release, &ups, e)) == 0 &&
	    (r = traffic_drain(x, j, host, j->release, false, CTL_DRAIN_MS, e)) == 0 &&
	    (r = stop_where(ax, j, host, j->release, false, &n, e)) == 0)
		buf_addf(detail, "{\"stopped_new\":%zu,\"restarted_previous\":%s,\"upstreams\":%s}", n,
			 restarted ? "true" : "false", ups.len ? buf_str(&ups) : "null");
	buf_done(&ups);
	return r;
}

static int ax_reconcile(struct executor *x, const struct exec_job *j, const char *host,
			enum deploy_step s, struct err *e)
{
	struct agent_exec *ax = (struct agent_exec *)x;
	json_t *insts;
	size_t n;
	int r;
	switch (s) {
	case STEP_START:
		if ((r = instances(ax, j, host, j->release, false, &insts, e)) < 0)
			return r;
		n = json_array_size(insts);
		json_decref(insts);
		if (n == 0)
			return 0;
		if (n >= (size_t)j->cfg->instances)
			return 1;
		return err_set(e, CAIRN_ECHECK, "%zu of %d instances run on %s", n, j->cfg->instances,
			       host);
	case STEP_CLEANUP:
		if ((r = instances(ax, j, host, j->release, true, &insts, e)) < 0)
			return r;
		n = json_array_size(insts);
		json_decref(insts);
		return n == 0;
	default:
		return 0; /* the rest converge: running them again is safe */
	}
}

static int ax_stop(struct executor *x, const char *app, const char *host, struct buf *detail,
		   struct err *e)
{
	struct agent_exec *ax = (struct agent_exec *)x;
	char path[256];
	json_t *ans = NULL;
	snprintf(path, sizeof(path), "/v1/apps/%s/stop", app);
	int r = agent_call(ax, host, "POST", path, json_pack("{s:i}", "timeout_ms", 2000), 5000, &ans, e);
	if (r == 0) {
		buf_addf(detail, "{\"stopped\":%lld}",
			 (long long)json_integer_value(json_object_get(ans, "stopped")));
		json_decref(ans);
	}
	return r;
}

static int ax_remove(struct executor *x, const char *app, const char *host, struct buf *detail,
		     struct err *e)
{
	struct agent_exec *ax = (struct agent_exec *)x;
	char path[256];
	json_t *ans = NULL, *v;
	size_t i, stopped = 0;
	bool had_proxy = true;
	struct err pe;
	/* the proxy first: no new request reaches an instance that is about to stop */
	snprintf(path, sizeof(path), "/v1/apps/%s/proxy", app);
	int r = agent_call(ax, host, "DELETE", path, NULL, 5000, &ans, &pe);
	json_decref(ans);
	ans = NULL;
	if (r < 0 && pe.code != CAIRN_ENOTFOUND && !strstr(pe.msg, "404")) {
		*e = pe;
		return r;
	}
	had_proxy = r == 0;
	snprintf(path, sizeof(path), "/v1/apps/%s/instances", app);
	if ((r = agent_call(ax, host, "GET", path, NULL, 5000, &ans, e)) < 0)
		return r;
	json_array_foreach(json_object_get(ans, "instances"), i, v)
	{
		const char *id = json_string_value(json_object_get(v, "id"));
		int64_t tmo = json_integer_value(json_object_get(v, "stop_timeout_ms")) + 5000;
		json_t *a2 = NULL;
		if (!id)
			continue;
		snprintf(path, sizeof(path), "/v1/apps/%s/instances/%s", app, id);
		if ((r = agent_call(ax, host, "DELETE", path, NULL, tmo, &a2, e)) < 0) {
			json_decref(ans);
			return r;
		}
		json_decref(a2);
		stopped++;
	}
	json_decref(ans);
	buf_addf(detail, "{\"stopped\":%zu,\"proxy_removed\":%s}", stopped,
		 had_proxy ? "true" : "false");
	return 0;
}

/* A read for status: bounded as a whole (an ssh host's connection included), never repaired. */
static int agent_query(struct agent_exec *ax, const char *host, const char *path,
		       int64_t bound_ms, json_t **out, struct err *e)
{
	if (strcmp(host, "local"))
		return hosts_query(host, path, bound_ms, out, e);
	return agent_call(ax, host, "GET", path, NULL, bound_ms, out, e);
}

static int ax_instances(struct executor *x, const char *app, const char *host, int64_t bound_ms,
			json_t **out, struct err *e)
{
	struct agent_exec *ax = (struct agent_exec *)x;
	char path[256];
	json_t *ans = NULL;
	snprintf(path, sizeof(path), "/v1/apps/%s/instances", app);
	int r = agent_query(ax, host, path, bound_ms, &ans, e);
	if (r == 0) {
		json_t *arr = json_object_get(ans, "instances");
		*out = json_is_array(arr) ? json_incref(arr) : json_array();
		json_decref(ans);
	}
	return r;
}

static int ax_proxy(struct executor *x, const char *app, const char *host, int64_t bound_ms,
		    json_t **out, struct err *e)
{
	char path[256];
	snprintf(path, sizeof(path), "/v1/apps/%s/proxy", app);
	int r = agent_query((struct agent_exec *)x, host, path, bound_ms, out, e);
	if (r == -CAIRN_ENOTFOUND) {
		*e = (struct err){0};
		*out = NULL;
		return 0;
	}
	return r;
}

static void ax_free(struct executor *x)
{
	struct agent_exec *ax = (struct agent_exec *)x;
	free(ax->sock);
	free(ax->state_dir);
	free(ax->self_exe);
	free(ax);
}

static const struct executor_ops agent_ops = {
	.name = "agent",
	.step = ax_step,
	.rollback = ax_rollback,
	.reconcile = ax_reconcile,
	.evidence = traffic_evidence,
	.proxy = ax_proxy,
	.instances = ax_instances,
	.stop = ax_stop,
	.remove = ax_remove,
	.free = ax_free,
};

struct executor *exec_agent_new(const char *state_dir, const char *self_exe)
{
	struct agent_exec *ax = calloc(1, sizeof(*ax));
	if (!ax)
		return NULL;
	ax->base.ops = &agent_ops;
	ax->sock = fs_join(state_dir, "agent.sock");
	ax->state_dir = xstrdup(state_dir);
	ax->self_exe = self_exe ? xstrdup(self_exe) : NULL;
	return &ax->base;
}

int exec__agent_call(struct executor *x, const char *host, const char *method, const char *path,
		     json_t *body, int64_t timeout_ms, json_t **out, struct err *e)
{
	return agent_call((struct agent_exec *)x, host, method, path, body, timeout_ms, out, e);
}

int exec__instances(struct executor *x, const struct exec_job *j, const char *host,
		    const char *release, bool other, json_t **out, struct err *e)
{
	return instances((struct agent_exec *)x, j, host, release, other, out, e);
}
