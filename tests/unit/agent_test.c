/* Unit tests for agent/: the supervisor's state × event → action table (backoff, minimum
 * respawn interval, crash loop), log rotation and tail reading, request body parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "agent/agent-internal.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_sup_start_probe_stop(void **state)
{
	struct sup s;
	(void)state;
	sup_init(&s, 7000);
	assert_int_equal(s.state, SUP_STOPPED);
	assert_int_equal(sup_step(&s, SUP_EV_START, 1000), SUP_ACT_SPAWN);
	assert_int_equal(s.state, SUP_STARTING);
	assert_int_equal(sup_step(&s, SUP_EV_PROBE_OK, 1100), SUP_ACT_NONE);
	assert_int_equal(s.state, SUP_RUNNING);
	assert_int_equal(sup_step(&s, SUP_EV_START, 1200), SUP_ACT_NONE); /* already running */
	assert_int_equal(sup_step(&s, SUP_EV_STOP, 1300), SUP_ACT_TERM);
	assert_int_equal(s.state, SUP_STOPPING);
	assert_int_equal(s.delay_ms, 7000); /* the kill timer: stop_timeout */
	assert_int_equal(sup_step(&s, SUP_EV_STOP, 1400), SUP_ACT_NONE);
	assert_int_equal(sup_step(&s, SUP_EV_PROBE_OK, 1500), SUP_ACT_NONE);
	assert_int_equal(s.state, SUP_STOPPING);
	assert_int_equal(sup_step(&s, SUP_EV_TIMER, 8300), SUP_ACT_KILL);
	assert_int_equal(sup_step(&s, SUP_EV_EXITED, 8310), SUP_ACT_DONE);
	assert_int_equal(s.state, SUP_STOPPED);
}

static void test_sup_backoff_doubles_and_respects_min_respawn(void **state)
{
	struct sup s;
	int64_t t = 0;
	const int64_t want[] = { 500, 500, 500, 800 };
	(void)state;
	sup_init(&s, 1000);
	sup_step(&s, SUP_EV_START, t);
	for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
		t += 10; /* it dies 10ms after each start */
		assert_int_equal(sup_step(&s, SUP_EV_EXITED, t), SUP_ACT_BACKOFF);
		assert_int_equal(s.state, SUP_BACKOFF);
		/* 100, 200, 400 are raised to the 500ms minimum respawn interval (minus 10ms run) */
		int64_t expect = want[i] == 500 ? 490 : want[i];
		assert_int_equal(s.delay_ms, expect);
		t += s.delay_ms;
		assert_int_equal(sup_step(&s, SUP_EV_TIMER, t), SUP_ACT_SPAWN);
		assert_int_equal(s.state, SUP_STARTING);
	}
	/* the 5th exit within 30s: crash loop */
	t += 10;
	assert_int_equal(sup_step(&s, SUP_EV_EXITED, t), SUP_ACT_GIVE_UP);
	assert_int_equal(s.state, SUP_FAILED);
	assert_int_equal(sup_step(&s, SUP_EV_TIMER, t + 100000), SUP_ACT_NONE);
	assert_int_equal(sup_step(&s, SUP_EV_EXITED, t + 100000), SUP_ACT_NONE);
	assert_int_equal(s.state, SUP_FAILED);
	/* an explicit start forgets the past */
	assert_int_equal(sup_step(&s, SUP_EV_START, t + 200000), SUP_ACT_SPAWN);
	assert_int_equal(s.n_exits, 0u);
	assert_int_equal(s.backoff_ms, SUP_BACKOFF_MIN_MS);
}

static void test_sup_slow_crashes_are_no_loop(void **state)
{
	struct sup s;
	int64_t t = 0;
	(void)state;
	sup_init(&s, 1000);
	sup_step(&s, SUP_EV_START, t);
	for (int i = 0; i < 20; i++) { /* one exit every 11s: never 5 within 30s */
		t += 11000;
		assert_int_equal(sup_step(&s, SUP_EV_EXITED, t), SUP_ACT_BACKOFF);
		/* a run longer than SUP_RESET_AFTER_MS resets the backoff */
		assert_int_equal(s.delay_ms, SUP_BACKOFF_MIN_MS);
		assert_int_equal(sup_step(&s, SUP_EV_TIMER, t + s.delay_ms), SUP_ACT_SPAWN);
		t += s.delay_ms;
	}
	assert_int_equal(s.state, SUP_STARTING);
}

static void test_sup_backoff_is_capped(void **state)
{
	struct sup s;
	int64_t t = 0, last = 0;
	(void)state;
	sup_init(&s, 1000);
	sup_step(&s, SUP_EV_START, t);
	for (int i = 0; i < 12; i++) {
		t += 8000; /* ran 8s: no reset, but 5 exits never fall within 30s */
		if (sup_step(&s, SUP_EV_EXITED, t) != SUP_ACT_BACKOFF)
			fail_msg("exit %d: not a backoff", i);
		last = s.delay_ms;
		assert_true(last <= SUP_BACKOFF_MAX_MS);
		t += s.delay_ms;
		sup_step(&s, SUP_EV_TIMER, t);
	}
	assert_int_equal(last, SUP_BACKOFF_MAX_MS);
}

static void test_sup_exec_failure_and_stops(void **state)
{
	struct sup s;
	(void)state;
	sup_init(&s, 1000);
	sup_step(&s, SUP_EV_START, 0);
	assert_int_equal(sup_step(&s, SUP_EV_EXEC_FAILED, 1), SUP_ACT_GIVE_UP);
	assert_int_equal(s.state, SUP_FAILED);
	assert_int_equal(sup_step(&s, SUP_EV_STOP, 2), SUP_ACT_DONE);
	assert_int_equal(s.state, SUP_STOPPED);
	/* a stop during backoff needs no signal */
	sup_step(&s, SUP_EV_START, 10);
	sup_step(&s, SUP_EV_EXITED, 20);
	assert_int_equal(s.state, SUP_BACKOFF);
	assert_int_equal(sup_step(&s, SUP_EV_STOP, 30), SUP_ACT_DONE);
	assert_int_equal(sup_step(&s, SUP_EV_TIMER, 600), SUP_ACT_NONE);
	assert_int_equal(s.state, SUP_STOPPED);
	/* every cell of the table is defined */
	for (int st = 0; st < SUP_N_STATES; st++)
		for (int ev = 0; ev < SUP_N_EVENTS; ev++) {
			struct sup x;
			sup_init(&x, 1);
			x.state = (enum sup_state)st;
			enum sup_action a = sup_step(&x, (enum sup_event)ev, 100000);
			assert_true((unsigned)x.state < SUP_N_STATES);
			assert_string_not_equal(sup_action_name(a), "unknown");
		}
	enum sup_state p;
	assert_int_equal(sup_state_parse("backoff", &p), 0);
	assert_int_equal(p, SUP_BACKOFF);
	assert_int_equal(sup_state_parse("bogus", &p), -1);
}

static char *tmpdir(void)
{
	char *t = fs_mkdtemp("/tmp", NULL);
	assert_non_null(t);
	return t;
}

static off_t size_of(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 ? st.st_size : -1;
}

static void test_log_rotation(void **state)
{
	char *d = tmpdir(), *f = fs_join(d, "i.log"), *f1 = xasprintf("%s.1", f),
	     *f2 = xasprintf("%s.2", f), *f3 = xasprintf("%s.3", f);
	struct logw w = { .fd = -1 };
	char line[100];
	(void)state;
	memset(line, 'a', sizeof(line));
	assert_int_equal(logw_open(&w, f, 1000, 3), 0);
	/* each record: 24 ts + 1 + 6 stream + 1 + 100 + 1 = 133 bytes; 7 fit in 1000 */
	for (int i = 0; i < 7; i++)
		assert_int_equal(logw_line(&w, 1700000000123456789LL, "stdout", line, sizeof(line)), 0);
	assert_int_equal(size_of(f), 7 * 133);
	assert_int_equal(size_of(f1), -1);
	assert_int_equal(logw_line(&w, 1700000000123456789LL, "stderr", line, sizeof(line)), 0);
	assert_int_equal(size_of(f), 133);
	assert_int_equal(size_of(f1), 7 * 133);
	for (int i = 0; i < 14; i++)
		assert_int_equal(logw_line(&w, 1700000000123456789LL, "stdout", "x", 1), 0);
	for (int i = 0; i < 30; i++)
		assert_int_equal(logw_line(&w, 1700000000123456789LL, "stdout", line, sizeof(line)), 0);
	/* keep 3: FILE, FILE.1, FILE.2 — never FILE.3, never more than max_bytes each */
	assert_true(size_of(f) > 0 && size_of(f) <= 1000);
	assert_true(size_of(f1) > 0 && size_of(f1) <= 1000);
	assert_true(size_of(f2) > 0 && size_of(f2) <= 1000);
	assert_int_equal(size_of(f3), -1);
	logw_close(&w);

	/* the reader: the last N lines across FILE.1 and FILE, parsed */
	json_t *lines = NULL;
	struct err e = { 0 };
	assert_int_equal(agent_log_tail(f, 9, &lines, &e), 0);
	assert_int_equal(json_array_size(lines), 9);
	json_t *l0 = json_array_get(lines, 0);
	assert_string_equal(json_string_value(json_object_get(l0, "ts")), "2023-11-14T22:13:20.123Z");
	assert_string_equal(json_string_value(json_object_get(l0, "stream")), "stdout");
	assert_int_equal(json_string_length(json_object_get(l0, "line")), 100);
	json_decref(lines);
	fs_rm_rf(d);
	free(d);
	free(f);
	free(f1);
	free(f2);
	free(f3);
}

static void test_log_long_line_is_cut(void **state)
{
	char *d = tmpdir(), *f = fs_join(d, "i.log");
	struct logw w = { .fd = -1 };
	char *big = malloc(LOG_LINE_MAX * 2);
	json_t *lines = NULL;
	(void)state;
	memset(big, 'b', LOG_LINE_MAX * 2);
	assert_int_equal(logw_open(&w, f, LOG_ROTATE_BYTES, 3), 0);
	assert_int_equal(logw_line(&w, 0, "stderr", big, LOG_LINE_MAX * 2), 0);
	logw_close(&w);
	assert_int_equal(agent_log_tail(f, 10, &lines, NULL), 0);
	assert_int_equal(json_array_size(lines), 1);
	assert_int_equal(json_string_length(json_object_get(json_array_get(lines, 0), "line")),
			 LOG_LINE_MAX);
	json_decref(lines);
	fs_rm_rf(d);
	free(d);
	free(f);
	free(big);
}

static void test_parse_start(void **state)
{
	struct start_req r;
	struct err e = { 0 };
	const char *id = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	char *ok = xasprintf("{\"release\":\"%s\",\"count\":3,\"env\":{\"A\":\"b\"},"
			     "\"stop_timeout_ms\":250,\"stop_signal\":\"SIGINT\",\"data_dir\":null,"
			     "\"reserved_ports\":[8080,1]}", id);
	(void)state;
	assert_int_equal(agent_parse_start(ok, strlen(ok), &r, &e), 0);
	assert_string_equal(r.release, id);
	assert_int_equal(r.count, 3);
	assert_int_equal(r.stop_timeout_ms, 250);
	assert_int_equal(r.stop_signal, SIGINT);
	assert_int_equal(r.n_reserved, 2);
	assert_int_equal(r.reserved[0], 8080);
	assert_int_equal(r.reserved[1], 1);
	assert_string_equal(json_string_value(json_object_get(r.env, "A")), "b");
	start_req_done(&r);
	free(ok);
	static const char *const bad[] = {
		"", "[]", "{\"release\":1}", "{\"release\":\"sha256:abc\"}", "nope",
		"{\"release\":\"" "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" "\",\"count\":65}",
		"{\"release\":\"" "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" "\",\"env\":{\"1A\":\"x\"}}",
		"{\"release\":\"" "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" "\",\"env\":{\"CAIRN_DATA\":\"x\"}}",
		"{\"release\":\"" "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" "\",\"stop_signal\":\"SIGFOO\"}",
		"{\"release\":\"" "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" "\",\"stop_timeout_ms\":-1}",
		"{\"release\":\"" "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" "\",\"extra\":1}",
		"{\"release\":\"" "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" "\",\"reserved_ports\":[0]}",
		"{\"release\":\"" "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" "\",\"reserved_ports\":[1,2,3,4,5,6,7,8,9]}",
		"{\"release\":\"" "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" "\",\"reserved_ports\":80}",
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		err_clear(&e);
		if (agent_parse_start(bad[i], strlen(bad[i]), &r, &e) != -CAIRN_EINPUT)
			fail_msg("accepted: %s", bad[i]);
		assert_true(e.msg[0] != 0);
	}
	struct probe_req p;
	assert_int_equal(agent_parse_probe("{}", 2, &p, &e), 0);
	assert_null(p.http);
	assert_int_equal(p.timeout_ms, 2000);
	const char *pj = "{\"http\":\"/h\",\"timeout_ms\":5}";
	assert_int_equal(agent_parse_probe(pj, strlen(pj), &p, &e), 0);
	assert_string_equal(p.http, "/h");
	free(p.http);
	assert_true(agent_parse_probe("{\"http\":\"h\"}", 12, &p, &e) < 0);
	assert_true(agent_parse_probe("{\"http\":\"/a b\"}", 15, &p, &e) < 0);
	int64_t t;
	assert_int_equal(agent_parse_timeout("", 0, 77, &t, &e), 0);
	assert_int_equal(t, 77);
	assert_true(agent_name_ok("url-short.v2_x"));
	assert_false(agent_name_ok("Bad"));
	assert_false(agent_name_ok(""));
	assert_false(agent_name_ok("-a"));
}

static int proxy_err(const char *body, const char *want)
{
	struct proxy_req r;
	struct err e = {0};
	int rc = agent_parse_proxy(body, strlen(body), &r, &e);
	if (rc == 0) {
		proxy_req_done(&r);
		return 0;
	}
	if (!strstr(e.msg, want))
		fail_msg("%s: got \"%s\", wanted \"%s\"", body, e.msg, want);
	return rc;
}

static void test_parse_proxy(void **state)
{
	(void)state;
	struct proxy_req r;
	struct err e = {0};
	const char *ok = "{\"listen\":\"127.0.0.1:8080\",\"mode\":\"tcp\",\"stopped\":true,"
			 "\"upstreams\":[{\"addr\":\"127.0.0.1:9001\",\"release\":\"sha256:ab\"},"
			 "{\"addr\":\"[::1]:9002\"}]}";
	assert_int_equal(agent_parse_proxy(ok, strlen(ok), &r, &e), 0);
	assert_string_equal(r.listen, "127.0.0.1:8080");
	assert_false(r.http);
	assert_true(r.stopped);
	assert_int_equal(json_array_size(r.upstreams), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(r.upstreams, 1), "release")), "");
	proxy_req_done(&r);
	assert_int_equal(agent_parse_proxy("{\"listen\":\"127.0.0.1:0\"}", 24, &r, &e), 0);
	assert_true(r.http && !r.stopped && json_array_size(r.upstreams) == 0);
	proxy_req_done(&r);
	assert_true(proxy_err("{}", "\"listen\" must be \"HOST:PORT\"") < 0);
	assert_true(proxy_err("{\"listen\":\"127.0.0.1:70000\"}", "port 70000") < 0);
	assert_true(proxy_err("{\"listen\":\"x:1\",\"mode\":\"udp\"}", "\"mode\" must be") < 0);
	assert_true(proxy_err("{\"listen\":\"x:1\",\"stopped\":1}", "\"stopped\" must be") < 0);
	assert_true(proxy_err("{\"listen\":\"x:1\",\"upstreams\":{}}", "must be an array") < 0);
	assert_true(proxy_err("{\"listen\":\"x:1\",\"upstreams\":[1]}", "[0] must be an object") < 0);
	assert_true(proxy_err("{\"listen\":\"x:1\",\"upstreams\":[{\"addr\":\"h:0\"}]}", "port 0") < 0);
	assert_true(proxy_err("{\"listen\":\"x:1\",\"upstreams\":[{\"addr\":\"h:1\",\"x\":1}]}",
			      "unknown field \"x\"") < 0);
	assert_true(proxy_err("{\"listen\":\"x:1\",\"extra\":1}", "unknown field") < 0);
}

static void test_parse_check(void **state)
{
	(void)state;
	struct check_req c;
	struct err e = {0};
	const char *ok = "{\"method\":\"POST\",\"path\":\"/shorten\",\"headers\":{\"X-A\":\"b\"},"
			 "\"body\":\"{}\",\"timeout_ms\":500,\"expect\":{\"status\":201,"
			 "\"body_contains\":\"/s/\",\"max_latency_ms\":300}}";
	assert_int_equal(agent_parse_check(ok, strlen(ok), &c, &e), 0);
	assert_string_equal(c.method, "POST");
	assert_string_equal(c.path, "/shorten");
	assert_int_equal(c.headers.n, 1);
	assert_string_equal(c.headers.v[0], "X-A: b");
	assert_int_equal(c.body_n, 2);
	assert_int_equal(c.expect_status, 201);
	assert_string_equal(c.expect_body, "/s/");
	assert_int_equal(c.expect_max_latency_ms, 300);
	check_req_done(&c);
	assert_int_equal(agent_parse_check("{\"path\":\"/\"}", 12, &c, &e), 0);
	assert_string_equal(c.method, "GET");
	assert_int_equal(c.expect_status, 200);
	assert_null(c.expect_body);
	check_req_done(&c);
	static const char *const bad[] = {
	    "{}", "{\"path\":\"x\"}", "{\"path\":\"/a b\"}", "{\"path\":\"/\",\"method\":\"G T\"}",
	    "{\"path\":\"/\",\"headers\":{\"a b\":\"c\"}}", "{\"path\":\"/\",\"headers\":{\"a\":\"c\\r\\nX: y\"}}",
	    "{\"path\":\"/\",\"expect\":{\"status\":99}}", "{\"path\":\"/\",\"expect\":{\"x\":1}}",
	    "{\"path\":\"/\",\"timeout_ms\":0}", "{\"path\":\"/\",\"body\":1}", NULL};
	for (size_t i = 0; bad[i]; i++) {
		e = (struct err){0};
		if (agent_parse_check(bad[i], strlen(bad[i]), &c, &e) == 0)
			fail_msg("accepted %s", bad[i]);
		assert_true(e.msg[0] != '\0');
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sup_start_probe_stop),
		cmocka_unit_test(test_sup_backoff_doubles_and_respects_min_respawn),
		cmocka_unit_test(test_sup_slow_crashes_are_no_loop),
		cmocka_unit_test(test_sup_backoff_is_capped),
		cmocka_unit_test(test_sup_exec_failure_and_stops),
		cmocka_unit_test(test_log_rotation),
		cmocka_unit_test(test_log_long_line_is_cut),
		cmocka_unit_test(test_parse_start),
		cmocka_unit_test(test_parse_proxy),
		cmocka_unit_test(test_parse_check),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
