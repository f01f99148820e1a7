/* Unit tests for controller/body-objects.c and the object routes: the release-registration
 * body (id forms, tag rules) and path routing of /v1/objects/… and /v1/releases. (The
 * missing-list body is objstore_parse_digests: tests/unit/digests_test.c.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "controller/controller.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define D1 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define D2 "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"

static void test_release_body(void **state)
{
	struct api_release_body b;
	struct err e;
	(void)state;
	const char *a = "{\"id\":\"sha256:" D1 "\",\"tag\":\"v1.2\"}";
	assert_int_equal(api_parse_release_body(a, strlen(a), &b, &e), 0);
	assert_string_equal(b.hex, D1);
	assert_string_equal(b.tag, "v1.2");
	const char *c = "{\"id\":\"" D2 "\",\"tag\":null}";
	assert_int_equal(api_parse_release_body(c, strlen(c), &b, &e), 0);
	assert_string_equal(b.hex, D2);
	assert_string_equal(b.tag, "");
	static const char *const bad[] = {
	    "{}",
	    "{\"id\":\"sha256:\"}",
	    "{\"id\":\"sha256:" D1 "x\"}",
	    "{\"id\":\"sha512:" D1 "\"}",
	    "{\"id\":7}",
	    "{\"id\":\"" D1 "\",\"tag\":\"\"}",
	    "{\"id\":\"" D1 "\",\"tag\":\"a/b\"}",
	    "{\"id\":\"" D1 "\",\"tag\":\"a:b\"}",
	    "{\"id\":\"" D1 "\",\"tag\":\"a b\"}",
	    "{\"id\":\"" D1 "\",\"tag\":\"a\\u0000b\"}",
	    "{\"id\":\"" D1 "\",\"tag\":3}",
	    "{\"id\":\"" D1 "\",\"force\":true}",
	    "[\"" D1 "\"]",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		if (api_parse_release_body(bad[i], strlen(bad[i]), &b, &e) == 0)
			fail_msg("accepted %s", bad[i]);
		assert_int_equal(e.code, CAIRN_EINPUT);
	}
	char tag[STORE_TAG_MAX + 2];
	char body[STORE_TAG_MAX + 128];
	memset(tag, 'x', sizeof(tag) - 1);
	tag[STORE_TAG_MAX + 1] = '\0';
	snprintf(body, sizeof(body), "{\"id\":\"" D1 "\",\"tag\":\"%s\"}", tag);
	assert_true(api_parse_release_body(body, strlen(body), &b, &e) < 0);
	tag[STORE_TAG_MAX] = '\0';
	snprintf(body, sizeof(body), "{\"id\":\"" D1 "\",\"tag\":\"%s\"}", tag);
	assert_int_equal(api_parse_release_body(body, strlen(body), &b, &e), 0);
	assert_int_equal(strlen(b.tag), STORE_TAG_MAX);
}

static void test_object_paths(void **state)
{
	struct api_path p;
	(void)state;
	api_match_path("/v1/objects/missing", &p);
	assert_int_equal(p.route, ROUTE_OBJECTS_MISSING);
	api_match_path("/v1/objects/" D1, &p);
	assert_int_equal(p.route, ROUTE_OBJECT);
	assert_string_equal(p.hex, D1);
	api_match_path("/v1/objects/" D1 "?x=1", &p);
	assert_string_equal(p.hex, D1);
	api_match_path("/v1/objects/abc", &p);
	assert_int_equal(p.route, ROUTE_OBJECT);
	assert_string_equal(p.hex, "");
	api_match_path("/v1/objects/" D1 "/x", &p);
	assert_int_equal(p.route, ROUTE_OBJECT);
	assert_string_equal(p.hex, "");
	api_match_path("/v1/objects/", &p);
	assert_int_equal(p.route, ROUTE_NONE);
	api_match_path("/v1/releases", &p);
	assert_int_equal(p.route, ROUTE_RELEASES);
	api_match_path("/v1/releases/x", &p);
	assert_int_equal(p.route, ROUTE_NONE);
	assert_string_equal(api_route_name(ROUTE_OBJECT), "object");
	assert_string_equal(api_route_name(ROUTE_OBJECTS_MISSING), "objects_missing");
	assert_string_equal(api_route_name(ROUTE_RELEASES), "releases");
	assert_true(api_digest_ok(D1, HASH_HEX_LEN));
	assert_false(api_digest_ok(D1, HASH_HEX_LEN - 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_release_body),
	    cmocka_unit_test(test_object_paths),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
