/* controller/runners: the set of runner threads (one per app with work) and the keeper thread
 * that renews their leases, enforces job deadlines independently of a wedged step, and purges
 * old idempotency keys. The loop thread starts and joins runners; nothing here blocks it. */
#include "controller/controller-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>



static bool stopping(struct server *srv)
{
	pthread_mutex_lock(&srv->mu);
	bool s = srv->stopping;
	pthread_mutex_unlock(&srv->mu);
	return s;
}

bool runner__stopping(struct runner *rn)
{
	return stopping(rn->srv) || atomic_load(&rn->abort);
}

/* Sleeps up to ms or until woken (stop, unlock); returns true when the runner must end. */
bool runner__wait(struct runner *rn, int64_t ms)
{
	struct server *srv = rn->srv;
	struct timespec ts;
	if (ms < 50)
		ms = 50;
	if (ms > CTL_LEASE_RENEW_MS)
		ms = CTL_LEASE_RENEW_MS;
	time_deadline_ms(ms, &ts);
	pthread_mutex_lock(&srv->rmu);
	pthread_cond_timedwait(&srv->rcv, &srv->rmu, &ts);
	pthread_mutex_unlock(&srv->rmu);
	return stopping(srv) || atomic_load(&rn->cancel);
}

static struct runner *find_runner(struct server *srv, const char *app)
{
	for (struct runner *rn = srv->runners; rn; rn = rn->next)
		if (!strcmp(rn->app, app) && !atomic_load(&rn->done))
			return rn;
	return NULL;
}

static void start_runner(struct server *srv, const char *app)
{
	struct runner *rn;
	pthread_mutex_lock(&srv->rmu);
	if (find_runner(srv, app) || !(rn = calloc(1, sizeof(*rn)))) {
		pthread_mutex_unlock(&srv->rmu);
		return;
	}
	rn->srv = srv;
	snprintf(rn->app, sizeof(rn->app), "%s", app);
	if (pthread_create(&rn->th, NULL, runner__main, rn) != 0) {
		log_error("controller", "cannot start a runner for %s", app);
		free(rn);
		pthread_mutex_unlock(&srv->rmu);
		return;
	}
	rn->next = srv->runners;
	srv->runners = rn;
	pthread_mutex_unlock(&srv->rmu);
}

static int want_runner(void *ctx, const struct store_job *j)
{
	void **c = ctx;
	start_runner(c[0], j->app);
	return 0;
}

void runners_schedule(struct server *srv, const char *app)
{
	struct err e;
	void *c[1] = { srv };
	if (stopping(srv))
		return;
	if (app) {
		struct store_job j;
		struct store_app a;
		if (store_jobs(srv->rd)->app_get(srv->rd, app, &a, &e) == 0 &&
		    (a.running_job || store_jobs(srv->rd)->next_queued(srv->rd, app, &j, &e) == 1))
			start_runner(srv, app);
		return;
	}
	if (store_jobs(srv->rd)->list(srv->rd, NULL, (1u << JOB_RUNNING) | (1u << JOB_QUEUED), 0,
				      want_runner, c, &e) < 0)
		log_error("controller", "scheduling jobs: %s", e.msg);
}

void runners_reap(struct server *srv)
{
	struct strv again;
	strv_init(&again);
	pthread_mutex_lock(&srv->rmu);
	for (struct runner **pp = &srv->runners; *pp;) {
		struct runner *rn = *pp;
		if (!atomic_load(&rn->done)) {
			pp = &rn->next;
			continue;
		}
		*pp = rn->next;
		pthread_join(rn->th, NULL);
		strv_push(&again, rn->app);
		free(rn);
	}
	pthread_mutex_unlock(&srv->rmu);
	/* a job may have been queued between the runner's last look and its end */
	for (size_t i = 0; i < again.n; i++)
		runners_schedule(srv, again.v[i]);
	strv_done(&again);
}

bool runners_cancel_app(struct server *srv, const char *app)
{
	bool any = false;
	pthread_mutex_lock(&srv->rmu);
	for (struct runner *rn = srv->runners; rn; rn = rn->next)
		if (!strcmp(rn->app, app)) {
			atomic_store(&rn->cancel, true);
			atomic_store(&rn->abort, true);
			any |= !atomic_load(&rn->done);
		}
	pthread_cond_broadcast(&srv->rcv);
	pthread_mutex_unlock(&srv->rmu);
	return any;
}

bool runners_wait_app(struct server *srv, const char *app, int64_t ms)
{
	int64_t until = time_mono_ns() + ms * 1000000;
	for (;;) {
		pthread_mutex_lock(&srv->rmu);
		bool live = find_runner(srv, app) != NULL;
		pthread_mutex_unlock(&srv->rmu);
		if (!live)
			return true;
		if (time_mono_ns() >= until)
			return false;
		struct timespec ts = { 0, 20 * 1000000L };
		nanosleep(&ts, NULL);
	}
}

void runners_stop_all(struct server *srv)
{
	pthread_mutex_lock(&srv->mu);
	srv->stopping = true;
	pthread_mutex_unlock(&srv->mu);
	pthread_mutex_lock(&srv->rmu);
	for (struct runner *rn = srv->runners; rn; rn = rn->next) {
		atomic_store(&rn->shutdown, true);
		atomic_store(&rn->abort, true);
	}
	pthread_cond_broadcast(&srv->rcv);
	struct runner *list = srv->runners;
	srv->runners = NULL;
	pthread_mutex_unlock(&srv->rmu);
	while (list) {
		struct runner *n = list->next;
		pthread_join(list->th, NULL);
		free(list);
		list = n;
	}
}

/* ---- the keeper ----------------------------------------------------------------------------- */

struct lease_todo {
	char app[STORE_APP_MAX];
	int64_t job_id, deadline_at;
	struct runner *rn;
};

static void keeper_tick(struct server *srv, struct store *st)
{
	struct lease_todo todo[64];
	size_t n = 0;
	int64_t now = time_now_ns() / 1000000;
	struct err e;

	pthread_mutex_lock(&srv->rmu);
	for (struct runner *rn = srv->runners; rn && n < ARRAY_SIZE(todo); rn = rn->next) {
		if (atomic_load(&rn->done) || !atomic_load(&rn->job_id))
			continue;
		snprintf(todo[n].app, sizeof(todo[n].app), "%s", rn->app);
		todo[n].job_id = atomic_load(&rn->job_id);
		todo[n].deadline_at = atomic_load(&rn->deadline_at);
		todo[n].rn = rn;
		n++;
	}
	pthread_mutex_unlock(&srv->rmu);
	for (size_t i = 0; i < n; i++) {
		struct lease_todo *t = &todo[i];
		int r = store_jobs(st)->lease_renew(st, t->app, srv->owner, t->job_id, now,
						    CTL_LEASE_TTL_MS, &e);
		pthread_mutex_lock(&srv->rmu);
		bool alive = false;
		for (struct runner *rn = srv->runners; rn; rn = rn->next)
			alive |= rn == t->rn;
		if (alive && r == 0 && atomic_load(&t->rn->has_lease) && !atomic_load(&t->rn->done)) {
			atomic_store(&t->rn->lease_lost, true);
			log_warn("controller", "lease of %s was broken or taken: its runner stops at the "
					       "next step boundary", t->app);
		}
		if (alive && t->deadline_at && now > t->deadline_at) {
			atomic_store(&t->rn->abort, true);
			/* a step that does not come back within the grace is wedged: the job ends
			 * here, independently of it */
			if (now > t->deadline_at + CTL_STEP_GRACE_MS) {
				char why[256];
				snprintf(why, sizeof(why), "job deadline passed; %s did not return",
					 t->rn->step[0] ? t->rn->step : "a step");
				pthread_mutex_unlock(&srv->rmu);
				if (store_jobs(st)->transition(st, t->job_id, JOB_RUNNING, JOB_FAILED, 0, why,
							       &e) == 0)
					server_notify(srv);
				continue;
			}
		}
		pthread_mutex_unlock(&srv->rmu);
	}
}

static void *keeper_main(void *arg)
{
	struct server *srv = arg;
	struct store *st = NULL;
	struct err e;
	int64_t last_purge = 0;
	if (server_open_store(srv, &st, &e) < 0) {
		log_error("controller", "keeper: %s", e.msg);
		return NULL;
	}
	while (!stopping(srv)) {
		int64_t now = time_now_ns() / 1000000;
		keeper_tick(srv, st);
		if (now - last_purge > 3600 * 1000) {
			int n = store_jobs(st)->idem_purge(st, now - CTL_IDEM_PURGE_AFTER_MS, &e);
			if (n > 0)
				log_info("controller", "purged %d idempotency keys", n);
			n = store_jobs(st)->events_purge(st, now - CTL_EVENTS_KEEP_MS, &e);
			if (n > 0)
				log_info("controller", "purged %d events older than 30 days", n);
			last_purge = now;
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += CTL_LEASE_RENEW_MS / 1000;
		pthread_mutex_lock(&srv->rmu);
		pthread_cond_timedwait(&srv->rcv, &srv->rmu, &ts);
		pthread_mutex_unlock(&srv->rmu);
	}
	store_close(st);
	return NULL;
}

int keeper_start(struct server *srv)
{
	int r = pthread_create(&srv->keeper, NULL, keeper_main, srv);
	return r ? -r : 0;
}
