/* store/sqlite-steps: job steps, per-app leases, the event log and job counts in SQLite.
 * A step is recorded "started" before it runs and "done"/"failed" after, each in its own
 * transaction with its event; a lease is a row (app, owner, expiry) changed only by CAS. */
#include "store/sqlite-internal.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define S(base) ((struct sqlite_store *)(base))

static void row_to_step(sqlite3_stmt *q, struct store_step *st)
{
	memset(st, 0, sizeof(*st));
	st->job_id = sqlite3_column_int64(q, 0);
	sqlite__copy_col(st->host, sizeof(st->host), q, 1);
	sqlite__copy_col(st->step, sizeof(st->step), q, 2);
	st->attempt = sqlite3_column_int(q, 3);
	sqlite__copy_col(st->state, sizeof(st->state), q, 4);
	st->started_at = sqlite3_column_int64(q, 5);
	st->finished_at = sqlite3_column_int64(q, 6);
	sqlite__copy_col(st->detail, sizeof(st->detail), q, 7);
}

int sqlite__steps(struct store *base, int64_t job_id,
		  int (*cb)(void *ctx, const struct store_step *st), void *ctx, struct err *e)
{
	sqlite3_stmt *q;
	int rc, r;
	if ((r = sqlite__prep(S(base),
			      "SELECT job_id, host, step, attempt, state, started_at, finished_at, detail "
			      "FROM job_steps WHERE job_id = ? ORDER BY started_at, rowid",
			      &q, e)) < 0)
		return r;
	sqlite3_bind_int64(q, 1, job_id);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		struct store_step st;
		row_to_step(q, &st);
		if ((r = cb(ctx, &st)) != 0)
			break;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		r = sqlite__fail(S(base), e, "listing steps");
	sqlite__release(q);
	return r;
}

static int step_event(struct sqlite_store *s, int64_t job_id, const char *host, const char *step,
		      int attempt, const char *state, const char *detail, struct err *e)
{
	json_t *d = json_pack("{s:I,s:s,s:s,s:i,s:s}", "job", (json_int_t)job_id, "host", host, "step",
			      step, "attempt", attempt, "state", state);
	if (!d)
		return err_set(e, ENOMEM, "out of memory");
	if (detail) {
		json_t *dj = json_loads(detail, 0, NULL);
		if (dj)
			json_object_set_new(d, "detail", dj);
	}
	return sqlite__event_add(s, "step", job_id, d, e);
}

static int step_begin_locked(struct sqlite_store *s, int64_t job_id, const char *host,
			     const char *step, int *out_attempt, struct err *e)
{
	sqlite3_stmt *q;
	int r, attempt = 1;
	if ((r = sqlite__prep(s,
			      "SELECT coalesce(max(attempt), 0) + 1 FROM job_steps "
			      "WHERE job_id = ? AND host = ? AND step = ?",
			      &q, e)) < 0)
		return r;
	sqlite3_bind_int64(q, 1, job_id);
	sqlite3_bind_text(q, 2, host, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 3, step, -1, SQLITE_STATIC);
	if (sqlite3_step(q) == SQLITE_ROW)
		attempt = sqlite3_column_int(q, 0);
	sqlite__release(q);
	if ((r = sqlite__prep(s,
			      "INSERT INTO job_steps (job_id, host, step, attempt, state, started_at) "
			      "VALUES (?,?,?,?,'started',?)",
			      &q, e)) < 0)
		return r;
	sqlite3_bind_int64(q, 1, job_id);
	sqlite3_bind_text(q, 2, host, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 3, step, -1, SQLITE_STATIC);
	sqlite3_bind_int(q, 4, attempt);
	sqlite3_bind_int64(q, 5, time_now_ns() / 1000000);
	if ((r = sqlite__exec_done(s, q, "recording step", e)) < 0)
		return r;
	*out_attempt = attempt;
	return step_event(s, job_id, host, step, attempt, "started", NULL, e);
}

int sqlite__step_begin(struct store *base, int64_t job_id, const char *host, const char *step,
		       int *out_attempt, struct err *e)
{
	int r = sqlite__begin(S(base), e);
	if (r < 0)
		return r;
	return sqlite__finish(S(base), step_begin_locked(S(base), job_id, host, step, out_attempt, e), e);
}

static int step_end_locked(struct sqlite_store *s, int64_t job_id, const char *host,
			   const char *step, int attempt, bool ok, const char *detail, struct err *e)
{
	sqlite3_stmt *q;
	const char *state = ok ? "done" : "failed";
	int r;
	if ((r = sqlite__prep(s,
			      "UPDATE job_steps SET state = ?, finished_at = ?, detail = ? "
			      "WHERE job_id = ? AND host = ? AND step = ? AND attempt = ? AND state = 'started'",
			      &q, e)) < 0)
		return r;
	sqlite3_bind_text(q, 1, state, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 2, time_now_ns() / 1000000);
	sqlite3_bind_text(q, 3, detail ? detail : "{}", -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 4, job_id);
	sqlite3_bind_text(q, 5, host, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 6, step, -1, SQLITE_STATIC);
	sqlite3_bind_int(q, 7, attempt);
	if ((r = sqlite__exec_done(s, q, "recording step", e)) < 0)
		return r;
	if (sqlite3_changes(s->db) != 1)
		return err_set(e, EAGAIN, "step %s on %s of job %lld (attempt %d) is not running",
			       step, host, (long long)job_id, attempt);
	return step_event(s, job_id, host, step, attempt, state, detail, e);
}

int sqlite__step_end(struct store *base, int64_t job_id, const char *host, const char *step,
		     int attempt, bool ok, const char *detail, struct err *e)
{
	int r = sqlite__begin(S(base), e);
	if (r < 0)
		return r;
	return sqlite__finish(S(base),
			      step_end_locked(S(base), job_id, host, step, attempt, ok, detail, e), e);
}

int sqlite__lease_get(struct store *base, const char *app, struct store_lease *out, struct err *e)
{
	sqlite3_stmt *q;
	int r, found = 0;
	if ((r = sqlite__prep(S(base), "SELECT app, owner, job_id, expires_at FROM leases WHERE app = ?",
			      &q, e)) < 0)
		return r;
	sqlite3_bind_text(q, 1, app, -1, SQLITE_STATIC);
	if (sqlite3_step(q) == SQLITE_ROW) {
		memset(out, 0, sizeof(*out));
		sqlite__copy_col(out->app, sizeof(out->app), q, 0);
		sqlite__copy_col(out->owner, sizeof(out->owner), q, 1);
		out->job_id = sqlite3_column_int64(q, 2);
		out->expires_at = sqlite3_column_int64(q, 3);
		found = 1;
	}
	sqlite__release(q);
	return found;
}

int sqlite__lease_acquire(struct store *base, const char *app, const char *owner, int64_t job_id,
			  int64_t now, int64_t ttl_ms, struct store_lease *out_holder, struct err *e)
{
	struct sqlite_store *s = S(base);
	sqlite3_stmt *q;
	int r;
	if ((r = sqlite__begin(s, e)) < 0)
		return r;
	/* insert, or take over only a lease that expired or is already ours */
	if ((r = sqlite__prep(s,
			      "INSERT INTO leases (app, owner, job_id, expires_at) VALUES (?1,?2,?3,?4) "
			      "ON CONFLICT(app) DO UPDATE SET owner = ?2, job_id = ?3, expires_at = ?4 "
			      "WHERE leases.expires_at <= ?5 OR leases.owner = ?2",
			      &q, e)) < 0)
		return sqlite__finish(s, r, e);
	sqlite3_bind_text(q, 1, app, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, owner, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 3, job_id);
	sqlite3_bind_int64(q, 4, now + ttl_ms);
	sqlite3_bind_int64(q, 5, now);
	if ((r = sqlite__exec_done(s, q, "taking lease", e)) < 0)
		return sqlite__finish(s, r, e);
	int taken = sqlite3_changes(s->db) == 1;
	if (!taken && out_holder && (r = sqlite__lease_get(base, app, out_holder, e)) < 0)
		return sqlite__finish(s, r, e);
	r = sqlite__finish(s, 0, e);
	return r < 0 ? r : taken;
}

int sqlite__lease_renew(struct store *base, const char *app, const char *owner, int64_t job_id,
			int64_t now, int64_t ttl_ms, struct err *e)
{
	struct sqlite_store *s = S(base);
	sqlite3_stmt *q;
	int r;
	if ((r = sqlite__prep(s,
			      "UPDATE leases SET expires_at = ?, job_id = ? "
			      "WHERE app = ? AND owner = ? AND expires_at > ?",
			      &q, e)) < 0)
		return r;
	sqlite3_bind_int64(q, 1, now + ttl_ms);
	sqlite3_bind_int64(q, 2, job_id);
	sqlite3_bind_text(q, 3, app, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 4, owner, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 5, now);
	if ((r = sqlite__exec_done(s, q, "renewing lease", e)) < 0)
		return r;
	return sqlite3_changes(s->db) == 1;
}

int sqlite__lease_release(struct store *base, const char *app, const char *owner, struct err *e)
{
	struct sqlite_store *s = S(base);
	sqlite3_stmt *q;
	int r;
	if ((r = sqlite__prep(s, "DELETE FROM leases WHERE app = ?1 AND (?2 IS NULL OR owner = ?2)", &q,
			      e)) < 0)
		return r;
	sqlite3_bind_text(q, 1, app, -1, SQLITE_STATIC);
	if (owner)
		sqlite3_bind_text(q, 2, owner, -1, SQLITE_STATIC);
	if ((r = sqlite__exec_done(s, q, "releasing lease", e)) < 0)
		return r;
	return sqlite3_changes(s->db) == 1;
}

int sqlite__events_after(struct store *base, int64_t after, int limit,
			 int (*cb)(void *ctx, const struct store_event *ev), void *ctx, struct err *e)
{
	sqlite3_stmt *q;
	int rc, r;
	if ((r = sqlite__prep(S(base),
			      "SELECT id, at, type, job_id, data FROM events WHERE id > ? ORDER BY id LIMIT ?",
			      &q, e)) < 0)
		return r;
	sqlite3_bind_int64(q, 1, after);
	sqlite3_bind_int(q, 2, limit);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		struct store_event ev;
		memset(&ev, 0, sizeof(ev));
		ev.id = sqlite3_column_int64(q, 0);
		ev.at = sqlite3_column_int64(q, 1);
		sqlite__copy_col(ev.type, sizeof(ev.type), q, 2);
		ev.job_id = sqlite3_column_int64(q, 3);
		sqlite__copy_col(ev.data, sizeof(ev.data), q, 4);
		if ((r = cb(ctx, &ev)) != 0)
			break;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		r = sqlite__fail(S(base), e, "reading events");
	sqlite__release(q);
	return r;
}

int sqlite__events_purge(struct store *base, int64_t before, struct err *e)
{
	sqlite3_stmt *q;
	int r;
	if ((r = sqlite__prep(S(base), "DELETE FROM events WHERE at < ?", &q, e)) < 0)
		return r;
	sqlite3_bind_int64(q, 1, before);
	if ((r = sqlite__exec_done(S(base), q, "purging events", e)) < 0)
		return r;
	return sqlite3_changes(S(base)->db);
}

int sqlite__count_by_state(struct store *base, int64_t out_counts[JOB_STATE_COUNT], struct err *e)
{
	sqlite3_stmt *q;
	int r;
	if ((r = sqlite__prep(S(base), "SELECT state, count(*) FROM jobs GROUP BY state", &q, e)) < 0)
		return r;
	for (int i = 0; i < JOB_STATE_COUNT; i++)
		out_counts[i] = 0;
	while (sqlite3_step(q) == SQLITE_ROW) {
		enum job_state st;
		if (job_state_parse((const char *)sqlite3_column_text(q, 0), &st) == 0)
			out_counts[st] = sqlite3_column_int64(q, 1);
	}
	sqlite__release(q);
	return 0;
}
