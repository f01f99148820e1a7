/* store: the state interface — release metadata now, deploy jobs later. SQLite is the one
 * backend today (sqlite.c); PostgreSQL will sit behind the same vtable. The store never
 * touches the object store's bytes and never includes the HTTP layer. */
#ifndef CAIRN_STORE_H
#define CAIRN_STORE_H

#include "base/base.h"

#define STORE_TAG_MAX NAME_TAG_MAX

/* good: a bake judged it and it passed; bad: a check or gate failed it; unjudged: it was
 * deployed but no bake could judge it (too little traffic, rollout.bake 0, TCP mode without
 * answers seen): "passed unjudged" when its deploy succeeded anyway (rollout.unjudged: pass). */
enum release_state { RELEASE_UNTESTED, RELEASE_GOOD, RELEASE_BAD, RELEASE_UNJUDGED };

struct store_release {
	char id[HASH_ID_LEN + 1];
	char app[128];
	/* release_put: a tag to give ("" none). Read: the first tag it was given ("" none);
	 * a release carries every tag it was given (store_release_tags lists them). */
	char tag[STORE_TAG_MAX + 1];
	int64_t created_at;          /* unix seconds */
	enum release_state state;
	int64_t n_files, bytes;
};

struct store;

struct store_ops {
	void (*close)(struct store *s);
	int (*release_put)(struct store *s, const struct store_release *r, struct err *e);
	int (*release_get)(struct store *s, const char *id, struct store_release *out, struct err *e);
	int (*release_list)(struct store *s, const char *app,
			    int (*cb)(void *ctx, const struct store_release *r), void *ctx,
			    struct err *e);
	int (*release_set_state)(struct store *s, const char *id, enum release_state st,
				 struct err *e);
	/* REF → id. A REF that could be an id (name_is_id_like) is the exact id or a unique
	 * prefix, with or without "sha256:", and never a tag; anything else is a tag. */
	int (*release_resolve)(struct store *s, const char *app, const char *ref,
			       char out_id[HASH_ID_LEN + 1], struct err *e);
	/* The release's tags, oldest first; cb's non-zero return stops and is returned. */
	int (*release_tags)(struct store *s, const char *id, int (*cb)(void *ctx, const char *tag),
			    void *ctx, struct err *e);
	/* 1 and the id when the app's tag names a release, 0 when the tag is free. */
	int (*tag_get)(struct store *s, const char *app, const char *tag,
		       char out_id[HASH_ID_LEN + 1], struct err *e);
};

struct store_job_ops;

struct store {
	const struct store_ops *ops;
	const struct store_job_ops *jobs;
};

/* Opens (creating) <state_dir>/state.db. */
int store_open_sqlite(const char *state_dir, struct store **out, struct err *e);

static inline void store_close(struct store *s)
{
	if (s)
		s->ops->close(s);
}
/* Inserts a release (an existing id is kept as it is) and gives it r->tag when non-empty: a
 * release keeps every tag it was given, and a tag that already names another release of the
 * app is refused (CAIRN_EINPUT: a tag names one release forever), as is one that is not a
 * valid tag (name_tag_check). */
static inline int store_release_put(struct store *s, const struct store_release *r, struct err *e)
{
	return s->ops->release_put(s, r, e);
}
static inline int store_release_get(struct store *s, const char *id, struct store_release *out,
				    struct err *e)
{
	return s->ops->release_get(s, id, out, e);
}
static inline int store_release_list(struct store *s, const char *app,
				     int (*cb)(void *ctx, const struct store_release *r), void *ctx,
				     struct err *e)
{
	return s->ops->release_list(s, app, cb, ctx, e);
}
static inline int store_release_set_state(struct store *s, const char *id, enum release_state st,
					  struct err *e)
{
	return s->ops->release_set_state(s, id, st, e);
}
static inline int store_release_resolve(struct store *s, const char *app, const char *ref,
					char out_id[HASH_ID_LEN + 1], struct err *e)
{
	return s->ops->release_resolve(s, app, ref, out_id, e);
}

static inline int store_release_tags(struct store *s, const char *id,
				     int (*cb)(void *ctx, const char *tag), void *ctx, struct err *e)
{
	return s->ops->release_tags(s, id, cb, ctx, e);
}
static inline int store_tag_get(struct store *s, const char *app, const char *tag,
				char out_id[HASH_ID_LEN + 1], struct err *e)
{
	return s->ops->tag_get(s, app, tag, out_id, e);
}
struct json_t;
/* A JSON array of the release's tags, oldest first (new reference), or NULL with e set. */
struct json_t *store_release_tags_json(struct store *s, const char *id, struct err *e);

const char *release_state_name(enum release_state st);

/* ---- deploy jobs ------------------------------------------------------------------------
 * Jobs, their steps, idempotency keys, per-app leases, app state (current / last good) and
 * the event log. Every change below is one transaction and durable when the call returns
 * (WAL, synchronous=FULL); every job or step change appends an event in that transaction.
 * Times are unix milliseconds. The state machine's rules live in controller/jobs.c; the
 * store only applies a transition atomically when the job is in the expected state. */

#define STORE_APP_MAX 128
#define STORE_REASON_MAX 512
#define STORE_IDEM_KEY_MAX 255
#define STORE_DETAIL_MAX 4096
#define STORE_OWNER_MAX 96

enum job_state {
	JOB_QUEUED,
	JOB_RUNNING,
	JOB_SUCCEEDED,
	JOB_FAILED,
	JOB_ROLLED_BACK,
	JOB_CANCELLED,
	JOB_STATE_COUNT,
};

struct store_job {
	int64_t id;
	char app[STORE_APP_MAX];
	char kind[16];                     /* "deploy" | "rollback" | "stop" (emergency) */
	char release[HASH_ID_LEN + 1];     /* target */
	char from_release[HASH_ID_LEN + 1]; /* current when the job started running ("" none) */
	enum job_state state;
	char reason[STORE_REASON_MAX];
	bool force;
	int64_t created_at, started_at, finished_at; /* 0 = not yet */
	int64_t deadline_at;                         /* 0 = none; set when it starts running */
	char error[STORE_DETAIL_MAX];                /* why it failed / rolled back, or "" */
	char created_by[STORE_OWNER_MAX];            /* who asked ("" not recorded) */
	char unjudged[STORE_REASON_MAX]; /* why its bake could not judge the release, or "" */
};

struct store_step {
	int64_t job_id;
	char host[STORE_APP_MAX];
	char step[32];
	int attempt;   /* 1 for the first run of (job, host, step) */
	char state[8]; /* "started" | "done" | "failed" */
	int64_t started_at, finished_at;
	char detail[STORE_DETAIL_MAX]; /* JSON object */
};

/* A deploy request to record, with its idempotency key (key may be NULL). */
struct store_job_submit {
	const char *app, *kind, *release, *reason;
	bool force;
	const char *idem_key;    /* NULL: none */
	const char *fingerprint; /* hex sha256 of the canonical body; with idem_key */
	int queue_max;           /* queued jobs allowed per app; beyond: STORE_SUBMIT_QUEUE_FULL */
	bool noop_if_current;    /* !force deploys: current & good release → the job that made it so */
};

enum store_submit_outcome {
	STORE_SUBMIT_CREATED,     /* a new job (out is it) */
	STORE_SUBMIT_REPLAY,      /* the key was seen with the same body: out is that job */
	STORE_SUBMIT_MISMATCH,    /* the key was seen with another body: out is that job */
	STORE_SUBMIT_NOOP,        /* the release is current and good: out is the job that did it */
	STORE_SUBMIT_QUEUE_FULL,  /* out untouched */
};

struct store_app {
	char app[STORE_APP_MAX];
	char current[HASH_ID_LEN + 1];   /* "" none */
	char last_good[HASH_ID_LEN + 1]; /* "" none */
	char upstreams[STORE_DETAIL_MAX]; /* JSON recorded by the switch step, "" none */
	int64_t running_job;             /* 0 none */
	bool stopped; /* an emergency stop is newer than anything that brought the app up */
};

struct store_lease {
	char app[STORE_APP_MAX];
	char owner[STORE_OWNER_MAX];
	int64_t job_id;
	int64_t expires_at;
};

struct store_event {
	int64_t id;
	int64_t at;
	char type[16]; /* "job" | "step" */
	int64_t job_id;
	char data[STORE_DETAIL_MAX]; /* JSON object */
};

struct store_job_ops {
	int (*submit)(struct store *s, const struct store_job_submit *req,
		      enum store_submit_outcome *out_outcome, struct store_job *out, struct err *e);
	/* The key's record if any: 1 found (job and fingerprint filled), 0 none. */
	int (*idem_lookup)(struct store *s, const char *app, const char *key,
			   char out_fp[HASH_HEX_LEN + 1], struct store_job *out, struct err *e);
	/* Deletes keys created before `before`; returns how many. */
	int (*idem_purge)(struct store *s, int64_t before, struct err *e);
	int (*get)(struct store *s, int64_t id, struct store_job *out, struct err *e);
	/* Newest first; app NULL = all apps; states_mask 0 = any (bit 1<<state). */
	int (*list)(struct store *s, const char *app, unsigned states_mask, int limit,
		    int (*cb)(void *ctx, const struct store_job *j), void *ctx, struct err *e);
	/* Oldest queued job of an app: 1 found, 0 none. */
	int (*next_queued)(struct store *s, const char *app, struct store_job *out, struct err *e);
	/* Moves the job from `from` to `to` if it is still in `from` (-EAGAIN otherwise). Into
	 * running: sets started_at, deadline_at and from_release (the app's current). Into
	 * succeeded: the app's current and last good become the release, the release is good
	 * (unjudged when the job's unjudged note is set: see set_unjudged).
	 * Into rolled_back: the app's current becomes from_release. error may be NULL. */
	int (*transition)(struct store *s, int64_t id, enum job_state from, enum job_state to,
			  int64_t deadline_at, const char *error, struct err *e);
	/* Records on a running job why its bake could not judge the release (kept on the job, shown
	 * by history): set before the transition into succeeded, which then marks the release
	 * unjudged instead of good. */
	int (*set_unjudged)(struct store *s, int64_t id, const char *why, struct err *e);
	int (*steps)(struct store *s, int64_t job_id,
		     int (*cb)(void *ctx, const struct store_step *st), void *ctx, struct err *e);
	/* Records a step as started (attempt = previous attempts + 1, returned in *out_attempt). */
	int (*step_begin)(struct store *s, int64_t job_id, const char *host, const char *step,
			  int *out_attempt, struct err *e);
	/* Records the end of a started step: ok → "done", else "failed"; detail is JSON or NULL. */
	int (*step_end)(struct store *s, int64_t job_id, const char *host, const char *step,
			int attempt, bool ok, const char *detail, struct err *e);
	int (*app_get)(struct store *s, const char *app, struct store_app *out, struct err *e);
	/* Records an emergency stop as a finished job of kind "stop" (release: the app's current,
	 * "" none; ok: every host answered, else failed with error). Until a deploy succeeds or
	 * rolls back after it, the app is stopped (store_app.stopped) and deploying its current
	 * release is real work, not a no-op. */
	int (*record_stop)(struct store *s, const char *app, const char *reason, const char *by,
			   bool ok, const char *error, struct store_job *out, struct err *e);
	int (*app_set_upstreams)(struct store *s, const char *app, const char *json, struct err *e);
	/* `cairn rm`: the app runs nowhere now — current and the upstream record are cleared;
	 * last_good, releases and jobs are kept. */
	int (*app_undeploy)(struct store *s, const char *app, struct err *e);
	/* Takes the app's lease for owner when it is free, expired or already owner's: 1 taken,
	 * 0 held by someone else (out_holder filled when non-NULL). */
	int (*lease_acquire)(struct store *s, const char *app, const char *owner, int64_t job_id,
			     int64_t now, int64_t ttl_ms, struct store_lease *out_holder,
			     struct err *e);
	/* Extends it if owner still holds it: 1 renewed, 0 lost. */
	int (*lease_renew)(struct store *s, const char *app, const char *owner, int64_t job_id,
			   int64_t now, int64_t ttl_ms, struct err *e);
	/* owner NULL: break whoever holds it. Returns 1 if a lease was removed. */
	int (*lease_release)(struct store *s, const char *app, const char *owner, struct err *e);
	int (*lease_get)(struct store *s, const char *app, struct store_lease *out, struct err *e);
	/* Events with id > after, oldest first, at most limit. */
	int (*events_after)(struct store *s, int64_t after, int limit,
			    int (*cb)(void *ctx, const struct store_event *ev), void *ctx,
			    struct err *e);
	/* Deletes events recorded before `before`; returns how many. */
	int (*events_purge)(struct store *s, int64_t before, struct err *e);
	/* Counts jobs per state (for /metrics). */
	int (*count_by_state)(struct store *s, int64_t out_counts[JOB_STATE_COUNT], struct err *e);
};

const struct store_job_ops *store_jobs(struct store *s);
const char *job_state_name(enum job_state st);
/* -EINVAL for an unknown name. */
int job_state_parse(const char *name, enum job_state *out);


/* The state directory: --state, else CAIRN_STATE, else $XDG_STATE_HOME/cairn, else
 * /var/lib/cairn for root, else ~/.local/state/cairn. Returns malloc'd path. */
char *store_state_dir(const char *flag);

#endif
