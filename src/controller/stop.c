/* controller/stop: the emergency stop (POST /v1/apps/{app}/stop), on the store worker. It
 * cancels the app's queued jobs and its running job, has every host that any of the app's
 * plans names (the current release's, the running job's and the one it started from) kill all
 * of the app's instances at once (SIGKILL; its proxy answers 503), waits — bounded — for the
 * running job's step in flight to return, and kills again if one was in flight, so nothing a
 * step started outlives the stop. The cancelled job does not roll back (runner.c) and kills
 * once more when it ends. The stop is recorded as a job of kind "stop" (who, when, why); until
 * a deploy brings the app back, the app is "stopped" and deploying its current release is
 * real work. */
#include "controller/controller-internal.h"

#include "config/config.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int cancel_queued(void *ctx, const struct store_job *j)
{
	struct task *t = ctx;
	struct err e;
	if (store_jobs(t->srv->wr)->transition(t->srv->wr, j->id, JOB_QUEUED, JOB_CANCELLED, 0,
					       "cancelled by an emergency stop", &e) == 0)
		json_array_append_new(json_object_get(t->answer, "cancelled_jobs"), json_integer(j->id));
	return 0;
}

static void add_plan_hosts(struct server *srv, const char *release, struct strv *hosts)
{
	struct config *cfg = NULL;
	struct err e;
	if (!release || !release[0] || plan_load(srv->o.state_dir, release, &cfg, &e) < 0)
		return;
	for (size_t i = 0; i < cfg->n_hosts; i++) {
		bool seen = false;
		for (size_t k = 0; k < hosts->n && !seen; k++)
			seen = !strcmp(hosts->v[k], cfg->hosts[i].name);
		if (!seen)
			strv_push(hosts, cfg->hosts[i].name);
	}
	config_free(cfg);
}

/* One pass over the hosts: kills what runs; a host's answer replaces its earlier one. */
static bool kill_pass(struct task *t, const struct strv *hosts, json_t *per_host)
{
	struct executor *x = t->srv->exec;
	bool all_ok = true;
	for (size_t i = 0; i < hosts->n; i++) {
		struct buf d;
		struct err e;
		buf_init(&d, STORE_DETAIL_MAX);
		int r = x->ops->stop(x, t->app, hosts->v[i], &d, &e);
		json_t *prev = json_object_get(per_host, hosts->v[i]);
		json_int_t before = json_integer_value(json_object_get(prev, "stopped"));
		json_t *dj = r >= 0 && d.len ? json_loads(buf_str(&d), 0, NULL) : NULL;
		json_object_set_new(per_host, hosts->v[i],
				    json_pack("{s:s,s:b,s:s,s:I}", "host", hosts->v[i], "ok", r >= 0,
					      "detail", r >= 0 ? buf_str(&d) : e.msg, "stopped",
					      before + json_integer_value(json_object_get(dj, "stopped"))));
		json_decref(dj);
		all_ok &= r >= 0;
		buf_done(&d);
	}
	return all_ok;
}

void api__stop_work(struct task *t)
{
	struct server *srv = t->srv;
	struct store_app a;
	struct store_job running, rec;
	struct strv hosts;
	const char *k;
	json_t *v;
	if (!srv->wr) {
		t->status = 500;
		err_set(&t->err, EIO, "the state database is not open");
		return;
	}
	const struct store_job_ops *J = store_jobs(srv->wr);
	if (J->app_get(srv->wr, t->app, &a, &t->err) < 0) {
		t->status = 500;
		return;
	}
	t->answer = json_pack("{s:s,s:[],s:[]}", "app", t->app, "cancelled_jobs", "hosts");
	J->list(srv->wr, t->app, 1u << JOB_QUEUED, 0, cancel_queued, t, &t->err);
	bool in_flight = runners_cancel_app(srv, t->app);
	strv_init(&hosts);
	add_plan_hosts(srv, a.current, &hosts);
	if (a.running_job && J->get(srv->wr, a.running_job, &running, &t->err) == 0) {
		add_plan_hosts(srv, running.release, &hosts);
		add_plan_hosts(srv, running.from_release, &hosts);
	}
	if (!hosts.n)
		strv_push(&hosts, "local");
	json_t *per_host = json_object();
	bool ok = kill_pass(t, &hosts, per_host);
	/* a step in flight (a start, a probe) may start what the pass above did not see: wait
	 * for it to return — the runner skips every later step and the rollback — and kill again */
	bool settled = true;
	if (in_flight) {
		settled = runners_wait_app(srv, t->app, CTL_STOP_SETTLE_MS);
		ok = kill_pass(t, &hosts, per_host) && ok;
	}
	/* a job left running with no runner of ours (another controller's, a lease wait) */
	if (a.running_job && J->transition(srv->wr, a.running_job, JOB_RUNNING, JOB_CANCELLED, 0,
					   "cancelled by an emergency stop", &t->err) == 0)
		log_info("controller", "job %lld (%s): cancelled by an emergency stop",
			 (long long)a.running_job, t->app);
	struct buf why;
	buf_init(&why, STORE_DETAIL_MAX - 1);
	json_object_foreach(per_host, k, v)
	{
		json_array_append(json_object_get(t->answer, "hosts"), v);
		if (!json_is_true(json_object_get(v, "ok")))
			buf_addf(&why, "%s%s: %s", why.len ? "; " : "", k,
				 json_string_value(json_object_get(v, "detail")));
	}
	if (!settled)
		json_object_set_new(t->answer, "warning",
				    json_string("the running job's step did not return within the stop's "
						"bound; it kills the app's instances again when it does"));
	json_decref(per_host);
	strv_done(&hosts);
	if (J->record_stop(srv->wr, t->app, t->body.reason, t->by, ok, why.len ? buf_str(&why) : NULL,
			   &rec, &t->err) < 0) {
		log_warn("controller", "recording the stop of %s: %s", t->app, t->err.msg);
	} else {
		json_object_set_new(t->answer, "job", json_integer(rec.id));
		server_notify(srv);
	}
	buf_done(&why);
	log_info("controller", "emergency stop of %s by %s%s%s", t->app, t->by[0] ? t->by : "?",
		 t->body.reason[0] ? ": " : "", t->body.reason);
	t->status = 200;
}

void api__stop(struct server *srv, struct evhttp_request *req, const struct api_path *p)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t n = evbuffer_get_length(in);
	struct task *t = calloc(1, sizeof(*t));
	if (!t) {
		server_reply_error(req, 503, "internal", "out of memory");
		return;
	}
	if (n > API_BODY_MAX) {
		server_reply_error(req, 413, "too_large", "body is larger than %d bytes", API_BODY_MAX);
		free(t);
		return;
	}
	if (api_parse_stop_body(n ? (const char *)evbuffer_pullup(in, -1) : "", n, t->body.reason,
				t->by, &t->err) < 0) {
		server_reply_error(req, server_status_for(&t->err), server_code_for(&t->err), "%s",
				   t->err.msg);
		free(t);
		return;
	}
	t->req = req;
	t->route = p->route;
	snprintf(t->app, sizeof(t->app), "%s", p->app);
	t->work = api__stop_work;
	t->done = api__task_done_reply;
	server_submit(srv, t);
}
