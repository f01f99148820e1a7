/* Unit tests for release/manifest.c: strict parsing and validation of outside manifest bytes
 * (order, duplicates, unsafe paths, parents, escaping symlinks, digests) and the canonical
 * round trip serialise(parse(x)) == x. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "release/release.h"

#include <stdlib.h>
#include <string.h>

#define D1 "1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"

/* A canonical manifest around `entries` (the JSON of the entries array's elements). */
static char *doc(const char *entries)
{
	return xasprintf(
	    "{\"app\":\"demo\",\"deps\":[],\"entries\":[%s],\"run\":{\"command\":"
	    "[\"python3\",\"app.py\"],\"env\":{},\"stop_timeout_ms\":10000},\"version\":1}",
	    entries);
}

#define FILE_E(p)                                                                                  \
	"{\"digest\":\"" D1 "\",\"mode\":420,\"path\":\"" p "\",\"size\":3,\"type\":\"file\"}"
#define DIR_E(p)     "{\"mode\":493,\"path\":\"" p "\",\"type\":\"dir\"}"
#define LINK_E(p, t) "{\"path\":\"" p "\",\"target\":\"" t "\",\"type\":\"link\"}"

/* Parses entries; returns the result and leaves the message in *e. */
static int parse_entries(const char *entries, struct err *e)
{
	char *s = doc(entries);
	struct manifest *m = NULL;
	int r = manifest_parse(s, strlen(s), &m, e);
	manifest_free(m);
	free(s);
	return r;
}

static void expect_refused(const char *entries, const char *msg_part)
{
	struct err e;
	int r = parse_entries(entries, &e);
	if (r != -CAIRN_EINPUT || !strstr(e.msg, msg_part))
		fail_msg("entries %s: got %d \"%s\", wanted a refusal with \"%s\"", entries, r,
			 r < 0 ? e.msg : "", msg_part);
}

static void expect_ok(const char *entries)
{
	struct err e;
	int r = parse_entries(entries, &e);
	if (r != 0)
		fail_msg("entries %s: refused: %s", entries, e.msg);
}

static void test_canonical_round_trip(void **state)
{
	const char *docs[] = {
	    "{\"app\":\"demo\",\"deps\":[{\"ecosystem\":\"python\",\"name\":\"eventlet\","
	    "\"source\":"
	    "\"requirements.txt\",\"version\":\"0.20.0\"}],\"entries\":[" FILE_E(
		"app.py") "," LINK_E("cur",
				     "lib/x.py") "," DIR_E("lib") ","
								  "{\"digest\":\"" D2
								  "\",\"mode\":493,\"path\":\"lib/"
								  "x.py\",\"size\":0,\"type\":"
								  "\"file\"},"
								  "{\"digest\":\"" D2
								  "\",\"mode\":420,\"path\":\"lib/"
								  "\xc3\xa9t\xc3\xa9 "
								  "\\\"q\\\".txt\","
								  "\"size\":0,\"type\":\"file\"}],"
								  "\"run\":{\"command\":["
								  "\"python3\",\"app.py\"],\"env\":"
								  "{\"A\":\"1\",\"B\":\"x y\"},"
								  "\"stop_timeout_ms\":2500},"
								  "\"version\":1}",
	    "{\"app\":\"empty\",\"deps\":[],\"entries\":[],\"run\":{\"command\":[],\"env\":{},"
	    "\"stop_timeout_ms\":0},\"version\":1}",
	};
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(docs); i++) {
		struct manifest *m = NULL;
		struct err e;
		struct buf b;
		if (manifest_parse(docs[i], strlen(docs[i]), &m, &e) != 0)
			fail_msg("doc %zu: %s", i, e.msg);
		buf_init(&b, MANIFEST_MAX_BYTES);
		assert_int_equal(manifest_serialize(m, &b), 0);
		assert_string_equal(buf_str(&b), docs[i]);
		buf_done(&b);
		manifest_free(m);
	}
}

static void test_non_canonical_but_valid(void **state)
{
	/* other key order, whitespace: accepted, and serialised into the canonical form */
	const char *pretty =
	    "{ \"version\": 1, \"run\": { \"stop_timeout_ms\": 10000, \"env\": {\"Z\": "
	    "\"1\", \"A\": \"2\"}, \"command\": [\"python3\", \"app.py\"] },\n"
	    "  \"entries\": [ {\"type\": \"file\", \"size\": 3, \"path\": \"app.py\", "
	    "\"mode\": 420, \"digest\": \"" D1 "\"} ], \"deps\": [], \"app\": \"demo\" }";
	const char *canon = "{\"app\":\"demo\",\"deps\":[],\"entries\":[" FILE_E(
	    "app.py") "],\"run\":"
		      "{\"command\":[\"python3\",\"app.py\"],\"env\":{\"A\":\"2\",\"Z\":\"1\"},"
		      "\"stop_timeout_ms\":10000},\"version\":1}";
	struct manifest *m = NULL, *m2 = NULL;
	struct err e;
	struct buf b;
	(void)state;
	assert_int_equal(manifest_parse(pretty, strlen(pretty), &m, &e), 0);
	assert_string_equal(m->run_env.keys[0], "A");
	buf_init(&b, MANIFEST_MAX_BYTES);
	assert_int_equal(manifest_serialize(m, &b), 0);
	assert_string_equal(buf_str(&b), canon);
	assert_int_equal(manifest_parse(b.data, b.len, &m2, &e), 0);
	buf_done(&b);
	manifest_free(m);
	manifest_free(m2);
}

static void test_order_and_duplicates(void **state)
{
	(void)state;
	expect_refused(FILE_E("b") "," FILE_E("a"), "not sorted or repeated at \"a\"");
	expect_refused(FILE_E("a") "," FILE_E("a"), "not sorted or repeated at \"a\"");
	/* bytewise order: "a-b" < "a/b" < "a0"; a dir "a" sorts before "a-b" */
	expect_ok(DIR_E("a") "," FILE_E("a-b") "," FILE_E("a/b") "," FILE_E("a0"));
	expect_refused(DIR_E("a") "," FILE_E("a/b") "," FILE_E("a-b"), "not sorted");
	/* unsorted deep entries are reported as unsorted, not as a missing parent */
	expect_refused(FILE_E("lib/x") "," DIR_E("lib"), "not sorted or repeated at \"lib\"");
	expect_refused(FILE_E("lib/x") "," DIR_E("lib") "," LINK_E("cur", "lib") "," FILE_E("app"),
		       "not sorted or repeated at \"lib\"");
	/* duplicate keys inside JSON */
	expect_refused("{\"digest\":\"" D1
		       "\",\"mode\":420,\"path\":\"a\",\"path\":\"b\",\"size\":3,"
		       "\"type\":\"file\"}",
		       "not valid JSON");
}

static void test_unsafe_paths(void **state)
{
	const char *bad[] = {"/abs", "../x", "a/../b", "./a", "a/.", "a//b", "a/", "", ".", ".."};
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		char *en =
		    xasprintf("{\"digest\":\"" D1 "\",\"mode\":420,\"path\":\"%s\",\"size\":3,"
			      "\"type\":\"file\"}",
			      bad[i]);
		expect_refused(en, "unsafe path");
		free(en);
	}
	/* a NUL inside a path */
	expect_refused("{\"digest\":\"" D1 "\",\"mode\":420,\"path\":\"a\\u0000b\",\"size\":3,"
		       "\"type\":\"file\"}",
		       "not valid JSON");
	expect_ok(FILE_E("..a") "," FILE_E(".hidden") "," FILE_E("a..b"));
}

static void test_parents(void **state)
{
	(void)state;
	expect_refused(FILE_E("lib/x.py"), "\"lib/x.py\" has no parent directory entry");
	expect_refused(FILE_E("lib") "," FILE_E("lib/x.py"), "\"lib/x.py\" has no parent");
	expect_refused(LINK_E("lib", "d") "," FILE_E("lib/x.py"), "\"lib/x.py\" has no parent");
	expect_refused(DIR_E("a") "," FILE_E("a/b/c"), "\"a/b/c\" has no parent");
	expect_ok(DIR_E("a") "," DIR_E("a/b") "," FILE_E("a/b/c"));
}

static void test_links(void **state)
{
	char *longt;
	(void)state;
	expect_ok(LINK_E("a", "b") "," FILE_E("b"));
	expect_ok(DIR_E("d") "," LINK_E("d/l", "../x") "," FILE_E("x"));
	expect_ok(LINK_E("a", "."));
	expect_ok(LINK_E("a", "dangling/but/inside"));
	/* a link to a link (as the last component) stays inside: each one is checked */
	expect_ok(LINK_E("a", ".") "," LINK_E("c", "a"));
	expect_refused(LINK_E("a", "/etc/passwd"), "symlink \"a\" points outside the release");
	expect_refused(LINK_E("a", ".."), "points outside");
	expect_refused(LINK_E("a", "../.."), "points outside");
	expect_refused(LINK_E("a", "x/../../y"), "points outside");
	expect_refused(DIR_E("d") "," LINK_E("d/l", "../../x"), "symlink \"d/l\" points outside");
	expect_refused(LINK_E("a", ""), "points outside");
	expect_refused("{\"path\":\"a\",\"type\":\"link\"}", "has no target");
	/* words that stay inside but resolve through another link: a -> . and b -> a/.. */
	expect_refused(LINK_E("a", ".") "," LINK_E("b", "a/.."), "\"b\" resolves through another");
	expect_refused(DIR_E("d") "," LINK_E("d/up", "..") "," LINK_E("x", "d/up/../.."),
		       "\"x\" resolves through another");
	expect_refused(DIR_E("d") "," LINK_E("d/up", "..") "," LINK_E("x", "d/up/y"),
		       "\"x\" resolves through another");
	expect_refused(LINK_E("a", ".") "," LINK_E("b", "a//.."), "resolves through another");
	/* targets are bounded like paths */
	longt = xmalloc(5000 + 1);
	memset(longt, 'x', 5000);
	longt[5000] = 0;
	{
		char *en = xasprintf("{\"path\":\"a\",\"target\":\"%s\",\"type\":\"link\"}", longt);
		expect_refused(en, "points outside");
		free(en);
	}
	free(longt);
	assert_true(manifest_link_inside("a/b/l", "../../x"));
	assert_false(manifest_link_inside("a/b/l", "../../../x"));
	assert_true(manifest_link_inside("l", "a/./b/../c"));
	assert_false(manifest_link_inside("l", "a/../../c"));
	assert_false(manifest_link_inside("l", "/x"));
}

static void test_bad_fields(void **state)
{
	(void)state;
	expect_refused("{\"digest\":\"" D1
		       "\",\"mode\":420,\"path\":\"a\",\"size\":-1,\"type\":\"file\"}",
		       "bad size or digest");
	expect_refused(
	    "{\"digest\":\"abc\",\"mode\":420,\"path\":\"a\",\"size\":1,\"type\":\"file\"}",
	    "bad size or digest");
	expect_refused("{\"digest\":\""
		       "ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
		       "\",\"mode\":420,\"path\":\"a\",\"size\":1,\"type\":\"file\"}",
		       "bad size or digest");
	expect_refused("{\"digest\":\""
		       "g111111111111111111111111111111111111111111111111111111111111111"
		       "\",\"mode\":420,\"path\":\"a\",\"size\":1,\"type\":\"file\"}",
		       "bad size or digest");
	expect_refused("{\"mode\":420,\"path\":\"a\",\"size\":1,\"type\":\"file\"}",
		       "bad size or digest");
	expect_refused("{\"digest\":\"" D1
		       "\",\"mode\":2541,\"path\":\"a\",\"size\":3,\"type\":\"file\"}",
		       "bad mode");
	expect_refused("{\"mode\":420,\"path\":\"a\",\"type\":\"fifo\"}", "unknown type");
	expect_refused("{\"path\":\"a\"}", "has no type");
	expect_refused("\"a\"", "has no path");
}

static void test_bad_documents(void **state)
{
	const char *bad[][2] = {
	    {"", "not valid JSON"},
	    {"[]", "not a cairn manifest"},
	    {"{\"version\":2}", "not a cairn manifest"},
	    {"{\"version\":1}", "no app"},
	    {"{\"app\":\"a\",\"version\":1}", "no entries"},
	    {"{\"app\":\"a\",\"entries\":[],\"version\":1}", "no run.command"},
	    {"{\"app\":\"a\",\"entries\":[],\"run\":{\"command\":[1]},\"version\":1}",
	     "non-string"},
	    {"{\"app\":\"a\",\"entries\":[],\"run\":{\"command\":[],\"env\":{},"
	     "\"stop_timeout_ms\":-5},\"version\":1}",
	     "stop_timeout_ms"},
	    {"{\"app\":\"a\",\"deps\":[{}],\"entries\":[],\"run\":{\"command\":[],\"env\":{},"
	     "\"stop_timeout_ms\":5},\"version\":1}",
	     "dependency lacks"},
	};
	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct manifest *m = NULL;
		struct err e;
		int r = manifest_parse(bad[i][0], strlen(bad[i][0]), &m, &e);
		if (r != -CAIRN_EINPUT || !strstr(e.msg, bad[i][1]))
			fail_msg("doc %zu: got %d \"%s\", wanted \"%s\"", i, r, r < 0 ? e.msg : "",
				 bad[i][1]);
		assert_null(m);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_canonical_round_trip),
	    cmocka_unit_test(test_non_canonical_but_valid),
	    cmocka_unit_test(test_order_and_duplicates),
	    cmocka_unit_test(test_unsafe_paths),
	    cmocka_unit_test(test_parents),
	    cmocka_unit_test(test_links),
	    cmocka_unit_test(test_bad_fields),
	    cmocka_unit_test(test_bad_documents),
	};
	return cmocka_run_group_tests_name("manifest", tests, NULL, NULL);
}
