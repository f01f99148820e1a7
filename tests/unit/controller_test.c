/* Unit tests for controller/: the job state table, step names, request-body parsing and its
 * fingerprint, header parsing and path routing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "controller/controller.h"

#include <errno.h>
#include <string.h>

static void test_state_table(void **state)
{
	(void)state;
	assert_true(job_transition_allowed(JOB_QUEUED, JOB_RUNNING));
	assert_true(job_transition_allowed(JOB_QUEUED, JOB_CANCELLED));
	assert_true(job_transition_allowed(JOB_RUNNING, JOB_SUCCEEDED));
	assert_true(job_transition_allowed(JOB_RUNNING, JOB_FAILED));
	assert_true(job_transition_allowed(JOB_RUNNING, JOB_ROLLED_BACK));
	assert_true(job_transition_allowed(JOB_RUNNING, JOB_CANCELLED));
	assert_false(job_transition_allowed(JOB_QUEUED, JOB_SUCCEEDED));
	assert_false(job_transition_allowed(JOB_RUNNING, JOB_QUEUED));
	assert_false(job_transition_allowed(JOB_RUNNING, JOB_RUNNING));
	/* a terminal job is never run again (story 002) */
	for (int t = 0; t < JOB_STATE_COUNT; t++)
		for (int to = 0; to < JOB_STATE_COUNT; to++)
			if (job_state_terminal((enum job_state)t))
				assert_false(job_transition_allowed((enum job_state)t, (enum job_state)to));
	assert_false(job_transition_allowed((enum job_state)99, JOB_RUNNING));
	assert_false(job_state_terminal(JOB_QUEUED));
	assert_false(job_state_terminal(JOB_RUNNING));
	assert_true(job_state_terminal(JOB_ROLLED_BACK));
}

static void test_state_and_step_names(void **state)
{
	enum job_state st;
	enum deploy_step ds;
	(void)state;
	for (int i = 0; i < JOB_STATE_COUNT; i++) {
		assert_int_equal(job_state_parse(job_state_name((enum job_state)i), &st), 0);
		assert_int_equal(st, i);
	}
	assert_int_equal(job_state_parse("done", &st), -EINVAL);
	for (int i = 0; i < STEP_COUNT; i++) {
		assert_int_equal(deploy_step_parse(deploy_step_name((enum deploy_step)i), &ds), 0);
		assert_int_equal(ds, i);
	}
	assert_string_equal(deploy_step_name(STEP_CLEANUP), "cleanup");
	assert_int_equal(deploy_step_parse("rollback", &ds), -EINVAL);
	assert_false(deploy_step_rerunnable(STEP_START));
	assert_true(deploy_step_rerunnable(STEP_HEALTH));
}

static void parse_ok(const char *body, bool rollback, struct api_deploy_body *out)
{
	struct err e;
	int r = api_parse_deploy_body(body, strlen(body), rollback, out, &e);
	if (r < 0)
		fail_msg("%s: %s", body, e.msg);
}

static void parse_bad(const char *body, bool rollback, const char *want)
{
	struct api_deploy_body b;
	struct err e;
	assert_true(api_parse_deploy_body(body, strlen(body), rollback, &b, &e) < 0);
	if (!strstr(e.msg, want))
		fail_msg("%s: message '%s' lacks '%s'", body, e.msg, want);
}

static void test_body_and_fingerprint(void **state)
{
	struct api_deploy_body a, b, c, d;
	(void)state;
	parse_ok("{\"release\":\"v1\"}", false, &a);
	assert_string_equal(a.release, "v1");
	assert_false(a.force);
	/* the same meaning, spelled differently: the same fingerprint */
	parse_ok("{ \"force\": false, \"reason\": \"\", \"release\": \"v1\" }", false, &b);
	assert_string_equal(a.fingerprint, b.fingerprint);
	parse_ok("{\"release\":\"v1\",\"force\":true}", false, &c);
	assert_string_not_equal(a.fingerprint, c.fingerprint);
	parse_ok("{\"release\":\"v1\",\"reason\":\"x\"}", false, &d);
	assert_string_not_equal(a.fingerprint, d.fingerprint);
	/* a rollback never shares a fingerprint with a deploy */
	parse_ok("{\"to\":\"v1\"}", true, &d);
	assert_string_not_equal(a.fingerprint, d.fingerprint);
	parse_ok("", true, &d);
	assert_string_equal(d.release, "");
	parse_bad("", false, "not JSON");
	parse_bad("[]", false, "JSON object");
	parse_bad("{}", false, "\"release\" is required");
	parse_bad("{\"release\":\"\"}", false, "must not be empty");
	parse_bad("{\"release\":1}", false, "must be a string");
	parse_bad("{\"release\":\"v1\",\"force\":\"yes\"}", false, "true or false");
	parse_bad("{\"release\":\"v1\",\"extra\":1}", false, "unknown key");
	parse_bad("{\"release\":\"v1\",\"release\":\"v2\"}", false, "not JSON");
	parse_bad("{\"release\":\"a\\u0000b\"}", false, "NUL");
	parse_bad("{\"release\":\"v1\"}", true, "unknown key");
	char big[400];
	snprintf(big, sizeof(big), "{\"release\":\"%0300d\"}", 0);
	parse_bad(big, false, "longer than");
}

static void test_headers(void **state)
{
	char key[STORE_IDEM_KEY_MAX + 1], longkey[300];
	struct err e;
	int64_t id;
	(void)state;
	assert_int_equal(api_parse_idem_key("abc-123", key, &e), 0);
	assert_string_equal(key, "abc-123");
	assert_int_equal(api_parse_idem_key("\"8e03978e-40d5\"", key, &e), 0);
	assert_string_equal(key, "8e03978e-40d5");
	assert_true(api_parse_idem_key("", key, &e) < 0);
	assert_true(api_parse_idem_key("\"\"", key, &e) < 0);
	assert_true(api_parse_idem_key("a b", key, &e) < 0);
	assert_true(api_parse_idem_key("a\\b", key, &e) < 0);
	memset(longkey, 'k', 256);
	longkey[256] = '\0';
	assert_true(api_parse_idem_key(longkey, key, &e) < 0);
	longkey[255] = '\0';
	assert_int_equal(api_parse_idem_key(longkey, key, &e), 0);
	assert_int_equal(api_parse_event_id("42", &id), 0);
	assert_int_equal(id, 42);
	assert_int_equal(api_parse_event_id("", &id), -EINVAL);
	assert_int_equal(api_parse_event_id("-1", &id), -EINVAL);
	assert_int_equal(api_parse_event_id("99999999999999999999", &id), -EINVAL);
	assert_string_equal(api_parse_bearer("Bearer abc"), "abc");
	assert_string_equal(api_parse_bearer("bearer   abc"), "abc");
	assert_null(api_parse_bearer("Basic abc"));
	assert_null(api_parse_bearer("Bearer "));
}

static void test_paths(void **state)
{
	struct api_path p;
	(void)state;
	api_match_path("/v1/apps/urlshort/deploys", &p);
	assert_int_equal(p.route, ROUTE_DEPLOYS);
	assert_string_equal(p.app, "urlshort");
	api_match_path("/v1/apps/urlshort/deploys?limit=3", &p);
	assert_int_equal(p.route, ROUTE_DEPLOYS);
	api_match_path("/v1/apps/urlshort", &p);
	assert_int_equal(p.route, ROUTE_APP);
	api_match_path("/v1/apps/urlshort/lease", &p);
	assert_int_equal(p.route, ROUTE_UNLOCK);
	api_match_path("/v1/apps/urlshort/instances", &p);
	assert_int_equal(p.route, ROUTE_INSTANCES);
	api_match_path("/v1/apps/Bad/deploys", &p);
	assert_int_equal(p.route, ROUTE_NONE);
	api_match_path("/v1/apps/a/deploys/x", &p);
	assert_int_equal(p.route, ROUTE_NONE);
	assert_string_equal(p.app, "");
	api_match_path("/v1/jobs/17", &p);
	assert_int_equal(p.route, ROUTE_JOB);
	assert_int_equal(p.job_id, 17);
	api_match_path("/v1/jobs/0", &p);
	assert_int_equal(p.route, ROUTE_NONE);
	api_match_path("/v1/jobs/1x", &p);
	assert_int_equal(p.route, ROUTE_NONE);
	api_match_path("/v1/events?after=3", &p);
	assert_int_equal(p.route, ROUTE_EVENTS);
	api_match_path("/metrics", &p);
	assert_int_equal(p.route, ROUTE_METRICS);
	api_match_path("/", &p);
	assert_int_equal(p.route, ROUTE_NONE);
	assert_true(api_app_name_ok("a.b-c_d", 7));
	assert_false(api_app_name_ok("-a", 2));
	assert_false(api_app_name_ok("", 0));
}

static void test_head_scan(void **state)
{
	struct api_head_scan h;
	const char *tok = "0123456789abcdef0123";
	const char *head = "\r\nPUT /v1/objects/ab HTTP/1.1\r\nHost: x\r\n"
			   "authorization:  Bearer 0123456789abcdef0123 \r\n\r\nBODY";
	(void)state;
	/* fed a byte at a time: the head ends at its empty line, the body is not taken */
	api_head_scan_reset(&h);
	size_t used = 0, n = strlen(head);
	for (size_t i = 0; i < n && !h.done; i++)
		used += api_head_scan(&h, head + i, 1, tok);
	assert_true(h.done && h.auth_ok);
	assert_int_equal(used, n - 4);
	assert_int_equal(h.reqline_n, strlen("PUT /v1/objects/ab HTTP/1.1"));
	assert_memory_equal(h.reqline, "PUT /v1/objects/ab", 18);
	/* in one piece, with a wrong token and bare LFs */
	api_head_scan_reset(&h);
	const char *bad = "GET / HTTP/1.1\nAuthorization: Bearer 0123456789abcdef0124\n\nX";
	assert_int_equal(api_head_scan(&h, bad, strlen(bad), tok), strlen(bad) - 1);
	assert_true(h.done && !h.auth_ok);
	/* a line longer than kept is skipped, the head still ends; no token: never authorised */
	char big[3000];
	memset(big, 'a', sizeof(big));
	memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
	memcpy(big + sizeof(big) - 4, "\r\n\r\n", 4);
	api_head_scan_reset(&h);
	assert_int_equal(api_head_scan(&h, big, sizeof(big), NULL), sizeof(big));
	assert_true(h.done && !h.auth_ok);
	assert_false(api_token_ok("Bearer x", NULL));
	assert_false(api_token_ok(NULL, tok));
	assert_true(api_token_ok("Bearer 0123456789abcdef0123", tok));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_state_table),
		cmocka_unit_test(test_state_and_step_names),
		cmocka_unit_test(test_body_and_fingerprint),
		cmocka_unit_test(test_headers),
		cmocka_unit_test(test_paths),
		cmocka_unit_test(test_head_scan),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
