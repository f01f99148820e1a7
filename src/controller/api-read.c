/* controller/api-read: route dispatch (methods, 405s) and the handlers besides deploy
 * submission — jobs, apps, leases, emergency stop and /metrics. Reads run on the loop thread;
 * stop and unlock change state and go through the store worker. */
#include "controller/controller-internal.h"

#include "config/config.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdlib.h>
#include <string.h>

static void reply_store_error(struct evhttp_request *req, const struct err *e)
{
	server_reply_error(req, server_status_for(e), server_code_for(e), "%s", e->msg);
}

static void get_job(struct server *srv, struct evhttp_request *req, int64_t id)
{
	struct store_job j;
	struct err e;
	if (store_jobs(srv->rd)->get(srv->rd, id, &j, &e) < 0) {
		reply_store_error(req, &e);
		return;
	}
	json_t *o = api_job_json(srv->rd, &j, true);
	server_reply_json(req, 200, o);
}

static int add_job(void *ctx, const struct store_job *j)
{
	void **c = ctx;
	json_array_append_new(c[0], api_job_json(c[1], j, false));
	return 0;
}

static void list_jobs(struct server *srv, struct evhttp_request *req, const char *app)
{
	struct evkeyvalq q;
	struct err e;
	int limit = 50;
	const char *qs = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	char appbuf[STORE_APP_MAX] = "";
	if (qs && evhttp_parse_query_str(qs, &q) == 0) {
		const char *l = evhttp_find_header(&q, "limit"), *a = evhttp_find_header(&q, "app");
		if (l && atoi(l) > 0)
			limit = atoi(l) > 1000 ? 1000 : atoi(l);
		if (a && !app && api_app_name_ok(a, strlen(a)))
			snprintf(appbuf, sizeof(appbuf), "%s", a);
		evhttp_clear_headers(&q);
	}
	if (!app && appbuf[0])
		app = appbuf;
	json_t *arr = json_array();
	void *c[2] = { arr, srv->rd };
	if (store_jobs(srv->rd)->list(srv->rd, app, 0, limit, add_job, c, &e) < 0) {
		json_decref(arr);
		reply_store_error(req, &e);
		return;
	}
	server_reply_json(req, 200, json_pack("{s:o}", "jobs", arr));
}

struct rel_ctx {
	json_t *arr;
	const struct store_app *a;
	struct store *st;
	json_t *app; /* gets current_tags and last_good_tags */
	struct err *e;
};

static int add_release(void *ctx, const struct store_release *r)
{
	struct rel_ctx *rc = ctx;
	char t[32];
	time_fmt_rfc3339(r->created_at, t, sizeof(t));
	json_t *tags = store_release_tags_json(rc->st, r->id, rc->e);
	if (!tags)
		return -EIO;
	json_array_append_new(rc->arr, json_pack("{s:s,s:s?,s:o,s:s,s:s,s:b,s:b}", "id", r->id,
						 "tag", r->tag[0] ? r->tag : NULL, "tags", tags,
						 "created_at", t, "state",
						 release_state_name(r->state), "current",
						 !strcmp(r->id, rc->a->current), "last_good",
						 !strcmp(r->id, rc->a->last_good)));
	if (!strcmp(r->id, rc->a->current))
		json_object_set(rc->app, "current_tags", tags);
	if (!strcmp(r->id, rc->a->last_good))
		json_object_set(rc->app, "last_good_tags", tags);
	return 0;
}

static int add_queued(void *ctx, const struct store_job *j)
{
	json_array_append_new(ctx, json_integer(j->id));
	return 0;
}

static void get_app(struct server *srv, struct evhttp_request *req, const char *app)
{
	const struct store_job_ops *J = store_jobs(srv->rd);
	struct store_app a;
	struct store_lease l;
	struct err e;
	json_t *rels = json_array(), *queued = json_array(), *tags = json_object(), *o;
	if (J->app_get(srv->rd, app, &a, &e) < 0 ||
	    store_release_list(srv->rd, app, add_release,
			       &(struct rel_ctx){ rels, &a, srv->rd, tags, &e }, &e) != 0 ||
	    J->list(srv->rd, app, 1u << JOB_QUEUED, 0, add_queued, queued, &e) < 0) {
		json_decref(rels);
		json_decref(queued);
		json_decref(tags);
		reply_store_error(req, &e);
		return;
	}
	if (!a.current[0] && json_array_size(rels) == 0 && json_array_size(queued) == 0) {
		json_decref(rels);
		json_decref(queued);
		json_decref(tags);
		server_reply_error(req, 404, "not_found",
				   "no app '%s' here: build a release of it first ('cairn build')", app);
		return;
	}
	o = json_pack("{s:s,s:s?,s:s?,s:o,s:o,s:o}", "app", app, "current",
		      a.current[0] ? a.current : NULL, "last_good", a.last_good[0] ? a.last_good : NULL,
		      "running_job", a.running_job ? json_integer(a.running_job) : json_null(),
		      "queued_jobs", queued, "releases", rels);
	/* the tags of current and last good, beside their ids ([] when none) */
	json_object_set_new(o, "current_tags",
			    json_incref(json_object_get(tags, "current_tags")) ?: json_array());
	json_object_set_new(o, "last_good_tags",
			    json_incref(json_object_get(tags, "last_good_tags")) ?: json_array());
	json_decref(tags);
	json_object_set_new(o, "stopped", json_boolean(a.stopped));
	if (a.upstreams[0]) {
		json_t *u = json_loads(a.upstreams, 0, NULL);
		json_object_set_new(o, "upstreams", u ? u : json_null());
	}
	if (J->lease_get(srv->rd, app, &l, &e) == 1)
		json_object_set_new(o, "lease", json_pack("{s:s,s:I,s:I}", "owner", l.owner, "job",
							  (json_int_t)l.job_id, "expires_in_ms",
							  (json_int_t)(l.expires_at - time_now_ns() / 1000000)));
	server_reply_json(req, 200, o);
}

static int add_app_name(void *ctx, const struct store_release *r)
{
	json_t *arr = ctx;
	size_t i;
	json_t *v;
	json_array_foreach(arr, i, v) if (!strcmp(json_string_value(v), r->app)) return 0;
	json_array_append_new(arr, json_string(r->app));
	return 0;
}

/* The worker's first step for every app task: the writer database must be open (500 with a
 * message when not), and for task_app_get the app's row is read into a. */
static bool task_db_open(struct task *t)
{
	if (t->srv->wr)
		return true;
	t->status = 500;
	err_set(&t->err, EIO, "the state database is not open");
	return false;
}

static int task_app_get(struct task *t, struct store_app *a)
{
	if (!task_db_open(t))
		return -EIO;
	if (store_jobs(t->srv->wr)->app_get(t->srv->wr, t->app, a, &t->err) < 0) {
		t->status = 500;
		return -EIO;
	}
	return 0;
}

static void list_apps(struct server *srv, struct evhttp_request *req)
{
	struct err e;
	json_t *arr = json_array();
	if (store_release_list(srv->rd, NULL, add_app_name, arr, &e) < 0) {
		json_decref(arr);
		reply_store_error(req, &e);
		return;
	}
	/* what each app's current release listens on, per host: `cairn check` compares */
	json_t *ports = ports_of_apps(srv, srv->rd, &e);
	server_reply_json(req, 200, json_pack("{s:o,s:o}", "apps", arr, "ports",
					      ports ? ports : json_array()));
}

/* ---- unlock: through the worker (the stop: stop.c) ------------------------------------------------------ */

/* DELETE /v1/apps/{app}: `cairn rm` — the app's proxy and instances go from every host of its
 * current release's plan; its releases, jobs and last good release are kept. Refused (409)
 * while a deploy of it runs or waits. */
static int first_queued(void *ctx, const struct store_job *j)
{
	if (!*(int64_t *)ctx)
		*(int64_t *)ctx = j->id;
	return 0;
}

static void rm_work(struct task *t)
{
	struct server *srv = t->srv;
	const struct store_job_ops *J;
	struct store_app a;
	struct config *cfg = NULL;
	int64_t queued = 0;
	bool all_ok = true;
	if (task_app_get(t, &a) < 0)
		return;
	J = store_jobs(srv->wr);
	if (J->list(srv->wr, t->app, 1u << JOB_QUEUED, 0, first_queued, &queued, &t->err) < 0) {
		t->status = 500;
		return;
	}
	if (a.running_job || queued) {
		int64_t busy = a.running_job ? a.running_job : queued;
		t->status = 409;
		err_set(&t->err, EAGAIN,
			"a deploy of %s %s (job %lld): wait for it ('cairn deploy --follow %lld') or "
			"stop it ('cairn stop --emergency %s'), then remove the app",
			t->app, a.running_job ? "is running" : "is queued", (long long)busy,
			(long long)busy, t->app);
		return;
	}
	if (!a.current[0] && !a.last_good[0]) {
		json_t *rels = json_array();
		struct err e;
		store_release_list(srv->wr, t->app, add_release,
				   &(struct rel_ctx){ rels, &a, srv->wr, NULL, &e }, &e);
		size_t n = json_array_size(rels);
		json_decref(rels);
		if (!n) {
			t->status = 404;
			err_set(&t->err, CAIRN_ENOTFOUND, "no app '%s' here ('cairn apps' lists them)",
				t->app);
			return;
		}
	}
	t->answer = json_pack("{s:s,s:s?,s:[]}", "app", t->app, "was_current",
			      a.current[0] ? a.current : NULL, "hosts");
	if (!a.current[0]) {
		json_object_set_new(t->answer, "note",
				    json_string("not deployed on any host: nothing to remove"));
		t->status = 200;
		return;
	}
	if (plan_load(srv->o.state_dir, a.current, &cfg, &t->err) < 0) {
		json_decref(t->answer);
		t->answer = NULL;
		t->status = 500;
		return;
	}
	for (size_t i = 0; i < cfg->n_hosts; i++) {
		const char *host = cfg->hosts[i].name;
		struct buf d;
		struct err e;
		buf_init(&d, STORE_DETAIL_MAX);
		int r = srv->exec->ops->remove(srv->exec, t->app, host, &d, &e);
		json_t *det = r >= 0 ? json_loads(buf_str(&d), 0, NULL) : NULL;
		json_t *h = json_pack("{s:s,s:b}", "host", host, "ok", r >= 0);
		if (r < 0)
			json_object_set_new(h, "error", json_string(e.msg));
		else if (det)
			json_object_update(h, det);
		json_decref(det);
		json_array_append_new(json_object_get(t->answer, "hosts"), h);
		all_ok &= r >= 0;
		buf_done(&d);
	}
	config_free(cfg);
	/* only when every host is clear is the app "deployed nowhere"; else run rm again */
	if (all_ok && J->app_undeploy(srv->wr, t->app, &t->err) < 0) {
		t->status = 500;
		return;
	}
	json_object_set_new(t->answer, "removed", json_boolean(all_ok));
	t->status = 200;
}

static void lease_work(struct task *t)
{
	struct server *srv = t->srv;
	struct store_lease l;
	int had;
	if (!task_db_open(t))
		return;
	had = store_jobs(srv->wr)->lease_get(srv->wr, t->app, &l, &t->err);
	int r = store_jobs(srv->wr)->lease_release(srv->wr, t->app, NULL, &t->err);
	if (r < 0 || had < 0) {
		t->status = 500;
		return;
	}
	t->status = 200;
	t->answer = json_pack("{s:s,s:b}", "app", t->app, "broken", r == 1);
	if (had == 1) {
		json_object_set_new(t->answer, "holder",
				    json_pack("{s:s,s:I}", "owner", l.owner, "job", (json_int_t)l.job_id));
		json_object_set_new(
			t->answer, "risk",
			json_string("if the holder still runs, it stops at its next step boundary; a step "
				    "it is inside may still finish while another runner resumes the job"));
	}
}

/* GET /v1/apps/{app}/instances: every host of the current release's plan, asked through the
 * executor. Hosts are asked in parallel (CTL_STATUS_PARALLEL threads), each within
 * CTL_STATUS_HOST_MS, its SSH connection included: a host that is down or hung is reported
 * with the reason ("ok": false, "error") and never holds up the others or the answer. */
struct host_ask {
	struct server *srv;
	const char *app;
	const struct config *cfg; /* borrowed; NULL: only local */
	size_t n;
	atomic_size_t next;
	json_t **out; /* out[i]: host i's object, made by whichever thread asked it */
};

static json_t *ask_host(struct host_ask *a, const char *host)
{
	struct executor *x = a->srv->exec;
	int64_t until = time_mono_ns() / 1000000 + CTL_STATUS_HOST_MS;
	json_t *arr = NULL, *px = NULL;
	struct err e;
	int r = x->ops->instances(x, a->app, host, CTL_STATUS_HOST_MS, &arr, &e);
	json_t *h = json_pack("{s:s,s:b}", "host", host, "ok", r >= 0);
	if (!h) {
		json_decref(arr);
		return NULL;
	}
	if (r >= 0)
		json_object_set_new(h, "instances", arr);
	else
		json_object_set_new(h, "error", json_string(e.msg));
	int64_t left = until - time_mono_ns() / 1000000;
	if (r >= 0 && x->ops->proxy && left > 0 &&
	    x->ops->proxy(x, a->app, host, left, &px, &e) == 0 && px) {
		json_t *v;
		size_t k;
		/* the counters a person reads; the histograms stay with the agent */
		json_array_foreach(json_object_get(px, "releases"), k, v)
		{
			json_object_del(json_object_get(v, "total"), "hist");
			json_object_del(v, "window");
		}
		json_object_set_new(h, "proxy", px);
	}
	return h;
}

static void *ask_hosts(void *arg)
{
	struct host_ask *a = arg;
	for (size_t i; (i = atomic_fetch_add(&a->next, 1)) < a->n;)
		a->out[i] = ask_host(a, a->cfg ? a->cfg->hosts[i].name : "local");
	return NULL;
}

static void instances_work(struct task *t)
{
	struct server *srv = t->srv;
	struct store_app a;
	struct config *cfg = NULL;
	pthread_t th[CTL_STATUS_PARALLEL];
	size_t n_th = 0;
	if (task_app_get(t, &a) < 0)
		return;
	if (a.current[0] && plan_load(srv->o.state_dir, a.current, &cfg, &t->err) < 0)
		cfg = NULL;
	struct host_ask ask = { .srv = srv, .app = t->app, .cfg = cfg, .n = cfg ? cfg->n_hosts : 1 };
	atomic_init(&ask.next, 0);
	ask.out = calloc(ask.n, sizeof(*ask.out));
	t->answer = json_pack("{s:s,s:s?,s:[]}", "app", t->app, "current",
			      a.current[0] ? a.current : NULL, "hosts");
	if (!ask.out || !t->answer) {
		t->status = 503;
		err_set(&t->err, ENOMEM, "out of memory");
		goto out;
	}
	/* the worker asks too: with one host (or no thread to be had) nothing is started */
	while (n_th + 1 < ask.n && n_th < ARRAY_SIZE(th) - 1 &&
	       pthread_create(&th[n_th], NULL, ask_hosts, &ask) == 0)
		n_th++;
	ask_hosts(&ask);
	for (size_t i = 0; i < n_th; i++)
		pthread_join(th[i], NULL);
	for (size_t i = 0; i < ask.n; i++)
		if (ask.out[i])
			json_array_append_new(json_object_get(t->answer, "hosts"), ask.out[i]);
	t->status = 200;
out:
	free(ask.out);
	config_free(cfg);
}

void api__task_done_reply(struct task *t)
{
	if (t->route == ROUTE_UNLOCK)
		runners_schedule(t->srv, t->app);
	if (!t->req)
		return;
	if (t->status >= 400 || !t->answer)
		server_reply_error(t->req, t->status >= 400 ? t->status : 500, server_code_for(&t->err),
				   "%s", t->err.msg);
	else
		server_reply_json(t->req, t->status, json_incref(t->answer));
}

static void submit_task(struct server *srv, struct evhttp_request *req, const struct api_path *p,
			task_fn work)
{
	struct task *t = calloc(1, sizeof(*t));
	if (!t) {
		server_reply_error(req, 503, "internal", "out of memory");
		return;
	}
	t->req = req;
	t->route = p->route;
	snprintf(t->app, sizeof(t->app), "%s", p->app);
	t->work = work;
	t->done = api__task_done_reply;
	server_submit(srv, t);
}

static void get_lease(struct server *srv, struct evhttp_request *req, const char *app)
{
	struct store_lease l;
	struct err e;
	int r = store_jobs(srv->rd)->lease_get(srv->rd, app, &l, &e);
	if (r < 0)
		reply_store_error(req, &e);
	else if (r == 0)
		server_reply_json(req, 200, json_pack("{s:s,s:n}", "app", app, "lease"));
	else
		server_reply_json(req, 200,
				  json_pack("{s:s,s:{s:s,s:I,s:I}}", "app", app, "lease", "owner", l.owner,
					    "job", (json_int_t)l.job_id, "expires_in_ms",
					    (json_int_t)(l.expires_at - time_now_ns() / 1000000)));
}

/* ---- /metrics ------------------------------------------------------------------------------------ */

static void metrics(struct server *srv, struct evhttp_request *req)
{
	static const char *const step_label[STEP_COUNT + 1] = {
		"ensure_objects", "activate", "start", "health", "accept", "switch", "bake", "cleanup",
		"rollback",
	};
	struct evbuffer *b = evbuffer_new();
	int64_t counts[JOB_STATE_COUNT];
	struct err e;
	if (store_jobs(srv->rd)->count_by_state(srv->rd, counts, &e) == 0) {
		evbuffer_add_printf(b, "# HELP cairn_jobs Deploy jobs by state.\n# TYPE cairn_jobs gauge\n");
		for (int i = 0; i < JOB_STATE_COUNT; i++)
			evbuffer_add_printf(b, "cairn_jobs{state=\"%s\"} %lld\n",
					    job_state_name((enum job_state)i), (long long)counts[i]);
	}
	evbuffer_add_printf(b, "# HELP cairn_api_requests_total API requests by route and status.\n"
			       "# TYPE cairn_api_requests_total counter\n");
	for (struct metric_req *m = srv->metrics; m; m = m->next)
		evbuffer_add_printf(b, "cairn_api_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
				    api_route_name(m->route), m->status, (unsigned long long)m->count);
	evbuffer_add_printf(b, "# HELP cairn_step_duration_seconds Deploy step durations.\n"
			       "# TYPE cairn_step_duration_seconds summary\n");
	pthread_mutex_lock(&srv->rmu);
	for (int i = 0; i <= STEP_COUNT; i++) {
		evbuffer_add_printf(b, "cairn_step_duration_seconds_sum{step=\"%s\"} %.6f\n",
				    step_label[i], srv->steps[i].sum_s);
		evbuffer_add_printf(b, "cairn_step_duration_seconds_count{step=\"%s\"} %llu\n",
				    step_label[i], (unsigned long long)srv->steps[i].count);
	}
	pthread_mutex_unlock(&srv->rmu);
	int inflight = 0;
	for (struct inflight *f = srv->inflight; f; f = f->next)
		inflight++;
	evbuffer_add_printf(b, "# HELP cairn_idempotency_inflight Keyed requests being recorded.\n"
			       "# TYPE cairn_idempotency_inflight gauge\ncairn_idempotency_inflight %d\n",
			    inflight);
	evbuffer_add_printf(b, "# HELP cairn_event_streams Open event streams.\n"
			       "# TYPE cairn_event_streams gauge\ncairn_event_streams %d\n",
			    srv->n_subs);
	evbuffer_add_printf(b, "# HELP cairn_connections Open client connections (tcp: of them TCP; "
			       "heads: still sending a request head).\n"
			       "# TYPE cairn_connections gauge\ncairn_connections{kind=\"all\"} %d\n"
			       "cairn_connections{kind=\"tcp\"} %d\ncairn_connections{kind=\"heads\"} %d\n",
			    srv->n_conns, srv->n_tcp, srv->n_heads);
	evbuffer_add_printf(b, "# HELP cairn_head_timeouts_total Connections closed for a request "
			       "head not received within %d s.\n"
			       "# TYPE cairn_head_timeouts_total counter\ncairn_head_timeouts_total %llu\n",
			    CTL_HEAD_TIMEOUT_S, (unsigned long long)srv->head_timeouts);
	evbuffer_add_printf(b, "# HELP cairn_tcp_accept_pauses_total Times the TCP listener stopped "
			       "accepting at its limits.\n"
			       "# TYPE cairn_tcp_accept_pauses_total counter\n"
			       "cairn_tcp_accept_pauses_total %llu\n",
			    (unsigned long long)srv->tcp_pauses);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
			  "text/plain; version=0.0.4");
	evhttp_send_reply(req, 200, "OK", b);
	evbuffer_free(b);
}

/* ---- dispatch ------------------------------------------------------------------------------------ */

static bool method_ok(struct evhttp_request *req, const char *allow, unsigned mask)
{
	if (evhttp_request_get_command(req) & mask)
		return true;
	evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
	server_reply_error(req, 405, "method_not_allowed", "this endpoint takes %s", allow);
	return false;
}

void api_handle(struct server *srv, struct evhttp_request *req, const struct api_path *p)
{
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	switch (p->route) {
	case ROUTE_DEPLOYS:
		if (m == EVHTTP_REQ_GET)
			list_jobs(srv, req, p->app);
		else if (method_ok(req, "GET, POST", EVHTTP_REQ_POST))
			api__submit(srv, req, p);
		return;
	case ROUTE_ROLLBACK:
		if (method_ok(req, "POST", EVHTTP_REQ_POST))
			api__submit(srv, req, p);
		return;
	case ROUTE_STOP:
		if (method_ok(req, "POST", EVHTTP_REQ_POST))
			api__stop(srv, req, p);
		return;
	case ROUTE_UNLOCK:
		if (m == EVHTTP_REQ_GET)
			get_lease(srv, req, p->app);
		else if (method_ok(req, "GET, DELETE", EVHTTP_REQ_DELETE))
			submit_task(srv, req, p, lease_work);
		return;
	case ROUTE_INSTANCES:
		if (method_ok(req, "GET", EVHTTP_REQ_GET))
			submit_task(srv, req, p, instances_work);
		return;
	case ROUTE_APP:
		if (m == EVHTTP_REQ_GET)
			get_app(srv, req, p->app);
		else if (method_ok(req, "GET, DELETE", EVHTTP_REQ_DELETE))
			submit_task(srv, req, p, rm_work);
		return;
	case ROUTE_APPS:
		if (method_ok(req, "GET", EVHTTP_REQ_GET))
			list_apps(srv, req);
		return;
	case ROUTE_JOB:
		if (method_ok(req, "GET", EVHTTP_REQ_GET))
			get_job(srv, req, p->job_id);
		return;
	case ROUTE_JOBS:
		if (method_ok(req, "GET", EVHTTP_REQ_GET))
			list_jobs(srv, req, NULL);
		return;
	case ROUTE_EVENTS:
		if (method_ok(req, "GET", EVHTTP_REQ_GET))
			events_subscribe(srv, req);
		return;
	case ROUTE_METRICS:
		if (method_ok(req, "GET", EVHTTP_REQ_GET))
			metrics(srv, req);
		return;
	case ROUTE_OBJECTS_MISSING:
	case ROUTE_OBJECT:
	case ROUTE_RELEASES:
		api_objects_handle(srv, req, p);
		return;
	default:
		server_reply_error(req, 404, "not_found", "no such endpoint; see docs/controller.md");
	}
}
