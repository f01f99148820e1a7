/* Unit tests for the jobs part of store/ (SQLite): submit outcomes with idempotency keys, the
 * queue bound and no-op deploys, transitions as compare-and-set, steps, leases (expiry,
 * renewal, takeover, breaking), the event log and key purging. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "store/store.h"

#include <stdlib.h>
#include <string.h>

struct fx {
	char *dir;
	struct store *st;
	const struct store_job_ops *J;
};

static const char *const REL = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

static int setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof(*f));
	struct err e;
	struct store_release r = { .created_at = 1, .state = RELEASE_UNTESTED };
	f->dir = fs_mkdtemp("/tmp", &e);
	assert_non_null(f->dir);
	assert_int_equal(store_open_sqlite(f->dir, &f->st, &e), 0);
	f->J = store_jobs(f->st);
	snprintf(r.id, sizeof(r.id), "%s", REL);
	snprintf(r.app, sizeof(r.app), "demo");
	assert_int_equal(store_release_put(f->st, &r, &e), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	store_close(f->st);
	fs_rm_rf(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

static struct store_job_submit req(const char *key, const char *fp)
{
	struct store_job_submit r = { .app = "demo", .kind = "deploy", .release = REL, .reason = "",
				      .idem_key = key, .fingerprint = fp, .queue_max = 3,
				      .noop_if_current = true };
	return r;
}

static void test_submit_idempotency(void **state)
{
	struct fx *f = *state;
	struct store_job_submit r = req("k1", "fpA");
	enum store_submit_outcome oc;
	struct store_job j1, j2;
	struct err e;
	char fp[HASH_HEX_LEN + 1];

	assert_int_equal(f->J->submit(f->st, &r, &oc, &j1, &e), 0);
	assert_int_equal(oc, STORE_SUBMIT_CREATED);
	assert_int_equal(j1.state, JOB_QUEUED);
	assert_int_equal(f->J->submit(f->st, &r, &oc, &j2, &e), 0);
	assert_int_equal(oc, STORE_SUBMIT_REPLAY);
	assert_int_equal(j2.id, j1.id);
	r.fingerprint = "fpB";
	assert_int_equal(f->J->submit(f->st, &r, &oc, &j2, &e), 0);
	assert_int_equal(oc, STORE_SUBMIT_MISMATCH);
	assert_int_equal(j2.id, j1.id);
	assert_int_equal(f->J->idem_lookup(f->st, "demo", "k1", fp, &j2, &e), 1);
	assert_string_equal(fp, "fpA");
	assert_int_equal(f->J->idem_lookup(f->st, "other", "k1", fp, &j2, &e), 0);
	/* the queue bound: 3 queued, the 4th is refused and records nothing */
	r = req(NULL, NULL);
	assert_int_equal(f->J->submit(f->st, &r, &oc, &j2, &e), 0);
	assert_int_equal(f->J->submit(f->st, &r, &oc, &j2, &e), 0);
	assert_int_equal(oc, STORE_SUBMIT_CREATED);
	r.idem_key = "k9";
	r.fingerprint = "x";
	assert_int_equal(f->J->submit(f->st, &r, &oc, &j2, &e), 0);
	assert_int_equal(oc, STORE_SUBMIT_QUEUE_FULL);
	assert_int_equal(f->J->idem_lookup(f->st, "demo", "k9", fp, &j2, &e), 0);
	/* purge: keys older than the horizon go, and the key can then be used anew */
	assert_int_equal(f->J->idem_purge(f->st, time_now_ns() / 1000000 + 1000, &e), 1);
	assert_int_equal(f->J->idem_lookup(f->st, "demo", "k1", fp, &j2, &e), 0);
}

static void test_transitions_and_noop(void **state)
{
	struct fx *f = *state;
	struct store_job_submit r = req(NULL, NULL);
	enum store_submit_outcome oc;
	struct store_job j, j2;
	struct store_app a;
	struct store_release rel;
	struct err e;

	assert_int_equal(f->J->submit(f->st, &r, &oc, &j, &e), 0);
	/* compare-and-set: from the wrong state is refused */
	assert_true(f->J->transition(f->st, j.id, JOB_RUNNING, JOB_SUCCEEDED, 0, NULL, &e) < 0);
	assert_int_equal(f->J->transition(f->st, j.id, JOB_QUEUED, JOB_RUNNING, 12345, NULL, &e), 0);
	assert_int_equal(f->J->get(f->st, j.id, &j2, &e), 0);
	assert_int_equal(j2.deadline_at, 12345);
	assert_true(j2.started_at > 0);
	assert_int_equal(f->J->app_get(f->st, "demo", &a, &e), 0);
	assert_int_equal(a.running_job, j.id);
	assert_int_equal(f->J->transition(f->st, j.id, JOB_RUNNING, JOB_SUCCEEDED, 0, NULL, &e), 0);
	assert_int_equal(f->J->app_get(f->st, "demo", &a, &e), 0);
	assert_string_equal(a.current, REL);
	assert_string_equal(a.last_good, REL);
	assert_int_equal(a.running_job, 0);
	assert_int_equal(store_release_get(f->st, REL, &rel, &e), 0);
	assert_int_equal(rel.state, RELEASE_GOOD);
	/* the current good release again: the job that made it so */
	assert_int_equal(f->J->submit(f->st, &r, &oc, &j2, &e), 0);
	assert_int_equal(oc, STORE_SUBMIT_NOOP);
	assert_int_equal(j2.id, j.id);
	r.noop_if_current = false; /* force */
	assert_int_equal(f->J->submit(f->st, &r, &oc, &j2, &e), 0);
	assert_int_equal(oc, STORE_SUBMIT_CREATED);
	assert_int_not_equal(j2.id, j.id);
}

static int count_step(void *ctx, const struct store_step *st)
{
	(*(int *)ctx)++;
	assert_true(!strcmp(st->state, "done") || !strcmp(st->state, "started"));
	return 0;
}

static int count_event(void *ctx, const struct store_event *ev)
{
	(*(int *)ctx)++;
	assert_true(ev->id > 0 && ev->data[0] == '{');
	return 0;
}

static void test_steps_and_events(void **state)
{
	struct fx *f = *state;
	struct store_job_submit r = req(NULL, NULL);
	enum store_submit_outcome oc;
	struct store_job j;
	struct err e;
	int a1, a2, n = 0, ev = 0;

	assert_int_equal(f->J->submit(f->st, &r, &oc, &j, &e), 0);
	assert_int_equal(f->J->step_begin(f->st, j.id, "local", "start", &a1, &e), 0);
	assert_int_equal(a1, 1);
	assert_int_equal(f->J->step_end(f->st, j.id, "local", "start", a1, true, "{\"n\":1}", &e), 0);
	/* a step can end only once */
	assert_true(f->J->step_end(f->st, j.id, "local", "start", a1, true, NULL, &e) < 0);
	assert_int_equal(f->J->step_begin(f->st, j.id, "local", "start", &a2, &e), 0);
	assert_int_equal(a2, 2);
	assert_int_equal(f->J->steps(f->st, j.id, count_step, &n, &e), 0);
	assert_int_equal(n, 2);
	assert_int_equal(f->J->events_after(f->st, 0, 100, count_event, &ev, &e), 0);
	assert_int_equal(ev, 4); /* job queued, step started, step done, step started */
	ev = 0;
	assert_int_equal(f->J->events_after(f->st, 2, 100, count_event, &ev, &e), 0);
	assert_int_equal(ev, 2);
	/* retention: nothing is older than an hour ago; everything is older than the future */
	assert_int_equal(f->J->events_purge(f->st, time_now_ns() / 1000000 - 3600 * 1000, &e), 0);
	assert_int_equal(f->J->events_purge(f->st, time_now_ns() / 1000000 + 1000, &e), 4);
	ev = 0;
	assert_int_equal(f->J->events_after(f->st, 0, 100, count_event, &ev, &e), 0);
	assert_int_equal(ev, 0);
}

static void test_leases(void **state)
{
	struct fx *f = *state;
	struct store_lease l;
	struct err e;
	int64_t t = 1000000;

	assert_int_equal(f->J->lease_acquire(f->st, "demo", "A", 1, t, 15000, &l, &e), 1);
	/* held by A: B cannot take it before it expires */
	assert_int_equal(f->J->lease_acquire(f->st, "demo", "B", 2, t + 1000, 15000, &l, &e), 0);
	assert_string_equal(l.owner, "A");
	assert_int_equal(l.expires_at, t + 15000);
	/* A renews; B still cannot take it at the old expiry */
	assert_int_equal(f->J->lease_renew(f->st, "demo", "A", 1, t + 10000, 15000, &e), 1);
	assert_int_equal(f->J->lease_acquire(f->st, "demo", "B", 2, t + 16000, 15000, &l, &e), 0);
	/* a lease not renewed expires: no stale lock outlives its owner's silence */
	assert_int_equal(f->J->lease_acquire(f->st, "demo", "B", 2, t + 25001, 15000, &l, &e), 1);
	/* A lost it: its renewal fails, its release does not remove B's */
	assert_int_equal(f->J->lease_renew(f->st, "demo", "A", 1, t + 25002, 15000, &e), 0);
	assert_int_equal(f->J->lease_release(f->st, "demo", "A", &e), 0);
	assert_int_equal(f->J->lease_get(f->st, "demo", &l, &e), 1);
	assert_string_equal(l.owner, "B");
	/* the same owner may take it again (idempotent) */
	assert_int_equal(f->J->lease_acquire(f->st, "demo", "B", 3, t + 25003, 15000, &l, &e), 1);
	/* an expired lease cannot be renewed */
	assert_int_equal(f->J->lease_renew(f->st, "demo", "B", 3, t + 99999, 15000, &e), 0);
	/* breaking (unlock): whoever holds it */
	assert_int_equal(f->J->lease_release(f->st, "demo", NULL, &e), 1);
	assert_int_equal(f->J->lease_get(f->st, "demo", &l, &e), 0);
	assert_int_equal(f->J->lease_release(f->st, "demo", NULL, &e), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_submit_idempotency, setup, teardown),
		cmocka_unit_test_setup_teardown(test_transitions_and_noop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_steps_and_events, setup, teardown),
		cmocka_unit_test_setup_teardown(test_leases, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
