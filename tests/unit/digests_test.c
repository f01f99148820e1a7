/* Unit tests for release/digests.c: objstore_parse_digests, the one parser of the
 * missing-list body {"digests":[hex…]} that the agent's and the controller's
 * POST /v1/objects/missing share — what it accepts, what it refuses with which code
 * (CAIRN_EINPUT → 400, E2BIG → 413) and message, and its bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "release/release.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define D1 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define D2 "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"

static void digests_bad_n(const char *body, size_t n, int code, const char *want)
{
	struct objstore_digests d = {NULL, 7};
	struct err e = {0};
	assert_true(objstore_parse_digests(body, n, &d, &e) < 0);
	if (e.code != code)
		fail_msg("'%s': code %d, wanted %d (%s)", body, e.code, code, e.msg);
	if (!strstr(e.msg, want))
		fail_msg("'%s': message '%s' lacks '%s'", body, e.msg, want);
	assert_null(d.v); /* untouched on failure */
	assert_int_equal(d.n, 7);
}

static void digests_bad(const char *body, int code, const char *want)
{
	digests_bad_n(body, strlen(body), code, want);
}

static void test_digests_accepted(void **state)
{
	struct objstore_digests d;
	struct err e = {0};
	(void)state;
	/* body order kept; a digest asked twice is kept twice (the answer repeats it) */
	const char *ok = "{\"digests\":[\"" D1 "\",\"" D2 "\",\"" D1 "\"]}";
	assert_int_equal(objstore_parse_digests(ok, strlen(ok), &d, &e), 0);
	assert_int_equal(d.n, 3);
	assert_string_equal(d.v[0], D1);
	assert_string_equal(d.v[1], D2);
	assert_string_equal(d.v[2], D1);
	objstore_digests_done(&d);
	assert_null(d.v);
	assert_int_equal(d.n, 0);
	objstore_digests_done(&d); /* twice is harmless */

	assert_int_equal(objstore_parse_digests("{\"digests\":[]}", 14, &d, &e), 0);
	assert_int_equal(d.n, 0);
	objstore_digests_done(&d);
	/* white space anywhere JSON allows it */
	const char *sp = " {\n \"digests\" : [ \"" D2 "\" ]\n}\n";
	assert_int_equal(objstore_parse_digests(sp, strlen(sp), &d, &e), 0);
	assert_int_equal(d.n, 1);
	assert_string_equal(d.v[0], D2);
	objstore_digests_done(&d);
	/* the error is untouched on success */
	assert_int_equal(e.code, 0);
	assert_string_equal(e.msg, "");
}

static void test_digests_refused(void **state)
{
	(void)state;
	/* not JSON, not an object: 400 */
	digests_bad("", CAIRN_EINPUT, "not JSON");
	digests_bad("nope", CAIRN_EINPUT, "not JSON");
	digests_bad("{\"digests\":[", CAIRN_EINPUT, "not JSON");
	digests_bad("[]", CAIRN_EINPUT, "JSON object");
	digests_bad("\"" D1 "\"", CAIRN_EINPUT, "not JSON"); /* jansson: an object or array */
	/* the list: present, an array, nothing beside it, no duplicate key */
	digests_bad("{}", CAIRN_EINPUT, "\"digests\" must be an array");
	digests_bad("{\"digests\":null}", CAIRN_EINPUT, "\"digests\" must be an array");
	digests_bad("{\"digests\":\"" D1 "\"}", CAIRN_EINPUT, "must be an array");
	digests_bad("{\"digests\":{}}", CAIRN_EINPUT, "must be an array");
	digests_bad("{\"digests\":[],\"more\":1}", CAIRN_EINPUT, "unknown key \"more\"");
	digests_bad("{\"Digests\":[]}", CAIRN_EINPUT, "unknown key \"Digests\"");
	digests_bad("{\"digests\":[],\"digests\":[]}", CAIRN_EINPUT, "not JSON");
	/* each entry: a string of exactly 64 lowercase hex; the index is named */
	digests_bad("{\"digests\":[1]}", CAIRN_EINPUT, "digests[0]");
	digests_bad("{\"digests\":[null]}", CAIRN_EINPUT, "digests[0]");
	digests_bad("{\"digests\":[[\"" D1 "\"]]}", CAIRN_EINPUT, "digests[0]");
	digests_bad("{\"digests\":[\"" D1
		    "\",\"E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855\"]}",
		    CAIRN_EINPUT, "digests[1]");
	digests_bad("{\"digests\":[\"" D1 "\",\"" D2 "\",\"e3b0\"]}", CAIRN_EINPUT, "digests[2]");
	digests_bad("{\"digests\":[\"" D1 "0\"]}", CAIRN_EINPUT, "digests[0]");
	digests_bad("{\"digests\":[\"sha256:" D1 "\"]}", CAIRN_EINPUT, "64 lowercase hex");
	digests_bad("{\"digests\":[\"g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"]}",
		    CAIRN_EINPUT, "digests[0]");
	digests_bad("{\"digests\":[\"" D1 "\\u0000\"]}", CAIRN_EINPUT, "not JSON");
	/* bytes past the stated length are not read: a cut body is not JSON */
	const char *ok = "{\"digests\":[\"" D1 "\"]}";
	digests_bad_n(ok, strlen(ok) - 1, CAIRN_EINPUT, "not JSON");
}

/* {"digests":["D2",… count times]} */
static char *list_of(size_t count, size_t *out_n)
{
	size_t cap = count * (HASH_HEX_LEN + 3) + 32, n = 0;
	char *b = malloc(cap);
	assert_non_null(b);
	n += (size_t)snprintf(b + n, cap - n, "{\"digests\":[");
	for (size_t i = 0; i < count; i++)
		n += (size_t)snprintf(b + n, cap - n, "%s\"%s\"", i ? "," : "", D2);
	n += (size_t)snprintf(b + n, cap - n, "]}");
	*out_n = n;
	return b;
}

static void test_digests_limits(void **state)
{
	struct objstore_digests d;
	struct err e = {0};
	size_t n;
	char *b;
	(void)state;
	/* exactly OBJSTORE_DIGESTS_MAX fits in OBJSTORE_DIGESTS_BODY_MAX */
	b = list_of(OBJSTORE_DIGESTS_MAX, &n);
	assert_true(n <= OBJSTORE_DIGESTS_BODY_MAX);
	assert_int_equal(objstore_parse_digests(b, n, &d, &e), 0);
	assert_int_equal(d.n, OBJSTORE_DIGESTS_MAX);
	assert_string_equal(d.v[OBJSTORE_DIGESTS_MAX - 1], D2);
	objstore_digests_done(&d);
	free(b);
	/* one more is refused by count (413), and the message names the bound */
	b = list_of(OBJSTORE_DIGESTS_MAX + 1, &n);
	assert_true(n <= OBJSTORE_DIGESTS_BODY_MAX);
	digests_bad_n(b, n, E2BIG, "at most 100000 per request");
	free(b);
	/* a body over the byte bound is refused before it is parsed (413) */
	digests_bad_n("{}", OBJSTORE_DIGESTS_BODY_MAX + 1, E2BIG, "larger than");
	/* a body of the bound itself is read (here: padding, then the list) */
	b = malloc(OBJSTORE_DIGESTS_BODY_MAX);
	assert_non_null(b);
	memset(b, ' ', OBJSTORE_DIGESTS_BODY_MAX);
	const char *tail = "{\"digests\":[\"" D1 "\"]}";
	memcpy(b + OBJSTORE_DIGESTS_BODY_MAX - strlen(tail), tail, strlen(tail));
	assert_int_equal(objstore_parse_digests(b, OBJSTORE_DIGESTS_BODY_MAX, &d, &e), 0);
	assert_int_equal(d.n, 1);
	objstore_digests_done(&d);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_digests_accepted),
	    cmocka_unit_test(test_digests_refused),
	    cmocka_unit_test(test_digests_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
