/* store/sqlite-jobs: deploy jobs, steps, idempotency keys, leases, app state and the event
 * log in SQLite. Each call is one transaction (BEGIN IMMEDIATE … COMMIT), so a state change is
 * durable before the caller acts on it. No policy lives here beyond what makes a change atomic. */
#include "store/sqlite-internal.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define JOB_COLS                                                                                   \
	"id, app, kind, release, from_release, state, reason, force, created_at, started_at, "     \
	"finished_at, deadline_at, error, created_by, unjudged"

static const char *const state_names[JOB_STATE_COUNT] = {
	[JOB_QUEUED] = "queued",       [JOB_RUNNING] = "running", [JOB_SUCCEEDED] = "succeeded",
	[JOB_FAILED] = "failed",       [JOB_ROLLED_BACK] = "rolled_back",
	[JOB_CANCELLED] = "cancelled",
};

const char *job_state_name(enum job_state st)
{
	return (unsigned)st < JOB_STATE_COUNT ? state_names[st] : "unknown";
}

int job_state_parse(const char *name, enum job_state *out)
{
	for (int i = 0; i < JOB_STATE_COUNT; i++)
		if (name && !strcmp(name, state_names[i])) {
			*out = (enum job_state)i;
			return 0;
		}
	return -EINVAL;
}

void sqlite__copy_col(char *dst, size_t n, sqlite3_stmt *q, int col)
{
	const char *t = (const char *)sqlite3_column_text(q, col);
	snprintf(dst, n, "%s", t ? t : "");
}

static void row_to_job(sqlite3_stmt *q, struct store_job *j)
{
	char st[16];
	memset(j, 0, sizeof(*j));
	j->id = sqlite3_column_int64(q, 0);
	sqlite__copy_col(j->app, sizeof(j->app), q, 1);
	sqlite__copy_col(j->kind, sizeof(j->kind), q, 2);
	sqlite__copy_col(j->release, sizeof(j->release), q, 3);
	sqlite__copy_col(j->from_release, sizeof(j->from_release), q, 4);
	sqlite__copy_col(st, sizeof(st), q, 5);
	if (job_state_parse(st, &j->state) < 0)
		j->state = JOB_FAILED;
	sqlite__copy_col(j->reason, sizeof(j->reason), q, 6);
	j->force = sqlite3_column_int(q, 7) != 0;
	j->created_at = sqlite3_column_int64(q, 8);
	j->started_at = sqlite3_column_int64(q, 9);
	j->finished_at = sqlite3_column_int64(q, 10);
	j->deadline_at = sqlite3_column_int64(q, 11);
	sqlite__copy_col(j->error, sizeof(j->error), q, 12);
	sqlite__copy_col(j->created_by, sizeof(j->created_by), q, 13);
	sqlite__copy_col(j->unjudged, sizeof(j->unjudged), q, 14);
}

/* Statements are prepared once per connection and kept (the set of SQL texts is fixed);
 * sqlite__release resets one for its next use, which also ends its read transaction. */
int sqlite__prep(struct sqlite_store *s, const char *sql, sqlite3_stmt **q, struct err *e)
{
	for (size_t i = 0; i < s->n_cache; i++)
		if (!strcmp(s->cache[i].sql, sql)) {
			*q = s->cache[i].q;
			return 0;
		}
	if (s->n_cache == s->cap_cache) {
		size_t cap = s->cap_cache ? 2 * s->cap_cache : 32;
		void *p = realloc(s->cache, cap * sizeof(*s->cache));
		if (!p)
			return err_set(e, ENOMEM, "out of memory");
		s->cache = p;
		s->cap_cache = cap;
	}
	char *copy = strdup(sql);
	if (!copy)
		return err_set(e, ENOMEM, "out of memory");
	if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, q, NULL) != SQLITE_OK) {
		free(copy);
		return sqlite__fail(s, e, "preparing a statement");
	}
	s->cache[s->n_cache].sql = copy;
	s->cache[s->n_cache].q = *q;
	s->n_cache++;
	return 0;
}

void sqlite__release(sqlite3_stmt *q)
{
	sqlite3_reset(q);
	sqlite3_clear_bindings(q);
}

void sqlite__cache_free(struct sqlite_store *s)
{
	for (size_t i = 0; i < s->n_cache; i++) {
		sqlite3_finalize(s->cache[i].q);
		free(s->cache[i].sql);
	}
	free(s->cache);
	s->cache = NULL;
	s->n_cache = s->cap_cache = 0;
}

int sqlite__begin(struct sqlite_store *s, struct err *e)
{
	if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return sqlite__fail(s, e, "starting transaction");
	return 0;
}

int sqlite__finish(struct sqlite_store *s, int r, struct err *e)
{
	if (r < 0) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		return r;
	}
	if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		r = sqlite__fail(s, e, "committing");
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	}
	return r;
}

/* Runs a statement that returns no rows; q is finalized. */
int sqlite__exec_done(struct sqlite_store *s, sqlite3_stmt *q, const char *what, struct err *e)
{
	int rc = sqlite3_step(q);
	sqlite__release(q);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return sqlite__fail(s, e, what);
	return 0;
}

static int job_get_locked(struct sqlite_store *s, int64_t id, struct store_job *out, struct err *e)
{
	sqlite3_stmt *q;
	int rc, r;
	if ((r = sqlite__prep(s, "SELECT " JOB_COLS " FROM jobs WHERE id = ?", &q, e)) < 0)
		return r;
	sqlite3_bind_int64(q, 1, id);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW)
		row_to_job(q, out);
	else if (rc == SQLITE_DONE)
		r = err_set(e, CAIRN_ENOTFOUND, "no job %lld", (long long)id);
	else
		r = sqlite__fail(s, e, "reading job");
	sqlite__release(q);
	return r;
}

int sqlite__event_add(struct sqlite_store *s, const char *type, int64_t job_id, json_t *data,
		     struct err *e)
{
	sqlite3_stmt *q;
	char *txt = json_dumps(data, JSON_COMPACT | JSON_SORT_KEYS);
	int r;
	json_decref(data);
	if (!txt)
		return err_set(e, ENOMEM, "out of memory");
	if ((r = sqlite__prep(s, "INSERT INTO events (at, type, job_id, data) VALUES (?,?,?,?)", &q, e)) < 0) {
		free(txt);
		return r;
	}
	sqlite3_bind_int64(q, 1, time_now_ns() / 1000000);
	sqlite3_bind_text(q, 2, type, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 3, job_id);
	sqlite3_bind_text(q, 4, txt, -1, SQLITE_TRANSIENT);
	free(txt);
	return sqlite__exec_done(s, q, "recording event", e);
}

static int job_event(struct sqlite_store *s, const struct store_job *j, struct err *e)
{
	json_t *d = json_pack("{s:I,s:s,s:s,s:s,s:s}", "job", (json_int_t)j->id, "app", j->app,
			      "kind", j->kind, "release", j->release, "state", job_state_name(j->state));
	if (!d)
		return err_set(e, ENOMEM, "out of memory");
	if (j->error[0])
		json_object_set_new(d, "error", json_string(j->error));
	if (j->unjudged[0])
		json_object_set_new(d, "unjudged", json_string(j->unjudged));
	return sqlite__event_add(s, "job", j->id, d, e);
}

int sqlite__app_ensure(struct sqlite_store *s, const char *app, struct err *e)
{
	sqlite3_stmt *q;
	int r;
	if ((r = sqlite__prep(s, "INSERT OR IGNORE INTO apps (app) VALUES (?)", &q, e)) < 0)
		return r;
	sqlite3_bind_text(q, 1, app, -1, SQLITE_STATIC);
	return sqlite__exec_done(s, q, "recording app", e);
}

int sqlite__app_get_locked(struct sqlite_store *s, const char *app, struct store_app *out,
			  struct err *e)
{
	sqlite3_stmt *q;
	int r;
	memset(out, 0, sizeof(*out));
	snprintf(out->app, sizeof(out->app), "%s", app);
	if ((r = sqlite__prep(s, "SELECT current, last_good, upstreams FROM apps WHERE app = ?", &q, e)) < 0)
		return r;
	sqlite3_bind_text(q, 1, app, -1, SQLITE_STATIC);
	if (sqlite3_step(q) == SQLITE_ROW) {
		sqlite__copy_col(out->current, sizeof(out->current), q, 0);
		sqlite__copy_col(out->last_good, sizeof(out->last_good), q, 1);
		sqlite__copy_col(out->upstreams, sizeof(out->upstreams), q, 2);
	}
	sqlite__release(q);
	if ((r = sqlite__prep(s, "SELECT id FROM jobs WHERE app = ? AND state = 'running' LIMIT 1", &q, e)) < 0)
		return r;
	sqlite3_bind_text(q, 1, app, -1, SQLITE_STATIC);
	if (sqlite3_step(q) == SQLITE_ROW)
		out->running_job = sqlite3_column_int64(q, 0);
	sqlite__release(q);
	/* stopped: the newest stop, success or rollback (the last that changed what serves) is a stop */
	if ((r = sqlite__prep(s,
			      "SELECT kind FROM jobs WHERE app = ? AND (kind = 'stop' OR state IN "
			      "('succeeded','rolled_back')) ORDER BY id DESC LIMIT 1",
			      &q, e)) < 0)
		return r;
	sqlite3_bind_text(q, 1, app, -1, SQLITE_STATIC);
	if (sqlite3_step(q) == SQLITE_ROW)
		out->stopped = !strcmp((const char *)sqlite3_column_text(q, 0), "stop");
	sqlite__release(q);
	return 0;
}

static int idem_lookup_locked(struct sqlite_store *s, const char *app, const char *key,
			      char out_fp[HASH_HEX_LEN + 1], struct store_job *out, struct err *e)
{
	sqlite3_stmt *q;
	int r, found = 0;
	int64_t job_id = 0;
	if ((r = sqlite__prep(s, "SELECT fingerprint, job_id FROM idempotency_keys WHERE app = ? AND key = ?",
		      &q, e)) < 0)
		return r;
	sqlite3_bind_text(q, 1, app, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, key, -1, SQLITE_STATIC);
	if (sqlite3_step(q) == SQLITE_ROW) {
		sqlite__copy_col(out_fp, HASH_HEX_LEN + 1, q, 0);
		job_id = sqlite3_column_int64(q, 1);
		found = 1;
	}
	sqlite__release(q);
	if (found && (r = job_get_locked(s, job_id, out, e)) < 0)
		return r;
	return found;
}

/* The newest succeeded job that deployed `release` to the app, for a no-op answer. */
static int job_that_made_current(struct sqlite_store *s, const char *app, const char *release,
				 struct store_job *out, struct err *e)
{
	sqlite3_stmt *q;
	int r, found = 0;
	if ((r = sqlite__prep(s,
		      "SELECT " JOB_COLS " FROM jobs WHERE app = ? AND release = ? AND state = 'succeeded' "
		      "AND kind != 'stop' ORDER BY id DESC LIMIT 1",
		      &q, e)) < 0)
		return r;
	sqlite3_bind_text(q, 1, app, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, release, -1, SQLITE_STATIC);
	if (sqlite3_step(q) == SQLITE_ROW) {
		row_to_job(q, out);
		found = 1;
	}
	sqlite__release(q);
	return found;
}

static int submit_locked(struct sqlite_store *s, const struct store_job_submit *req,
			 enum store_submit_outcome *out_outcome, struct store_job *out, struct err *e)
{
	sqlite3_stmt *q;
	struct store_job j;
	int r;

	if (req->idem_key) {
		char fp[HASH_HEX_LEN + 1] = "";
		if ((r = idem_lookup_locked(s, req->app, req->idem_key, fp, &j, e)) < 0)
			return r;
		if (r == 1) {
			*out_outcome = strcmp(fp, req->fingerprint) ? STORE_SUBMIT_MISMATCH
								   : STORE_SUBMIT_REPLAY;
			*out = j;
			return 0;
		}
	}
	if (req->noop_if_current) {
		struct store_app a;
		if ((r = sqlite__app_get_locked(s, req->app, &a, e)) < 0)
			return r;
		/* current and good, and nothing queued or running that would move it */
		if (a.current[0] && !strcmp(a.current, req->release) && !strcmp(a.last_good, a.current) &&
		    !a.running_job && !a.stopped) {
			if ((r = sqlite__prep(s, "SELECT count(*) FROM jobs WHERE app = ? AND state = 'queued'", &q,
				      e)) < 0)
				return r;
			sqlite3_bind_text(q, 1, req->app, -1, SQLITE_STATIC);
			int queued = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int(q, 0) : 0;
			sqlite__release(q);
			/* a release that only passed unjudged is deployed again, to be judged this time */
			if ((r = sqlite__prep(s, "SELECT count(*) FROM releases WHERE id = ? AND state = 'good'",
					      &q, e)) < 0)
				return r;
			sqlite3_bind_text(q, 1, req->release, -1, SQLITE_STATIC);
			int good = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int(q, 0) : 0;
			sqlite__release(q);
			if (!queued && good && (r = job_that_made_current(s, req->app, req->release, &j, e)) != 0) {
				if (r < 0)
					return r;
				*out_outcome = STORE_SUBMIT_NOOP;
				*out = j;
				return 0;
			}
		}
	}
	if ((r = sqlite__prep(s, "SELECT count(*) FROM jobs WHERE app = ? AND state = 'queued'", &q, e)) < 0)
		return r;
	sqlite3_bind_text(q, 1, req->app, -1, SQLITE_STATIC);
	int queued = sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int(q, 0) : 0;
	sqlite__release(q);
	if (queued >= req->queue_max) {
		*out_outcome = STORE_SUBMIT_QUEUE_FULL;
		return 0;
	}
	if ((r = sqlite__app_ensure(s, req->app, e)) < 0)
		return r;
	if ((r = sqlite__prep(s,
		      "INSERT INTO jobs (app, kind, release, state, reason, force, created_at) "
		      "VALUES (?,?,?,'queued',?,?,?)",
		      &q, e)) < 0)
		return r;
	sqlite3_bind_text(q, 1, req->app, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, req->kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 3, req->release, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 4, req->reason ? req->reason : "", -1, SQLITE_STATIC);
	sqlite3_bind_int(q, 5, req->force);
	sqlite3_bind_int64(q, 6, time_now_ns() / 1000000);
	if ((r = sqlite__exec_done(s, q, "recording job", e)) < 0)
		return r;
	int64_t id = sqlite3_last_insert_rowid(s->db);
	if (req->idem_key) {
		if ((r = sqlite__prep(s,
			      "INSERT INTO idempotency_keys (app, key, fingerprint, job_id, created_at) "
			      "VALUES (?,?,?,?,?)",
			      &q, e)) < 0)
			return r;
		sqlite3_bind_text(q, 1, req->app, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 2, req->idem_key, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 3, req->fingerprint, -1, SQLITE_STATIC);
		sqlite3_bind_int64(q, 4, id);
		sqlite3_bind_int64(q, 5, time_now_ns() / 1000000);
		if ((r = sqlite__exec_done(s, q, "recording idempotency key", e)) < 0)
			return r;
	}
	if ((r = job_get_locked(s, id, &j, e)) < 0 || (r = job_event(s, &j, e)) < 0)
		return r;
	*out_outcome = STORE_SUBMIT_CREATED;
	*out = j;
	return 0;
}

static int sq_submit(struct store *base, const struct store_job_submit *req,
		     enum store_submit_outcome *out_outcome, struct store_job *out, struct err *e)
{
	struct sqlite_store *s = (struct sqlite_store *)base;
	enum store_submit_outcome oc = STORE_SUBMIT_QUEUE_FULL;
	struct store_job j;
	int r = sqlite__begin(s, e);
	if (r < 0)
		return r;
	memset(&j, 0, sizeof(j));
	r = sqlite__finish(s, submit_locked(s, req, &oc, &j, e), e);
	if (r >= 0) {
		*out_outcome = oc;
		if (oc != STORE_SUBMIT_QUEUE_FULL)
			*out = j;
	}
	return r;
}

static int sq_idem_lookup(struct store *base, const char *app, const char *key,
			  char out_fp[HASH_HEX_LEN + 1], struct store_job *out, struct err *e)
{
	return idem_lookup_locked((struct sqlite_store *)base, app, key, out_fp, out, e);
}

static int sq_idem_purge(struct store *base, int64_t before, struct err *e)
{
	struct sqlite_store *s = (struct sqlite_store *)base;
	sqlite3_stmt *q;
	int r;
	if ((r = sqlite__prep(s, "DELETE FROM idempotency_keys WHERE created_at < ?", &q, e)) < 0)
		return r;
	sqlite3_bind_int64(q, 1, before);
	if ((r = sqlite__exec_done(s, q, "purging idempotency keys", e)) < 0)
		return r;
	return sqlite3_changes(s->db);
}

static int sq_get(struct store *base, int64_t id, struct store_job *out, struct err *e)
{
	return job_get_locked((struct sqlite_store *)base, id, out, e);
}

static int sq_list(struct store *base, const char *app, unsigned mask, int limit,
		   int (*cb)(void *ctx, const struct store_job *j), void *ctx, struct err *e)
{
	struct sqlite_store *s = (struct sqlite_store *)base;
	sqlite3_stmt *q;
	int rc, r;
	if ((r = sqlite__prep(s, "SELECT " JOB_COLS " FROM jobs WHERE (?1 IS NULL OR app = ?1) ORDER BY id DESC",
		      &q, e)) < 0)
		return r;
	if (app)
		sqlite3_bind_text(q, 1, app, -1, SQLITE_STATIC);
	int n = 0;
	while ((rc = sqlite3_step(q)) == SQLITE_ROW && (limit <= 0 || n < limit)) {
		struct store_job j;
		row_to_job(q, &j);
		if (mask && !(mask & (1u << j.state)))
			continue;
		n++;
		if ((r = cb(ctx, &j)) != 0)
			break;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		r = sqlite__fail(s, e, "listing jobs");
	sqlite__release(q);
	return r;
}

static int sq_next_queued(struct store *base, const char *app, struct store_job *out, struct err *e)
{
	struct sqlite_store *s = (struct sqlite_store *)base;
	sqlite3_stmt *q;
	int r, found = 0;
	if ((r = sqlite__prep(s,
		      "SELECT " JOB_COLS " FROM jobs WHERE app = ? AND state = 'queued' ORDER BY id LIMIT 1",
		      &q, e)) < 0)
		return r;
	sqlite3_bind_text(q, 1, app, -1, SQLITE_STATIC);
	if (sqlite3_step(q) == SQLITE_ROW) {
		row_to_job(q, out);
		found = 1;
	}
	sqlite__release(q);
	return found;
}

static int set_app(struct sqlite_store *s, const char *app, const char *col, const char *val,
		   struct err *e)
{
	sqlite3_stmt *q;
	char sql[96];
	int r;
	snprintf(sql, sizeof(sql), "UPDATE apps SET %s = ? WHERE app = ?", col);
	if ((r = sqlite__app_ensure(s, app, e)) < 0 || (r = sqlite__prep(s, sql, &q, e)) < 0)
		return r;
	sqlite3_bind_text(q, 1, val, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, app, -1, SQLITE_STATIC);
	return sqlite__exec_done(s, q, "updating app", e);
}

static int transition_locked(struct sqlite_store *s, int64_t id, enum job_state from,
			     enum job_state to, int64_t deadline_at, const char *error, struct err *e)
{
	sqlite3_stmt *q;
	struct store_job j;
	struct store_app a;
	int64_t now = time_now_ns() / 1000000;
	int r;

	if ((r = job_get_locked(s, id, &j, e)) < 0)
		return r;
	if (j.state != from)
		return err_set(e, EAGAIN, "job %lld is %s, not %s", (long long)id,
			       job_state_name(j.state), job_state_name(from));
	if ((r = sqlite__app_get_locked(s, j.app, &a, e)) < 0)
		return r;
	if ((r = sqlite__prep(s,
		      "UPDATE jobs SET state = ?2, error = ?3, "
		      "  started_at = CASE WHEN ?2 = 'running' THEN ?4 ELSE started_at END, "
		      "  deadline_at = CASE WHEN ?2 = 'running' THEN ?5 ELSE deadline_at END, "
		      "  from_release = CASE WHEN ?2 = 'running' THEN ?6 ELSE from_release END, "
		      "  finished_at = CASE WHEN ?2 IN ('queued','running') THEN 0 ELSE ?4 END "
		      "WHERE id = ?1",
		      &q, e)) < 0)
		return r;
	sqlite3_bind_int64(q, 1, id);
	sqlite3_bind_text(q, 2, job_state_name(to), -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 3, error ? error : j.error, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(q, 4, now);
	sqlite3_bind_int64(q, 5, deadline_at);
	sqlite3_bind_text(q, 6, a.current, -1, SQLITE_STATIC);
	if ((r = sqlite__exec_done(s, q, "updating job", e)) < 0)
		return r;
	if (to == JOB_SUCCEEDED) {
		if ((r = set_app(s, j.app, "current", j.release, e)) < 0 ||
		    (r = set_app(s, j.app, "last_good", j.release, e)) < 0)
			return r;
		/* unjudged this time: a release a bake judged good before stays good */
		if ((r = sqlite__prep(s, "UPDATE releases SET state = CASE WHEN ?1 = 'unjudged' "
					 "AND state = 'good' THEN 'good' ELSE ?1 END WHERE id = ?2",
				      &q, e)) < 0)
			return r;
		sqlite3_bind_text(q, 1, j.unjudged[0] ? "unjudged" : "good", -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 2, j.release, -1, SQLITE_STATIC);
		if ((r = sqlite__exec_done(s, q, "marking release good", e)) < 0)
			return r;
	} else if (to == JOB_ROLLED_BACK) {
		if ((r = set_app(s, j.app, "current", j.from_release, e)) < 0)
			return r;
	}
	if ((r = job_get_locked(s, id, &j, e)) < 0)
		return r;
	return job_event(s, &j, e);
}

static int sq_transition(struct store *base, int64_t id, enum job_state from, enum job_state to,
			 int64_t deadline_at, const char *error, struct err *e)
{
	struct sqlite_store *s = (struct sqlite_store *)base;
	int r = sqlite__begin(s, e);
	if (r < 0)
		return r;
	return sqlite__finish(s, transition_locked(s, id, from, to, deadline_at, error, e), e);
}

static int sq_set_unjudged(struct store *base, int64_t id, const char *why, struct err *e)
{
	struct sqlite_store *s = (struct sqlite_store *)base;
	sqlite3_stmt *q;
	int r = sqlite__begin(s, e);
	if (r < 0)
		return r;
	if ((r = sqlite__prep(s, "UPDATE jobs SET unjudged = ? WHERE id = ?", &q, e)) == 0) {
		sqlite3_bind_text(q, 1, why, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(q, 2, id);
		r = sqlite__exec_done(s, q, "recording an unjudged bake", e);
	}
	return sqlite__finish(s, r, e);
}

static int sq_app_get(struct store *base, const char *app, struct store_app *out, struct err *e)
{
	return sqlite__app_get_locked((struct sqlite_store *)base, app, out, e);
}

static int record_stop_locked(struct sqlite_store *s, const char *app, const char *reason,
			      const char *by, bool ok, const char *error, struct store_job *out,
			      struct err *e)
{
	struct store_app a;
	sqlite3_stmt *q;
	int64_t now = time_now_ns() / 1000000;
	int r;
	if ((r = sqlite__app_ensure(s, app, e)) < 0 || (r = sqlite__app_get_locked(s, app, &a, e)) < 0)
		return r;
	if ((r = sqlite__prep(s,
			      "INSERT INTO jobs (app, kind, release, from_release, state, reason, "
			      "created_at, started_at, finished_at, error, created_by) "
			      "VALUES (?,'stop',?,?,?,?,?,?,?,?,?)",
			      &q, e)) < 0)
		return r;
	sqlite3_bind_text(q, 1, app, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, a.current, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(q, 3, a.current, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(q, 4, ok ? "succeeded" : "failed", -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 5, reason ? reason : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 6, now);
	sqlite3_bind_int64(q, 7, now);
	sqlite3_bind_int64(q, 8, now);
	sqlite3_bind_text(q, 9, error ? error : "", -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 10, by ? by : "", -1, SQLITE_STATIC);
	if ((r = sqlite__exec_done(s, q, "recording the stop", e)) < 0)
		return r;
	int64_t id = sqlite3_last_insert_rowid(s->db);
	if ((r = sqlite__prep(s, "SELECT " JOB_COLS " FROM jobs WHERE id = ?", &q, e)) < 0)
		return r;
	sqlite3_bind_int64(q, 1, id);
	if (sqlite3_step(q) == SQLITE_ROW)
		row_to_job(q, out);
	sqlite__release(q);
	return job_event(s, out, e);
}

static int sq_record_stop(struct store *base, const char *app, const char *reason, const char *by,
			  bool ok, const char *error, struct store_job *out, struct err *e)
{
	struct sqlite_store *s = (struct sqlite_store *)base;
	struct store_job j;
	int r = sqlite__begin(s, e);
	if (r < 0)
		return r;
	memset(&j, 0, sizeof(j));
	if ((r = sqlite__finish(s, record_stop_locked(s, app, reason, by, ok, error, &j, e), e)) >= 0 &&
	    out)
		*out = j;
	return r;
}

static int sq_app_set_upstreams(struct store *base, const char *app, const char *json,
				struct err *e)
{
	struct sqlite_store *s = (struct sqlite_store *)base;
	int r = sqlite__begin(s, e);
	if (r < 0)
		return r;
	return sqlite__finish(s, set_app(s, app, "upstreams", json, e), e);
}

static int sq_app_undeploy(struct store *base, const char *app, struct err *e)
{
	struct sqlite_store *s = (struct sqlite_store *)base;
	int r = sqlite__begin(s, e);
	if (r < 0)
		return r;
	r = set_app(s, app, "current", "", e);
	if (r == 0)
		r = set_app(s, app, "upstreams", "", e);
	return sqlite__finish(s, r, e);
}

const struct store_job_ops sqlite__job_ops = {
	.submit = sq_submit,
	.idem_lookup = sq_idem_lookup,
	.idem_purge = sq_idem_purge,
	.get = sq_get,
	.list = sq_list,
	.next_queued = sq_next_queued,
	.transition = sq_transition,
	.set_unjudged = sq_set_unjudged,
	.steps = sqlite__steps,
	.step_begin = sqlite__step_begin,
	.step_end = sqlite__step_end,
	.app_get = sq_app_get,
	.app_set_upstreams = sq_app_set_upstreams,
	.app_undeploy = sq_app_undeploy,
	.record_stop = sq_record_stop,
	.lease_acquire = sqlite__lease_acquire,
	.lease_renew = sqlite__lease_renew,
	.lease_release = sqlite__lease_release,
	.lease_get = sqlite__lease_get,
	.events_after = sqlite__events_after,
	.events_purge = sqlite__events_purge,
	.count_by_state = sqlite__count_by_state,
};

const struct store_job_ops *store_jobs(struct store *s)
{
	return s->jobs;
}
