/* store/sqlite-internal: what the SQLite backend's files share (the connection wrapper, the
 * schema of the jobs tables and the jobs vtable). Never included from outside src/store/. */
#ifndef CAIRN_STORE_SQLITE_INTERNAL_H
#define CAIRN_STORE_SQLITE_INTERNAL_H

#include "store/store.h"

#include <sqlite3.h>

struct json_t;

struct sqlite_store {
	struct store base;
	sqlite3 *db; /* owned; one connection per struct store: one thread at a time */
	struct {
		char *sql;      /* owned */
		sqlite3_stmt *q; /* owned */
	} *cache;           /* owned: prepared statements of sqlite-jobs/-steps, by SQL text */
	size_t n_cache, cap_cache;
};

/* Sets e from the connection's last error: "state database: WHAT: sqlite message". */
int sqlite__fail(struct sqlite_store *s, struct err *e, const char *what);

extern const struct store_job_ops sqlite__job_ops;

/* Helpers shared by sqlite-jobs.c and sqlite-steps.c (callers hold a transaction where the
 * comment of the store_job_ops entry says one is needed). */
/* A prepared statement from the connection's cache; give it back with sqlite__release. */
int sqlite__prep(struct sqlite_store *s, const char *sql, sqlite3_stmt **q, struct err *e);
void sqlite__release(sqlite3_stmt *q);
void sqlite__cache_free(struct sqlite_store *s);
int sqlite__begin(struct sqlite_store *s, struct err *e);
/* Commits when r >= 0, else rolls back; returns r or the commit's error. */
int sqlite__finish(struct sqlite_store *s, int r, struct err *e);
/* Steps a statement that returns no rows and finalizes it. */
int sqlite__exec_done(struct sqlite_store *s, sqlite3_stmt *q, const char *what, struct err *e);
void sqlite__copy_col(char *dst, size_t n, sqlite3_stmt *q, int col);
/* Appends an event (takes the reference to data). */
int sqlite__event_add(struct sqlite_store *s, const char *type, int64_t job_id, struct json_t *data,
		      struct err *e);
int sqlite__app_get_locked(struct sqlite_store *s, const char *app, struct store_app *out,
			   struct err *e);
int sqlite__app_ensure(struct sqlite_store *s, const char *app, struct err *e);

/* sqlite-steps.c: the store_job_ops entries of the same names. */
int sqlite__steps(struct store *s, int64_t job_id, int (*cb)(void *ctx, const struct store_step *st),
		  void *ctx, struct err *e);
int sqlite__step_begin(struct store *s, int64_t job_id, const char *host, const char *step,
		       int *out_attempt, struct err *e);
int sqlite__step_end(struct store *s, int64_t job_id, const char *host, const char *step, int attempt,
		     bool ok, const char *detail, struct err *e);
int sqlite__lease_acquire(struct store *s, const char *app, const char *owner, int64_t job_id,
			  int64_t now, int64_t ttl_ms, struct store_lease *out_holder, struct err *e);
int sqlite__lease_renew(struct store *s, const char *app, const char *owner, int64_t job_id,
			int64_t now, int64_t ttl_ms, struct err *e);
int sqlite__lease_release(struct store *s, const char *app, const char *owner, struct err *e);
int sqlite__lease_get(struct store *s, const char *app, struct store_lease *out, struct err *e);
int sqlite__events_after(struct store *s, int64_t after, int limit,
			 int (*cb)(void *ctx, const struct store_event *ev), void *ctx, struct err *e);
int sqlite__events_purge(struct store *s, int64_t before, struct err *e);
int sqlite__count_by_state(struct store *s, int64_t out_counts[JOB_STATE_COUNT], struct err *e);

#define SQLITE_JOBS_SCHEMA                                                                         \
	"CREATE TABLE jobs ("                                                                      \
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"                                                  \
	"  app TEXT NOT NULL, kind TEXT NOT NULL, release TEXT NOT NULL,"                          \
	"  from_release TEXT NOT NULL DEFAULT '', state TEXT NOT NULL,"                            \
	"  reason TEXT NOT NULL DEFAULT '', force INTEGER NOT NULL DEFAULT 0,"                     \
	"  created_at INTEGER NOT NULL, started_at INTEGER NOT NULL DEFAULT 0,"                    \
	"  finished_at INTEGER NOT NULL DEFAULT 0, deadline_at INTEGER NOT NULL DEFAULT 0,"        \
	"  error TEXT NOT NULL DEFAULT '');"                                                       \
	"CREATE INDEX jobs_app_state ON jobs(app, state, id);"                                     \
	"CREATE TABLE job_steps ("                                                                 \
	"  job_id INTEGER NOT NULL REFERENCES jobs(id), host TEXT NOT NULL, step TEXT NOT NULL,"   \
	"  attempt INTEGER NOT NULL, state TEXT NOT NULL, started_at INTEGER NOT NULL,"            \
	"  finished_at INTEGER NOT NULL DEFAULT 0, detail TEXT NOT NULL DEFAULT '{}',"             \
	"  PRIMARY KEY (job_id, host, step, attempt));"                                            \
	"CREATE TABLE idempotency_keys ("                                                          \
	"  app TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL,"                       \
	"  job_id INTEGER NOT NULL REFERENCES jobs(id), created_at INTEGER NOT NULL,"              \
	"  PRIMARY KEY (app, key));"                                                               \
	"CREATE INDEX idempotency_keys_created ON idempotency_keys(created_at);"                  \
	"CREATE TABLE leases ("                                                                    \
	"  app TEXT PRIMARY KEY, owner TEXT NOT NULL, job_id INTEGER NOT NULL DEFAULT 0,"          \
	"  expires_at INTEGER NOT NULL);"                                                          \
	"CREATE TABLE apps ("                                                                      \
	"  app TEXT PRIMARY KEY, current TEXT NOT NULL DEFAULT '',"                                \
	"  last_good TEXT NOT NULL DEFAULT '', upstreams TEXT NOT NULL DEFAULT '');"               \
	"CREATE TABLE events ("                                                                    \
	"  id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, type TEXT NOT NULL,"         \
	"  job_id INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL);"

/* Jobs get an `unjudged` note; a job of an older cairn that succeeded with a bake that had too
 * little traffic to judge gets its bake's reason as the note, and its release, still current
 * for that job, turns from good to unjudged. */
#define SQLITE_UNJUDGED_SCHEMA                                                                     \
	"ALTER TABLE jobs ADD COLUMN unjudged TEXT NOT NULL DEFAULT '';"                           \
	"UPDATE jobs SET unjudged = COALESCE((SELECT json_extract(s.detail, '$.reason')"           \
	"  FROM job_steps s WHERE s.job_id = jobs.id AND s.step = 'bake' AND s.state = 'done'"     \
	"  AND json_valid(s.detail)"                                                               \
	"  AND json_extract(s.detail, '$.verdict') = 'too_little_traffic' LIMIT 1), '')"            \
	" WHERE state = 'succeeded';"                                                              \
	"UPDATE releases SET state = 'unjudged' WHERE state = 'good' AND id IN ("                 \
	"  SELECT j.release FROM jobs j WHERE j.unjudged <> '' AND j.id = ("                       \
	"    SELECT MAX(k.id) FROM jobs k WHERE k.release = j.release AND k.state = 'succeeded'));"

#endif
