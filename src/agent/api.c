/* api: the agent's HTTP/JSON endpoints (docs/agent.md) — routing, handlers, and the requests
 * that wait: a DELETE until its instance stopped, a bulk stop until every instance did, a
 * probe or an activation until its worker job is back. Blocking work never runs here. */
#include "agent/agent-internal.h"

#include "release/release.h"

#include <curl/curl.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_SEGS	 8
#define LOG_TAIL_DEFAULT 100
#define LOG_TAIL_MAX	 10000

struct stop_wait { /* a bulk stop (emergency or stop-all) parked until done or timed out */
	struct stop_wait *next;
	struct agent *ag;	      /* borrowed */
	struct evhttp_request *req;   /* NULL once answered */
	char app[AGENT_NAME_MAX + 1]; /* "" = every app */
	int stopped;		      /* instances that were running when asked */
	struct event *timer;	      /* owned */
};

char *agent__body_of(struct evhttp_request *req, size_t *out_n)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t n = evbuffer_get_length(in);
	char *p = malloc(n + 1);
	if (!p)
		return NULL;
	evbuffer_copyout(in, p, n);
	p[n] = 0;
	*out_n = n;
	return p;
}

/* ---- stopping ----------------------------------------------------------------------------- */

static size_t live_count(struct agent *ag, const char *app)
{
	size_t n = 0;
	for (struct instance *in = ag->inst; in; in = in->next)
		if ((!*app || !strcmp(in->app, app)) && in->sup.state != SUP_STOPPED &&
		    in->sup.state != SUP_FAILED)
			n++;
	return n;
}

static void stop_wait_answer(struct stop_wait *sw)
{
	struct agent *ag = sw->ag;
	if (sw->req)
		agent_reply_json(sw->req, 200,
				 json_pack("{s:i,s:I}", "stopped", sw->stopped, "remaining",
					   (json_int_t)live_count(ag, sw->app)));
	sw->req = NULL;
	for (struct stop_wait **p = &ag->stop_waits; *p; p = &(*p)->next)
		if (*p == sw) {
			*p = sw->next;
			break;
		}
	event_free(sw->timer);
	free(sw);
}

static void on_stop_wait_timeout(evutil_socket_t fd, short what, void *arg)
{
	UNUSED(fd);
	UNUSED(what);
	stop_wait_answer(arg);
}

void agent__instance_stopped(struct instance *in)
{
	struct agent *ag = in->ag;
	json_t *j = instance_json(in);
	while (in->waiters) {
		struct waiter *w = in->waiters;
		in->waiters = w->next;
		agent_reply_json(w->req, 200, json_incref(j));
		free(w);
	}
	json_decref(j);
	/* a stopped instance leaves the table: the answer above was its last word */
	agent_remove(ag, in);
	for (struct stop_wait *sw = ag->stop_waits, *next; sw; sw = next) {
		next = sw->next;
		if (live_count(ag, sw->app) == 0)
			stop_wait_answer(sw);
	}
}

/* Stops every instance of app ("" = all); emergency: SIGKILL at once, else the stop signal
 * and each instance's stop timeout. Answers when all are gone or timeout_ms passed. */
static void bulk_stop(struct agent *ag, struct evhttp_request *req, const char *app, bool emergency,
		      int64_t timeout_ms)
{
	struct stop_wait *sw = calloc(1, sizeof(*sw));
	struct instance *in, *next;
	struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};

	if (!sw) {
		agent_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	sw->ag = ag;
	sw->req = req;
	snprintf(sw->app, sizeof(sw->app), "%s", app);
	sw->timer = evtimer_new(ag->base, on_stop_wait_timeout, sw);
	sw->next = ag->stop_waits;
	ag->stop_waits = sw;
	for (in = ag->inst; in; in = in->next)
		if ((!*app || !strcmp(in->app, app)) && in->pid > 0)
			sw->stopped++;
	agent_save_hold(ag);
	for (in = ag->inst; in; in = next) {
		next = in->next; /* the instance may be freed by the event */
		if (*app && strcmp(in->app, app))
			continue;
		if (emergency)
			instance_kill_now(in);
		else
			instance_event(in, SUP_EV_STOP);
	}
	agent_save_release(ag);
	/* the events above may have answered already (nothing was running) */
	for (struct stop_wait *s = ag->stop_waits; s; s = s->next)
		if (s == sw) {
			if (live_count(ag, app) == 0)
				stop_wait_answer(sw);
			else
				evtimer_add(sw->timer, &tv);
			break;
		}
}

void agent_api_shutdown(struct agent *ag)
{
	while (ag->stop_waits) {
		struct stop_wait *sw = ag->stop_waits;
		if (sw->req)
			agent_reply_error(sw->req, 503, "unavailable",
					  "the agent is shutting down");
		sw->req = NULL;
		stop_wait_answer(sw);
	}
	for (struct instance *in = ag->inst; in; in = in->next)
		while (in->waiters) {
			struct waiter *w = in->waiters;
			in->waiters = w->next;
			agent_reply_error(w->req, 503, "unavailable", "the agent is shutting down");
			free(w);
		}
}

/* ---- activation (on a worker) ------------------------------------------------------------- */

struct activate_job {
	struct work w;
	struct agent *ag;
	struct evhttp_request *req;
	struct objstore *os; /* borrowed: objstore reads are thread-safe */
	char id[HASH_ID_LEN + 1];
	char *path;
	size_t files;
	int r;
	struct err e;
};

static void activate_run(struct work *w)
{
	struct activate_job *j = (struct activate_job *)w;
	j->r = agent_activate(j->os, j->ag->state_dir, j->id, &j->path, &j->files, &j->e);
}

static void activate_done(struct work *w)
{
	struct activate_job *j = (struct activate_job *)w;
	if (w->cancelled)
		agent_reply_error(j->req, 503, "unavailable", "the agent is shutting down");
	else if (j->r < 0)
		agent_reply_err(j->req, &j->e);
	else
		agent_reply_json(j->req, 200,
				 json_pack("{s:s,s:s,s:I}", "id", j->id, "path", j->path, "files",
					   (json_int_t)j->files));
	free(j->path);
	free(j);
}

static void handle_activate(struct agent *ag, struct evhttp_request *req, const char *id)
{
	const char *hex = str_starts(id, "sha256:") ? id + 7 : id;
	struct activate_job *j;
	if (strlen(hex) != HASH_HEX_LEN || !hash_is_hex(hex, HASH_HEX_LEN)) {
		agent_reply_error(req, 400, "input",
				  "'%.80s' is not a release id (sha256:<64 hex>)", id);
		return;
	}
	j = calloc(1, sizeof(*j));
	if (!j) {
		agent_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	j->w.run = activate_run;
	j->w.done = activate_done;
	j->ag = ag;
	j->req = req;
	j->os = ag->os;
	snprintf(j->id, sizeof(j->id), "sha256:%s", hex);
	if (work_submit(ag->pool, &j->w) < 0) {
		free(j);
		agent_reply_error(req, 503, "busy", "too many jobs queued; try again");
	}
}

/* ---- probes (on a worker) ----------------------------------------------------------------- */

struct probe_job {
	struct work w;
	struct agent *ag;
	struct evhttp_request *req;
	char app[AGENT_NAME_MAX + 1], iid[INSTANCE_ID_MAX];
	struct probe_req pr;
	int port;
	bool ok;
	long status;
	int64_t latency_ms;
	char error[512];
};

static size_t discard(char *p, size_t size, size_t n, void *ud)
{
	UNUSED(p);
	UNUSED(ud);
	return size * n;
}

static void probe_run(struct work *w)
{
	struct probe_job *j = (struct probe_job *)w;
	int64_t t0 = time_mono_ns();
	if (!j->pr.http) {
		struct err e = {0};
		j->ok = net_tcp_connect_timeout("127.0.0.1", j->port, j->pr.timeout_ms, &e) == 0;
		if (!j->ok)
			snprintf(j->error, sizeof(j->error), "%s", e.msg);
	} else {
		CURL *c = curl_easy_init();
		char url[2200];
		snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", j->port, j->pr.http);
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)j->pr.timeout_ms);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
		curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
		CURLcode cc = curl_easy_perform(c);
		if (cc == CURLE_OK) {
			curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &j->status);
			j->ok = j->status >= 200 && j->status < 300;
			if (!j->ok)
				snprintf(j->error, sizeof(j->error), "GET %s answered %ld",
					 j->pr.http, j->status);
		} else {
			snprintf(j->error, sizeof(j->error), "GET %s: %s", j->pr.http,
				 curl_easy_strerror(cc));
		}
		curl_easy_cleanup(c);
	}
	j->latency_ms = (time_mono_ns() - t0) / 1000000;
}

static void probe_done(struct work *w)
{
	struct probe_job *j = (struct probe_job *)w;
	struct instance *in = agent_find(j->ag, j->app, j->iid);
	if (w->cancelled) {
		agent_reply_error(j->req, 503, "unavailable", "the agent is shutting down");
		free(j->pr.http);
		free(j);
		return;
	}
	if (j->ok && in && in->port == j->port)
		instance_event(in, SUP_EV_PROBE_OK);
	json_t *o = json_pack("{s:b,s:I,s:s*}", "ok", j->ok, "latency_ms",
			      (json_int_t)j->latency_ms, "error", j->error[0] ? j->error : NULL);
	json_object_set_new(o, "status",
			    j->pr.http && j->status ? json_integer(j->status) : json_null());
	if (!j->error[0])
		json_object_set_new(o, "error", json_null());
	agent_reply_json(j->req, 200, o);
	free(j->pr.http);
	free(j);
}

static void handle_probe(struct agent *ag, struct evhttp_request *req, struct instance *in)
{
	struct probe_job *j = calloc(1, sizeof(*j));
	struct err e = {0};
	size_t n = 0;
	char *body = agent__body_of(req, &n);

	if (!j || !body) {
		free(j);
		free(body);
		agent_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	if (agent_parse_probe(body, n, &j->pr, &e) < 0) {
		free(body);
		free(j);
		agent_reply_err(req, &e);
		return;
	}
	free(body);
	if (in->pid <= 0 || !in->port) {
		free(j->pr.http);
		free(j);
		agent__reply_not_running(req, in);
		return;
	}
	j->w.run = probe_run;
	j->w.done = probe_done;
	j->ag = ag;
	j->req = req;
	j->port = in->port;
	snprintf(j->app, sizeof(j->app), "%s", in->app);
	snprintf(j->iid, sizeof(j->iid), "%s", in->id);
	if (work_submit(ag->pool, &j->w) < 0) {
		free(j->pr.http);
		free(j);
		agent_reply_error(req, 503, "busy", "too many probes queued; try again");
	}
}

/* ---- instances ---------------------------------------------------------------------------- */

static json_t *list_json(struct agent *ag, const char *app)
{
	json_t *arr = json_array();
	for (struct instance *in = ag->inst; in; in = in->next)
		if (!app || !strcmp(in->app, app))
			json_array_append_new(arr, instance_json(in));
	return json_pack("{s:o}", "instances", arr);
}

static void handle_start(struct agent *ag, struct evhttp_request *req, const char *app)
{
	struct start_req rq = {0};
	struct err e = {0};
	size_t n = 0;
	char *body = agent__body_of(req, &n), *dir = NULL;
	json_t *arr = NULL;

	if (!body) {
		agent_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	if (agent_parse_start(body, n, &rq, &e) < 0) {
		agent_reply_err(req, &e);
		goto done;
	}
	dir = agent_release_dir(ag, rq.release);
	if (!fs_is_dir(dir)) {
		agent_reply_error(req, 409, "conflict",
				  "release %.19s is not activated on this host; POST "
				  "/v1/releases/%s/activate first",
				  rq.release, rq.release);
		goto done;
	}
	if (agent_count(ag, NULL) + (size_t)rq.count > 1024) {
		agent_reply_error(req, 409, "conflict", "the agent runs at most 1024 instances");
		goto done;
	}
	arr = json_array();
	agent_save_hold(ag);
	for (int i = 0; i < rq.count; i++) {
		struct instance *in;
		if (instance_create(ag, app, rq.release, &rq, &in, &e) < 0) {
			agent_save_release(ag);
			agent_reply_err(req, &e);
			goto done;
		}
		json_array_append_new(arr, instance_json(in));
	}
	agent_save_release(ag); /* recorded on disk before anyone hears of them */
	agent_reply_json(req, 201, json_pack("{s:O}", "instances", arr));
done:
	json_decref(arr);
	start_req_done(&rq);
	free(dir);
	free(body);
}

static void handle_delete(struct agent *ag, struct evhttp_request *req, struct instance *in)
{
	const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	struct waiter *w;
	UNUSED(ag);
	if (q) {
		struct evkeyvalq params;
		const char *t;
		if (evhttp_parse_query_str(q, &params) == 0 &&
		    (t = evhttp_find_header(&params, "timeout_ms"))) {
			char *end;
			long long v = strtoll(t, &end, 10);
			if (*end || v < 0 || v > 3600000) {
				evhttp_clear_headers(&params);
				agent_reply_error(req, 400, "input",
						  "timeout_ms must be 0 to 3600000");
				return;
			}
			in->sup.stop_timeout_ms = v;
		}
		evhttp_clear_headers(&params);
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		agent_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	w->req = req;
	w->next = in->waiters;
	in->waiters = w;
	instance_event(in, SUP_EV_STOP); /* answers at once from backoff/failed/stopped */
}

static void handle_logs(struct evhttp_request *req, struct agent *ag, struct instance *in)
{
	const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	size_t tail = LOG_TAIL_DEFAULT;
	struct err e = {0};
	json_t *lines;
	if (q) {
		struct evkeyvalq params;
		const char *t;
		if (evhttp_parse_query_str(q, &params) == 0 &&
		    (t = evhttp_find_header(&params, "tail"))) {
			char *end;
			long long v = strtoll(t, &end, 10);
			if (*end || v < 1 || v > LOG_TAIL_MAX) {
				evhttp_clear_headers(&params);
				agent_reply_error(req, 400, "input", "tail must be 1 to %d",
						  LOG_TAIL_MAX);
				return;
			}
			tail = (size_t)v;
		}
		evhttp_clear_headers(&params);
	}
	char *path = agent_log_path(ag->state_dir, in->app, in->id);
	if (agent_log_tail(path, tail, &lines, &e) < 0)
		agent_reply_err(req, &e);
	else
		agent_reply_json(req, 200, json_pack("{s:o}", "lines", lines));
	free(path);
}

/* ---- routing ------------------------------------------------------------------------------ */

static int split_path(const char *path, char *store, size_t store_n, char *segs[MAX_SEGS])
{
	int n = 0;
	if (strlen(path) >= store_n)
		return -1;
	strcpy(store, path);
	for (char *p = strtok(store, "/"); p; p = strtok(NULL, "/")) {
		if (n == MAX_SEGS)
			return -1;
		segs[n++] = p;
	}
	return n;
}

static bool seg_is(char *segs[], int n, int i, const char *s)
{
	return i < n && !strcmp(segs[i], s);
}

void agent_api_route(struct agent *ag, struct evhttp_request *req)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	char store[1024], *segs[MAX_SEGS];
	int n = path ? split_path(path, store, sizeof(store), segs) : -1;
	bool get = m == EVHTTP_REQ_GET, post = m == EVHTTP_REQ_POST, del = m == EVHTTP_REQ_DELETE;
	struct err e = {0};

	if (n < 2 || !seg_is(segs, n, 0, "v1"))
		goto not_found;
	if (agent__objects_route(ag, req, segs, n))
		return;
	if (n == 2 && seg_is(segs, n, 1, "agent") && get) {
		char ts[32];
		time_fmt_rfc3339(ag->started_at, ts, sizeof(ts));
		agent_reply_json(req, 200,
				 json_pack("{s:s,s:i,s:s,s:s,s:I,s:s}", "version", CAIRN_VERSION,
					   "pid", (int)getpid(), "started_at", ts, "state_dir",
					   ag->state_dir, "instances",
					   (json_int_t)agent_count(ag, NULL), "socket",
					   ag->sock_path));
		return;
	}
	if (n == 3 && seg_is(segs, n, 1, "agent") && seg_is(segs, n, 2, "stop-all") && post) {
		size_t bn = 0;
		char *body = agent__body_of(req, &bn);
		int64_t t = 0;
		if (!body || agent_parse_timeout(body, bn, 60000, &t, &e) < 0) {
			free(body);
			if (!e.msg[0])
				err_set(&e, ENOMEM, "out of memory");
			agent_reply_err(req, &e);
			return;
		}
		free(body);
		bulk_stop(ag, req, "", false, t);
		return;
	}
	if (n == 2 && seg_is(segs, n, 1, "instances") && get) {
		agent_reply_json(req, 200, list_json(ag, NULL));
		return;
	}
	if (n == 4 && seg_is(segs, n, 1, "releases") && seg_is(segs, n, 3, "activate") && post) {
		handle_activate(ag, req, segs[2]);
		return;
	}
	if (n < 4 || !seg_is(segs, n, 1, "apps"))
		goto not_found;
	const char *app = segs[2];
	if (!agent_name_ok(app)) {
		agent_reply_error(req, 400, "input",
				  "'%.80s' is not an app name ([a-z0-9][a-z0-9_.-]*)", app);
		return;
	}
	if (n == 4 && seg_is(segs, n, 3, "stop") && post) {
		size_t bn = 0;
		char *body = agent__body_of(req, &bn);
		int64_t t = 0;
		if (!body || agent_parse_timeout(body, bn, 2000, &t, &e) < 0) {
			free(body);
			if (!e.msg[0])
				err_set(&e, ENOMEM, "out of memory");
			agent_reply_err(req, &e);
			return;
		}
		free(body);
		agent_proxy_stop_traffic(ag, app); /* users get 503 before the processes die */
		bulk_stop(ag, req, app, true, t);
		return;
	}
	if (n == 4 && seg_is(segs, n, 3, "proxy")) {
		agent_proxy_route(ag, req, app);
		return;
	}
	if (!seg_is(segs, n, 3, "instances"))
		goto not_found;
	if (n == 4 && get) {
		agent_reply_json(req, 200, list_json(ag, app));
		return;
	}
	if (n == 4 && post) {
		handle_start(ag, req, app);
		return;
	}
	if (n < 5)
		goto bad_method;
	struct instance *in = agent_find(ag, app, segs[4]);
	if (!in) {
		agent_reply_error(req, 404, "not_found",
				  "no instance '%.40s' of app %s on this host", segs[4], app);
		return;
	}
	if (n == 5 && get) {
		agent_reply_json(req, 200, instance_json(in));
		return;
	}
	if (n == 5 && del) {
		handle_delete(ag, req, in);
		return;
	}
	if (n == 6 && seg_is(segs, n, 5, "logs") && get) {
		handle_logs(req, ag, in);
		return;
	}
	if (n == 6 && seg_is(segs, n, 5, "probe") && post) {
		handle_probe(ag, req, in);
		return;
	}
	if (n == 6 && seg_is(segs, n, 5, "check") && post) {
		agent_handle_check(ag, req, in);
		return;
	}
	if (n == 5 || (n == 6 && (seg_is(segs, n, 5, "logs") || seg_is(segs, n, 5, "probe") ||
				   seg_is(segs, n, 5, "check"))))
		goto bad_method;
not_found:
	agent_reply_error(req, 404, "not_found", "no such endpoint: %.200s (see docs/agent.md)",
			  path ? path : "?");
	return;
bad_method:
	agent_reply_error(req, 405, "input", "method not allowed on %.200s", path);
}
