/* controller/runner: one thread per app with work — it holds the app's lease, moves jobs
 * through the state machine and runs their steps through the executor, recording each step
 * before and after it runs. After a crash it resumes a running job from its recorded steps:
 * a step recorded done is never run again; an interrupted one is reconciled with the host. */
#include "controller/controller-internal.h"

#include "config/config.h"
#include "release/release.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- test hooks: compiled only with -Dtest_hooks=true ------------------------------------------- */

void test_hook_after_step(const char *step, const char *host)
{
#ifdef CAIRN_TEST_HOOKS
	const char *v = getenv("CAIRN_TEST_CRASH_AFTER");
	size_t n = strlen(step);
	if (!v || strncmp(v, step, n) || (v[n] && v[n] != ':'))
		return;
	if (v[n] == ':' && strcmp(v + n + 1, host))
		return;
	fprintf(stderr, "cairn serve: test hook: crashing after %s on %s\n", step, host);
	_exit(137);
#else
	(void)step, (void)host;
#endif
}

void test_hook_delay(const char *env_name)
{
#ifdef CAIRN_TEST_HOOKS
	const char *v = getenv(env_name);
	long ms = v ? atol(v) : 0;
	if (ms > 0) {
		struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
		nanosleep(&ts, NULL);
	}
#else
	(void)env_name;
#endif
}

/* ---- the store refusing a write (disk full) -------------------------------------------------------
 * A write the state database refuses (ENOSPC, EIO) is tried again with a backoff, not at once:
 * the same message is logged once when it starts and once with its count when it ends. */

struct store_retry {
	int64_t first_ms, delay_ms;
	unsigned count;
	char msg[ERR_MSG_MAX];
};

static bool store_refused(const struct err *e)
{
	return e->code == ENOSPC || e->code == EIO;
}

/* After a refused write: true to try again (after a backoff wait), false to give up (past
 * bound_ms since the first refusal, or the runner must stop). */
static bool store_retry_again(struct runner *rn, struct store_retry *t, const char *what,
			      const struct err *e, int64_t bound_ms)
{
	int64_t now = time_mono_ns() / 1000000;
	if (!t->count++) {
		t->first_ms = now;
		t->delay_ms = CTL_STORE_RETRY_MIN_MS;
		snprintf(t->msg, sizeof(t->msg), "%s", e->msg);
		char upto[48] = "until it is written";
		if (bound_ms < INT64_MAX)
			snprintf(upto, sizeof(upto), "for up to %lld s", (long long)(bound_ms / 1000));
		log_warn("controller", "%s %s: %s; trying again with a backoff %s", rn->app, what,
			 e->msg, upto);
	}
	if (now - t->first_ms >= bound_ms || atomic_load(&rn->lease_lost) ||
	    atomic_load(&rn->shutdown))
		return false;
	if (runner__wait(rn, t->delay_ms) && !atomic_load(&rn->cancel))
		return false;
	t->delay_ms = t->delay_ms * 2 > CTL_STORE_RETRY_MAX_MS ? CTL_STORE_RETRY_MAX_MS
							     : t->delay_ms * 2;
	return true;
}

static void store_retry_done(struct runner *rn, const struct store_retry *t, const char *what,
			     bool ok)
{
	if (t->count > 1 || (t->count && ok))
		log_warn("controller", "%s %s: \"%s\" repeated %u time%s over %.1f s; %s", rn->app,
			 what, t->msg, t->count, t->count == 1 ? "" : "s",
			 (double)(time_mono_ns() / 1000000 - t->first_ms) / 1000.0,
			 ok ? "written now" : "gave up");
}

/* ---- the plan ----------------------------------------------------------------------------------- */

int plan_load(const char *state_dir, const char *release, struct config **out, struct err *e)
{
	struct objstore *os = NULL;
	struct manifest *m = NULL;
	struct buf b;
	int r;
	buf_init(&b, CONFIG_MAX_BYTES);
	if ((r = objstore_open(state_dir, &os, e)) < 0 || (r = release_load(os, release, &m, e)) < 0)
		goto out;
	const struct manifest_entry *ent = manifest_find(m, CONFIG_DEFAULT_NAME);
	if (!ent || ent->type != MANIFEST_FILE) {
		r = err_set(e, CAIRN_EINPUT, "release %.19s has no %s; build it from a directory with one",
			    release, CONFIG_DEFAULT_NAME);
		goto out;
	}
	if ((r = objstore_read(os, ent->digest, &b, e)) < 0)
		goto out;
	r = config_parse(CONFIG_DEFAULT_NAME, NULL, b.data ? b.data : "", b.len, out, e);
	if (r == 0)
		hosts_learn(*out); /* every path to a host loads its plan first */
out:
	buf_done(&b);
	manifest_free(m);
	objstore_free(os);
	return r;
}

static int copy_first(void *ctx, const struct store_job *j)
{
	*(struct store_job *)ctx = *j;
	return 1;
}

/* ---- one job ------------------------------------------------------------------------------------ */

#define STEP_ROLLBACK STEP_COUNT

struct rec {
	int attempt;
	char state[8]; /* "" none, "started", "done", "failed" */
};

struct jobrun {
	struct runner *rn;
	struct store *st;
	struct store_job job;
	struct config *cfg;
	struct rec *recs; /* [host * (STEP_COUNT + 1) + step] */
	char error[STORE_DETAIL_MAX];
	int failed_step; /* the step whose failure ended the job, -1 none */
	char unjudged[STORE_REASON_MAX]; /* "on HOST: why" of a bake that could not judge, or "" */
	atomic_bool *wave_stop; /* hosts of one wave (rollout.parallel): another host failed */
};

/* A bake step's detail with verdict "unjudged" notes why on the job (the first host's). */
static void note_unjudged(struct jobrun *jr, const char *host, const char *detail)
{
	json_t *d = detail && *detail ? json_loads(detail, 0, NULL) : NULL;
	const char *v = json_string_value(json_object_get(d, "verdict"));
	if (v && !strcmp(v, "unjudged") && !jr->unjudged[0])
		snprintf(jr->unjudged, sizeof(jr->unjudged), "on %s: %s", host,
			 json_string_value(json_object_get(d, "reason")) ?: "not judged");
	json_decref(d);
}

static int host_index(const struct jobrun *jr, const char *host)
{
	for (size_t i = 0; i < jr->cfg->n_hosts; i++)
		if (!strcmp(jr->cfg->hosts[i].name, host))
			return (int)i;
	return -1;
}

#define INTERRUPTED_AGAIN "controller stopped during the step; the host reports no effect, so it runs again"

static int load_rec(void *ctx, const struct store_step *st)
{
	struct jobrun *jr = ctx;
	int h = host_index(jr, st->host), s;
	enum deploy_step ds;
	if (h < 0)
		return 0;
	if (!strcmp(st->step, "rollback"))
		s = STEP_ROLLBACK;
	else if (deploy_step_parse(st->step, &ds) == 0)
		s = ds;
	else
		return 0;
	struct rec *r = &jr->recs[h * (STEP_COUNT + 1) + s];
	if (s == STEP_BAKE && !strcmp(st->state, "done"))
		note_unjudged(jr, st->host, st->detail);
	if (st->attempt >= r->attempt) {
		r->attempt = st->attempt;
		snprintf(r->state, sizeof(r->state), "%s", st->state);
		/* an attempt closed only because a crash interrupted it, with the host reporting no
		 * effect, is not a failure: a crash right after that record (before the next attempt
		 * began) must not turn it into one — the step runs again */
		if (!strcmp(st->state, "failed") && strstr(st->detail, INTERRUPTED_AGAIN))
			r->state[0] = '\0';
	}
	return 0;
}

static const char *step_label(int s)
{
	return s == STEP_ROLLBACK ? "rollback" : deploy_step_name((enum deploy_step)s);
}

static void note_step(struct runner *rn, const char *host, int s, int64_t dur_ns)
{
	pthread_mutex_lock(&rn->srv->rmu);
	if (host)
		snprintf(rn->step, sizeof(rn->step), "%s on %s", step_label(s), host);
	else
		rn->step[0] = '\0';
	if (dur_ns >= 0) {
		rn->srv->steps[s].sum_s += (double)dur_ns / 1e9;
		rn->srv->steps[s].count++;
	}
	pthread_mutex_unlock(&rn->srv->rmu);
}

/* The error a recorded failed attempt of (host, step) carries in its detail. */
struct failed_find {
	const char *host, *step;
	int attempt;
	char error[STORE_DETAIL_MAX];
};

static int find_failed(void *ctx, const struct store_step *st)
{
	struct failed_find *ff = ctx;
	if (strcmp(st->host, ff->host) || strcmp(st->step, ff->step) || st->attempt != ff->attempt)
		return 0;
	json_t *d = json_loads(st->detail, 0, NULL);
	const char *m = json_string_value(json_object_get(d, "error"));
	if (!m)
		m = json_string_value(json_object_get(d, "interrupted"));
	if (m)
		snprintf(ff->error, sizeof(ff->error), "%s", m);
	json_decref(d);
	return 0;
}

/* Runs (or, after a crash, reconciles) one step. 0 done, <0 failed (jr->error set),
 * 1 stop now without touching anything more (lease lost). */
static int run_step(struct jobrun *jr, const struct exec_job *xj, size_t h, int s)
{
	struct runner *rn = jr->rn;
	struct server *srv = rn->srv;
	struct executor *x = srv->exec;
	const char *host = jr->cfg->hosts[h].name;
	struct rec *rec = &jr->recs[h * (STEP_COUNT + 1) + s];
	const struct store_job_ops *J = store_jobs(jr->st);
	struct err e;
	struct buf d;
	int attempt, r;

	if (!strcmp(rec->state, "done"))
		return 0;
	if (!strcmp(rec->state, "failed")) {
		/* failed before a restart: its reason is in the recorded detail, never lost */
		struct failed_find ff = { host, step_label(s), rec->attempt, "" };
		J->steps(jr->st, jr->job.id, find_failed, &ff, &e);
		snprintf(jr->error, sizeof(jr->error), "%s on %s: %s", step_label(s), host,
			 ff.error[0] ? ff.error : "failed before the controller restarted");
		return -1;
	}
	if (atomic_load(&rn->lease_lost) || atomic_load(&rn->shutdown))
		return 1;
	if (!strcmp(rec->state, "started")) {
		/* a crash interrupted it: ask the host what happened before doing anything */
		int took = s == STEP_ROLLBACK ? 0 : x->ops->reconcile(x, xj, host, (enum deploy_step)s, &e);
		if (took == 1) {
			J->step_end(jr->st, jr->job.id, host, step_label(s), rec->attempt, true,
				    "{\"reconciled\":\"the host reports the step took effect\"}", &e);
			server_notify(srv);
			return 0;
		}
		bool again = took == 0 && (s == STEP_ROLLBACK || s == STEP_START || s == STEP_CLEANUP ||
					   deploy_step_rerunnable((enum deploy_step)s));
		J->step_end(jr->st, jr->job.id, host, step_label(s), rec->attempt, false,
			    again ? "{\"interrupted\":\"" INTERRUPTED_AGAIN "\"}"
				  : "{\"interrupted\":\"controller stopped during the step and the host "
				    "cannot tell whether it took effect\"}",
			    &e);
		server_notify(srv);
		if (again)
			test_hook_after_step("reconciled", host);
		if (!again) {
			snprintf(jr->error, sizeof(jr->error),
				 "%s on %s was interrupted and cannot be reconciled", step_label(s), host);
			return -1;
		}
	}
	if (s != STEP_ROLLBACK && jr->wave_stop && atomic_load(jr->wave_stop)) {
		snprintf(jr->error, sizeof(jr->error), "%s on %s not run: another host of the wave failed",
			 step_label(s), host);
		return -1;
	}
	if (s != STEP_ROLLBACK && (atomic_load(&rn->abort) || atomic_load(&rn->cancel))) {
		snprintf(jr->error, sizeof(jr->error), "%s before %s on %s",
			 atomic_load(&rn->cancel) ? "stopped" : "job deadline passed", step_label(s), host);
		return -1;
	}
	struct store_retry sr = { 0 };
	while ((r = J->step_begin(jr->st, jr->job.id, host, step_label(s), &attempt, &e)) < 0 &&
	       store_refused(&e) && store_retry_again(jr->rn, &sr, "recording a step", &e,
						      CTL_STORE_RETRY_MS))
		;
	store_retry_done(jr->rn, &sr, "recording a step", r >= 0);
	if (r < 0) {
		snprintf(jr->error, sizeof(jr->error), "recording %s on %s: %s", step_label(s), host,
			 e.msg);
		return -1;
	}
	server_notify(srv);
	note_step(rn, host, s, -1);
	test_hook_delay("CAIRN_TEST_STEP_DELAY_MS");
	buf_init(&d, STORE_DETAIL_MAX - 1);
	int64_t t0 = time_mono_ns();
	if (s == STEP_ROLLBACK)
		r = x->ops->rollback(x, xj, host, &d, &e);
	else
		r = x->ops->step(x, xj, host, (enum deploy_step)s, &d, &e);
	note_step(rn, NULL, s, time_mono_ns() - t0);
	if (s == STEP_BAKE)
		note_unjudged(jr, host, buf_str(&d));
	if (r < 0 && atomic_load(&rn->shutdown)) {
		/* cut short by the shutdown: left "started", the restart reconciles it */
		buf_done(&d);
		return 1;
	}
	if (r < 0) {
		/* what the step found (gate numbers) + the error + the new instances' last lines */
		json_t *dj = d.len ? json_loads(buf_str(&d), 0, NULL) : NULL;
		if (!json_is_object(dj)) {
			json_decref(dj);
			dj = json_object();
		}
		json_object_set_new(dj, "error", json_string(e.msg));
		if (x->ops->evidence && s >= STEP_START && s != STEP_ROLLBACK)
			x->ops->evidence(x, xj, host, dj);
		char *txt = json_dumps(dj, JSON_COMPACT);
		if (txt && strlen(txt) >= STORE_DETAIL_MAX) { /* too long: the logs go first */
			free(txt);
			json_object_del(dj, "logs");
			txt = json_dumps(dj, JSON_COMPACT);
		}
		json_decref(dj);
		snprintf(jr->error, sizeof(jr->error), "%s on %s: %s", step_label(s), host, e.msg);
		if (s != STEP_ROLLBACK && !(jr->wave_stop && atomic_load(jr->wave_stop)))
			jr->failed_step = s;
		J->step_end(jr->st, jr->job.id, host, step_label(s), attempt, false, txt, &e);
		free(txt);
		test_hook_after_step("failed", host); /* a crash between a failure and its rollback */
	} else {
		struct store_retry er = { 0 };
		int w;
		while ((w = J->step_end(jr->st, jr->job.id, host, step_label(s), attempt, true,
					d.len ? buf_str(&d) : NULL, &e)) < 0 &&
		       store_refused(&e) && store_retry_again(jr->rn, &er, "recording a step's end",
							      &e, CTL_STORE_RETRY_MS))
			;
		store_retry_done(jr->rn, &er, "recording a step's end", w >= 0);
		if (w < 0) {
			snprintf(jr->error, sizeof(jr->error), "recording %s on %s: %s", step_label(s),
				 host, e.msg);
			r = -1;
		}
	}
	buf_done(&d);
	server_notify(srv);
	if (r >= 0) {
		snprintf(rec->state, sizeof(rec->state), "done");
		test_hook_after_step(step_label(s), host);
	}
	return r < 0 ? -1 : 0;
}

/* ---- a wave of hosts in parallel ---------------------------------------------------------------- */

struct hostrun {
	pthread_t th;
	struct jobrun jr; /* a copy: its own store connection, error and failed step */
	struct exec_job xj;
	size_t h;
	int r;
	atomic_bool done;
	atomic_int *first_fail; /* index of the first host that failed, -1 none */
};

static bool host_touched(const struct jobrun *jr, size_t h)
{
	for (int s = 0; s < STEP_COUNT; s++)
		if (jr->recs[h * (STEP_COUNT + 1) + s].state[0])
			return true;
	return false;
}

static void *host_main(void *arg)
{
	struct hostrun *hr = arg;
	struct err e;
	if (server_open_store(hr->jr.rn->srv, &hr->jr.st, &e) < 0) {
		snprintf(hr->jr.error, sizeof(hr->jr.error), "opening the store: %s", e.msg);
		hr->r = -1;
	}
	hr->xj.st = hr->jr.st;
	for (int s = 0; hr->r == 0 && s < STEP_COUNT; s++)
		hr->r = run_step(&hr->jr, &hr->xj, hr->h, s);
	if (hr->r < 0) {
		int none = -1;
		atomic_compare_exchange_strong(hr->first_fail, &none, (int)hr->h);
		atomic_store(hr->jr.wave_stop, true);
		/* this host goes back at once, not after the others' steps end; after an emergency
		 * stop nothing goes back: the stop killed everything and must stay the last word */
		if (hr->jr.st && host_touched(&hr->jr, hr->h) && !atomic_load(&hr->jr.rn->cancel))
			run_step(&hr->jr, &hr->xj, hr->h, STEP_ROLLBACK);
	}
	store_close(hr->jr.st);
	atomic_store(&hr->done, true);
	return NULL;
}

/* Runs hosts [from, to) at once. The first failure stops the others at their next step (or
 * bake poll) and is the job's error. */
static int run_wave(struct jobrun *jr, const struct exec_job *xj, size_t from, size_t to)
{
	struct runner *rn = jr->rn;
	size_t n = to - from, started = 0;
	struct hostrun *hrs = calloc(n, sizeof(*hrs));
	atomic_bool stop = false;
	atomic_int first_fail = -1;
	int r = 0;
	if (!hrs) {
		snprintf(jr->error, sizeof(jr->error), "out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		hrs[i].jr = *jr;
		hrs[i].jr.st = NULL;
		hrs[i].jr.wave_stop = &stop;
		hrs[i].xj = *xj;
		hrs[i].xj.abort = &stop;
		hrs[i].h = from + i;
		hrs[i].first_fail = &first_fail;
		if (pthread_create(&hrs[i].th, NULL, host_main, &hrs[i]) != 0) {
			atomic_store(&stop, true);
			snprintf(jr->error, sizeof(jr->error), "cannot start a thread for host %s",
				 jr->cfg->hosts[from + i].name);
			r = -1;
			break;
		}
		started++;
	}
	for (;;) { /* the keeper's abort and a stop reach the hosts' long steps through `stop` */
		size_t done = 0;
		for (size_t i = 0; i < started; i++)
			done += atomic_load(&hrs[i].done);
		if (done == started)
			break;
		if (atomic_load(&rn->abort) || atomic_load(&rn->cancel) || atomic_load(&rn->shutdown) ||
		    atomic_load(&rn->lease_lost))
			atomic_store(&stop, true);
		struct timespec ts = {0, 20 * 1000000L};
		nanosleep(&ts, NULL);
	}
	for (size_t i = 0; i < started; i++) {
		pthread_join(hrs[i].th, NULL);
		if (hrs[i].r > 0 && r == 0)
			r = 1;
	}
	for (size_t i = 0; i < started && !jr->unjudged[0]; i++)
		snprintf(jr->unjudged, sizeof(jr->unjudged), "%s", hrs[i].jr.unjudged);
	int f = atomic_load(&first_fail);
	if (f >= 0) {
		struct hostrun *hr = &hrs[f - (int)from];
		snprintf(jr->error, sizeof(jr->error), "%s", hr->jr.error);
		jr->failed_step = hr->jr.failed_step;
		r = -1;
	}
	free(hrs);
	return r;
}

static void finish_job(struct jobrun *jr, enum job_state to, const char *error)
{
	struct err e;
	struct store_retry sr = { 0 };
	int r;
	if (!job_transition_allowed(JOB_RUNNING, to))
		return;
	/* the outcome is decided: only its record waits for the disk (until we must stop) */
	while ((r = store_jobs(jr->st)->transition(jr->st, jr->job.id, JOB_RUNNING, to, 0, error,
						   &e)) < 0 &&
	       store_refused(&e) &&
	       store_retry_again(jr->rn, &sr, "recording the job's end", &e, INT64_MAX))
		;
	store_retry_done(jr->rn, &sr, "recording the job's end", r >= 0);
	if (r < 0)
		log_warn("controller", "job %lld: %s", (long long)jr->job.id, e.msg);
	else
		log_info("controller", "job %lld (%s): %s%s%s", (long long)jr->job.id, jr->job.app,
			 job_state_name(to), error ? ": " : "", error ? error : "");
	server_notify(jr->rn->srv);
}

static void kill_everywhere(struct jobrun *jr)
{
	struct executor *x = jr->rn->srv->exec;
	for (size_t h = 0; h < jr->cfg->n_hosts; h++) {
		struct buf d;
		struct err e;
		buf_init(&d, STORE_DETAIL_MAX);
		if (x->ops->stop(x, jr->job.app, jr->cfg->hosts[h].name, &d, &e) < 0)
			log_warn("controller", "job %lld: stopping %s on %s: %s", (long long)jr->job.id,
				 jr->job.app, jr->cfg->hosts[h].name, e.msg);
		buf_done(&d);
	}
}

static void run_job(struct runner *rn, struct store *st, struct store_job *job)
{
	struct jobrun jr;
	struct err e;
	memset(&jr, 0, sizeof(jr));
	jr.rn = rn;
	jr.st = st;
	jr.job = *job;
	jr.failed_step = -1;
	if (plan_load(rn->srv->o.state_dir, job->release, &jr.cfg, &e) < 0) {
		finish_job(&jr, JOB_FAILED, e.msg);
		return;
	}
	jr.recs = calloc(jr.cfg->n_hosts * (STEP_COUNT + 1), sizeof(*jr.recs));
	if (!jr.recs || store_jobs(st)->steps(st, job->id, load_rec, &jr, &e) < 0) {
		finish_job(&jr, JOB_FAILED, jr.recs ? e.msg : "out of memory");
		goto out;
	}
	struct exec_job xj = { job->id, job->app, job->release, job->from_release, jr.cfg,
			       rn->srv->o.state_dir, st, &rn->abort };
	int r = 0;
	/* rollout.parallel hosts at a time; a wave of one runs in this thread */
	size_t par = jr.cfg->rollout.parallel > 1 ? (size_t)jr.cfg->rollout.parallel : 1;
	for (size_t w = 0; r == 0 && w < jr.cfg->n_hosts; w += par) {
		size_t end = w + par < jr.cfg->n_hosts ? w + par : jr.cfg->n_hosts;
		if (end - w > 1) {
			r = run_wave(&jr, &xj, w, end);
			continue;
		}
		for (int s = 0; r == 0 && s < STEP_COUNT; s++)
			r = run_step(&jr, &xj, w, s);
	}
	if (r > 0)
		goto out; /* lease lost: the new holder decides */
	/* a bake that could not judge is kept on the job before it ends: the transition then marks
	 * the release unjudged, not good (one transaction, so a crash cannot leave it "good") */
	if (jr.unjudged[0] && store_jobs(st)->set_unjudged(st, job->id, jr.unjudged, &e) < 0)
		log_warn("controller", "job %lld: %s", (long long)job->id, e.msg);
	if (r == 0 && !atomic_load(&rn->cancel)) {
		finish_job(&jr, JOB_SUCCEEDED, NULL);
		goto out;
	}
	if (r == 0)
		snprintf(jr.error, sizeof(jr.error), "stopped during its last step");
	/* failed: undo every host that was touched, newest first */
	char why[STORE_DETAIL_MAX];
	snprintf(why, sizeof(why), "%s", jr.error);
	bool undone = true;
	if (atomic_load(&rn->cancel)) {
		/* an emergency stop: no rollback (it would start the previous release again), and
		 * whatever the step in flight started is killed now that it has returned */
		kill_everywhere(&jr);
		finish_job(&jr, JOB_CANCELLED, why);
		goto out;
	}
	for (size_t k = jr.cfg->n_hosts; k-- > 0;) {
		bool touched = false;
		for (int s = 0; s < STEP_COUNT; s++)
			touched |= jr.recs[k * (STEP_COUNT + 1) + s].state[0] != '\0';
		if (touched && run_step(&jr, &xj, k, STEP_ROLLBACK) != 0)
			undone = false;
	}
	if (atomic_load(&rn->lease_lost) || atomic_load(&rn->shutdown))
		goto out;
	/* the release itself failed a check (not the host, not a stop): it is bad — unless its
	 * bake only could not judge it (rollout.unjudged: fail): then it is unjudged, not bad */
	bool unjudged = jr.failed_step == STEP_BAKE && jr.unjudged[0];
	if (!atomic_load(&rn->cancel) && !atomic_load(&rn->abort) &&
	    (jr.failed_step == STEP_START || jr.failed_step == STEP_HEALTH ||
	     jr.failed_step == STEP_ACCEPT || jr.failed_step == STEP_BAKE) &&
	    store_release_set_state(st, job->release, unjudged ? RELEASE_UNJUDGED : RELEASE_BAD,
				    &e) < 0)
		log_warn("controller", "job %lld: marking %.19s bad: %s", (long long)job->id,
			 job->release, e.msg);
	if (atomic_load(&rn->cancel))
		finish_job(&jr, JOB_CANCELLED, why);
	else if (undone && job->from_release[0] && jr.cfg->rollout.auto_rollback)
		finish_job(&jr, JOB_ROLLED_BACK, why);
	else
		finish_job(&jr, JOB_FAILED, why);
out:
	free(jr.recs);
	config_free(jr.cfg);
}

/* The runner thread: takes the lease, then runs the app's running job (recovery) and its
 * queued jobs in order, and ends when none is left. */
void *runner__main(void *arg)
{
	struct runner *rn = arg;
	struct server *srv = rn->srv;
	const struct store_job_ops *J;
	struct store *st = NULL;
	struct store_job job;
	struct err e;
	bool have_lease = false;

	if (server_open_store(srv, &st, &e) < 0) {
		log_error("controller", "runner for %s: %s", rn->app, e.msg);
		goto out;
	}
	J = store_jobs(st);
	while (!atomic_load(&rn->lease_lost)) {
		int found = 0;
		struct store_job first;
		/* a running job first (a crash or a broken lease left it), then the oldest queued */
		if (J->list(st, rn->app, 1u << JOB_RUNNING, 1, copy_first, &first, &e) > 0) {
			job = first;
			found = 1;
		} else if ((found = J->next_queued(st, rn->app, &job, &e)) < 0) {
			log_error("controller", "runner for %s: %s", rn->app, e.msg);
			break;
		}
		if (found == 0)
			break;
		atomic_store(&rn->job_id, job.id);
		struct store_retry lr = { 0 };
		while (!have_lease) {
			struct store_lease holder;
			int64_t now = time_now_ns() / 1000000;
			int r = J->lease_acquire(st, rn->app, srv->owner, job.id, now, CTL_LEASE_TTL_MS,
						 &holder, &e);
			if (r < 0 && store_refused(&e) &&
			    store_retry_again(rn, &lr, "taking the lease", &e, INT64_MAX))
				continue;
			store_retry_done(rn, &lr, "taking the lease", r >= 0);
			if (r < 0) {
				log_error("controller", "lease of %s: %s", rn->app, e.msg);
				goto out;
			}
			if (r == 1) {
				have_lease = true;
				atomic_store(&rn->has_lease, true);
				break;
			}
			/* someone else holds it: wait for it to be released or to expire */
			if (runner__wait(rn, holder.expires_at - now + 50))
				goto out;
		}
		if (job.state == JOB_QUEUED) {
			int64_t deadline = time_now_ns() / 1000000 + CTL_JOB_DEADLINE_MS;
			if (J->transition(st, job.id, JOB_QUEUED, JOB_RUNNING, deadline, NULL, &e) < 0) {
				log_warn("controller", "job %lld: %s", (long long)job.id, e.msg);
				continue;
			}
			job.state = JOB_RUNNING;
			job.deadline_at = deadline;
			if (J->get(st, job.id, &job, &e) < 0)
				break;
			server_notify(srv);
		}
		atomic_store(&rn->deadline_at, job.deadline_at);
		atomic_store(&rn->abort, job.deadline_at && time_now_ns() / 1000000 > job.deadline_at);
		run_job(rn, st, &job);
		atomic_store(&rn->deadline_at, 0);
		if (runner__stopping(rn))
			break;
	}
out:
	if (have_lease && st && !atomic_load(&rn->lease_lost))
		J->lease_release(st, rn->app, srv->owner, &e);
	store_close(st);
	atomic_store(&rn->done, true);
	server_notify(srv);
	return NULL;
}
