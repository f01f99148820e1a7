/* controller/api: the HTTP API's handlers (loop thread). Reads are answered here from the
 * loop's own connection; anything that writes goes to the store worker as a task and is
 * answered when it comes back — a deploy request is recorded, never run, before its 202. */
#include "controller/controller-internal.h"

#include "config/config.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdlib.h>
#include <string.h>

static json_t *time_json(int64_t ms)
{
	char t[32];
	if (!ms)
		return json_null();
	time_fmt_rfc3339(ms / 1000, t, sizeof(t));
	return json_string(t);
}

static json_t *str_or_null(const char *s)
{
	return s && *s ? json_string(s) : json_null();
}

static int add_step(void *ctx, const struct store_step *st)
{
	json_t *o = json_pack("{s:s,s:s,s:i,s:s,s:o,s:o}", "host", st->host, "step", st->step,
			      "attempt", st->attempt, "state", st->state, "started_at",
			      time_json(st->started_at), "finished_at", time_json(st->finished_at));
	if (!o)
		return -ENOMEM;
	if (st->finished_at)
		json_object_set_new(o, "duration_ms", json_integer(st->finished_at - st->started_at));
	json_t *d = json_loads(st->detail, 0, NULL);
	json_object_set_new(o, "detail", d ? d : json_object());
	json_array_append_new(ctx, o);
	return 0;
}

json_t *api_job_json(struct store *st, const struct store_job *j, bool with_steps)
{
	struct err e;
	json_t *o = json_pack("{s:I,s:s,s:s,s:s,s:o,s:s,s:s,s:b,s:o,s:o,s:o,s:o,s:o}", "id",
			      (json_int_t)j->id, "app", j->app, "kind", j->kind, "release", j->release,
			      "from_release", str_or_null(j->from_release), "state",
			      job_state_name(j->state), "reason", j->reason, "force", j->force,
			      "created_at", time_json(j->created_at), "started_at",
			      time_json(j->started_at), "finished_at", time_json(j->finished_at),
			      "deadline_at", time_json(j->deadline_at), "error", str_or_null(j->error));
	if (!o)
		return NULL;
	json_object_set_new(o, "unjudged", str_or_null(j->unjudged));
	json_object_set_new(o, "terminal", json_boolean(job_state_terminal(j->state)));
	json_t *tags = store_release_tags_json(st, j->release, &e);
	if (!tags)
		log_warn("controller", "job %lld: reading the release's tags: %s", (long long)j->id,
			 e.msg);
	json_object_set_new(o, "release_tags", tags ? tags : json_array());
	/* how long it ran (finished) or has been running (not yet) */
	if (j->started_at)
		json_object_set_new(o, "duration_ms",
				    json_integer((j->finished_at ? j->finished_at
								 : time_now_ns() / 1000000) -
						 j->started_at));
	if (j->created_by[0])
		json_object_set_new(o, "created_by", json_string(j->created_by));
	if (with_steps) {
		json_t *steps = json_array();
		if (store_jobs(st)->steps(st, j->id, add_step, steps, &e) < 0)
			log_warn("controller", "job %lld: reading steps: %s", (long long)j->id, e.msg);
		json_object_set_new(o, "steps", steps);
	}
	return o;
}

static void set_location(struct evhttp_request *req, int64_t id)
{
	char loc[64];
	snprintf(loc, sizeof(loc), "/v1/jobs/%lld", (long long)id);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Location", loc);
}

static void reply_job(struct server *srv, struct evhttp_request *req, int status,
		      const struct store_job *j, const char *note)
{
	json_t *o = api_job_json(srv->rd, j, true);
	if (!o) {
		server_reply_error(req, 500, "internal", "out of memory");
		return;
	}
	if (note)
		json_object_set_new(o, "note", json_string(note));
	set_location(req, j->id);
	server_reply_json(req, status, o);
}

/* A deploy whose listen differs from the current release's moves the app's port: say so in
 * the answer ("listen_change" and a note) before it runs. */
static void note_listen_move(struct task *t, struct store *st, const char *release)
{
	struct store_app a;
	struct config *oldc = NULL, *newc = NULL;
	struct err e;
	if (store_jobs(st)->app_get(st, t->app, &a, &e) < 0 || !a.current[0] ||
	    !strcmp(a.current, release) || plan_load(t->srv->o.state_dir, a.current, &oldc, &e) < 0 ||
	    plan_load(t->srv->o.state_dir, release, &newc, &e) < 0)
		goto out;
	char was[300], will[300];
	snprintf(was, sizeof(was), "%s:%d", oldc->listen_host, oldc->listen_port);
	snprintf(will, sizeof(will), "%s:%d", newc->listen_host, newc->listen_port);
	if (!strcmp(was, will))
		goto out;
	json_object_set_new(t->answer, "listen_change", json_pack("{s:s,s:s}", "old", was, "new", will));
	char *note = xasprintf("this deploy moves %s's port: listen %s → %s. At the switch the proxy "
			       "stops listening on %s (its clients are refused from then on) and "
			       "listens on %s; a rollback moves it back",
			       t->app, was, will, was, will);
	json_object_set_new(t->answer, "note", json_string(note));
	free(note);
out:
	config_free(oldc);
	config_free(newc);
}

/* ---- POST deploys / rollback: recorded by the worker ------------------------------------------ */

static bool inflight_has(struct server *srv, const char *app, const char *key)
{
	for (struct inflight *f = srv->inflight; f; f = f->next)
		if (!strcmp(f->app, app) && !strcmp(f->key, key))
			return true;
	return false;
}

static void inflight_drop(struct server *srv, const char *app, const char *key)
{
	for (struct inflight **pp = &srv->inflight; *pp; pp = &(*pp)->next)
		if (!strcmp((*pp)->app, app) && !strcmp((*pp)->key, key)) {
			struct inflight *f = *pp;
			*pp = f->next;
			free(f);
			return;
		}
}

struct pick {
	const char *current;
	char *out;
	bool found;
};

static int pick_one(void *ctx, const struct store_job *j)
{
	struct pick *pk = ctx;
	if (strcmp(j->kind, "stop") && strcmp(j->release, pk->current)) {
		memcpy(pk->out, j->release, HASH_ID_LEN + 1);
		pk->found = true;
		return 1;
	}
	return 0;
}

/* Rollback without "to": the newest release that succeeded for the app and is not current. */
static int pick_rollback_target(struct store *st, const char *app, char out[HASH_ID_LEN + 1],
				struct err *e)
{
	struct store_app a;
	int r;
	if ((r = store_jobs(st)->app_get(st, app, &a, e)) < 0)
		return r;
	struct pick pk = { a.current, out, false };
	if ((r = store_jobs(st)->list(st, app, 1u << JOB_SUCCEEDED, 0, pick_one, &pk, e)) < 0)
		return r;
	if (!pk.found)
		return err_set(e, CAIRN_ENOTFOUND,
			       "%s has no earlier good release to go back to; name one with --to REF",
			       app);
	return 0;
}

static void submit_work(struct task *t)
{
	struct server *srv = t->srv;
	struct store *st = srv->wr;
	struct store_job_submit rq;
	struct store_job j;
	enum store_submit_outcome oc;
	char id[HASH_ID_LEN + 1];
	bool rollback = t->route == ROUTE_ROLLBACK;
	int r;

	test_hook_delay("CAIRN_TEST_RECORD_DELAY_MS");
	if (!st) {
		t->status = 500;
		err_set(&t->err, EIO, "the state database is not open; see the controller's log");
		return;
	}
	/* a replay is answered from the key's record before the REF is looked at again */
	if (rollback && !t->body.release[0])
		r = pick_rollback_target(st, t->app, id, &t->err);
	else
		r = store_release_resolve(st, t->app, t->body.release, id, &t->err);
	if (r < 0 && t->key[0]) {
		char fp[HASH_HEX_LEN + 1];
		int found = store_jobs(st)->idem_lookup(st, t->app, t->key, fp, &j, &t->err);
		if (found == 1) {
			r = 0;
			snprintf(id, sizeof(id), "%s", j.release);
		}
	}
	if (r < 0) {
		t->status = server_status_for(&t->err);
		return;
	}
	/* one owner per port on a host: refused before it is queued, naming the owner */
	if (ports_check_release(srv, st, t->app, id, &t->err) < 0) {
		t->status = 409;
		return;
	}
	memset(&rq, 0, sizeof(rq));
	rq.app = t->app;
	rq.kind = rollback ? "rollback" : "deploy";
	rq.release = id;
	rq.reason = t->body.reason;
	rq.force = t->body.force || rollback;
	rq.idem_key = t->key[0] ? t->key : NULL;
	rq.fingerprint = t->body.fingerprint;
	rq.queue_max = srv->o.queue_max > 0 ? srv->o.queue_max : CTL_QUEUE_MAX;
	rq.noop_if_current = !rq.force;
	if ((r = store_jobs(st)->submit(st, &rq, &oc, &j, &t->err)) < 0) {
		t->status = 500;
		return;
	}
	switch (oc) {
	case STORE_SUBMIT_CREATED:
		t->status = 202;
		break;
	case STORE_SUBMIT_REPLAY:
	case STORE_SUBMIT_NOOP:
		t->status = 200;
		break;
	case STORE_SUBMIT_MISMATCH:
		t->status = 422;
		err_set(&t->err, CAIRN_EINPUT,
			"Idempotency-Key '%s' was used for another request body (job %lld); use a new "
			"key for a new request",
			t->key, (long long)j.id);
		return;
	case STORE_SUBMIT_QUEUE_FULL:
		t->status = 409;
		err_set(&t->err, EAGAIN,
			"%d deploys of %s are already queued; wait for them ('cairn history') or "
			"stop them ('cairn stop --emergency %s')",
			rq.queue_max, t->app, t->app);
		return;
	}
	t->answer = api_job_json(st, &j, true);
	if (t->answer && oc == STORE_SUBMIT_CREATED)
		note_listen_move(t, st, id);
	if (t->answer && oc == STORE_SUBMIT_NOOP)
		json_object_set_new(t->answer, "note",
				    json_string("release is already current and good: nothing to do "
						"(force to deploy again)"));
	if (t->answer && oc == STORE_SUBMIT_REPLAY)
		json_object_set_new(t->answer, "replayed", json_true());
}

static void submit_done(struct task *t)
{
	struct server *srv = t->srv;
	if (t->key[0])
		inflight_drop(srv, t->app, t->key);
	if (t->status == 202)
		runners_schedule(srv, t->app);
	if (!t->req)
		return;
	if (t->status >= 400 || !t->answer) {
		if (!t->answer && t->status < 400)
			t->status = 500;
		server_reply_error(t->req, t->status,
				   t->status == 422 && t->err.code == CAIRN_EINPUT ? "idempotency_mismatch"
				   : t->err.code == EADDRINUSE			    ? "port_taken"
				   : t->status == 409				    ? "queue_full"
						      : server_code_for(&t->err),
				   "%s", t->err.msg);
		return;
	}
	json_t *id = json_object_get(t->answer, "id");
	set_location(t->req, json_integer_value(id));
	server_reply_json(t->req, t->status, json_incref(t->answer));
}

static int read_body(struct evhttp_request *req, struct buf *b)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t n = evbuffer_get_length(in);
	if (n > API_BODY_MAX)
		return -E2BIG;
	if (n && buf_add(b, evbuffer_pullup(in, -1), n) < 0)
		return -ENOMEM;
	return 0;
}

void api__submit(struct server *srv, struct evhttp_request *req, const struct api_path *p)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	const char *kh = evhttp_find_header(h, "Idempotency-Key");
	struct task *t = calloc(1, sizeof(*t));
	struct buf b;

	if (!t) {
		server_reply_error(req, 503, "internal", "out of memory");
		return;
	}
	buf_init(&b, API_BODY_MAX);
	if (read_body(req, &b) < 0) {
		server_reply_error(req, 413, "too_large", "body is larger than %d bytes", API_BODY_MAX);
		goto fail;
	}
	if (api_parse_deploy_body(b.data ? b.data : "", b.len, p->route == ROUTE_ROLLBACK, &t->body,
				  &t->err) < 0) {
		server_reply_error(req, server_status_for(&t->err), server_code_for(&t->err), "%s",
				   t->err.msg);
		goto fail;
	}
	if (kh && api_parse_idem_key(kh, t->key, &t->err) < 0) {
		server_reply_error(req, 400, "input", "%s", t->err.msg);
		goto fail;
	}
	snprintf(t->app, sizeof(t->app), "%s", p->app);
	t->route = p->route;
	if (t->key[0]) {
		char fp[HASH_HEX_LEN + 1];
		struct store_job j;
		struct err e;
		int found = store_jobs(srv->rd)->idem_lookup(srv->rd, p->app, t->key, fp, &j, &e);
		if (found == 1 && !strcmp(fp, t->body.fingerprint)) {
			reply_job(srv, req, 200, &j, NULL);
			goto fail;
		}
		if (found == 1) {
			server_reply_error(req, 422, "idempotency_mismatch",
					   "Idempotency-Key '%s' was used for another request body (job "
					   "%lld); use a new key for a new request",
					   t->key, (long long)j.id);
			goto fail;
		}
		if (inflight_has(srv, p->app, t->key)) {
			server_reply_error(req, 409, "in_progress",
					   "a request with Idempotency-Key '%s' is still being recorded; "
					   "retry it in a moment",
					   t->key);
			goto fail;
		}
		struct inflight *f = calloc(1, sizeof(*f));
		if (!f) {
			server_reply_error(req, 503, "internal", "out of memory");
			goto fail;
		}
		snprintf(f->app, sizeof(f->app), "%s", p->app);
		snprintf(f->key, sizeof(f->key), "%s", t->key);
		f->next = srv->inflight;
		srv->inflight = f;
	}
	buf_done(&b);
	t->req = req;
	t->work = submit_work;
	t->done = submit_done;
	server_submit(srv, t);
	return;
fail:
	buf_done(&b);
	free(t);
}

