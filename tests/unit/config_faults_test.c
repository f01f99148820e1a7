/* Unit tests for the faults: section of cairn.yml (src/config/faults.c): values and defaults,
 * a file holding only faults:, the JSON form, and one test per error kind asserting the exact
 * FILE:LINE:COL and what the message says. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "config/config.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define BASE "app: x\nrun:\n  command: [a]\nlisten: 1\n" /* lines 1-4 */

static const char example[] =
    BASE "faults:\n"                                                     /* 5 */
    "  listen: 127.0.0.1:8474\n"                                         /* 6 */
    "  proxies:\n"                                                       /* 7 */
    "    - name: redis\n"                                                /* 8 */
    "      listen: 127.0.0.1:26379\n"                                    /* 9 */
    "      upstream: 127.0.0.1:6379\n"                                   /* 10 */
    "      enabled: true\n"                                              /* 11 */
    "      toxics:\n"                                                    /* 12 */
    "        - { name: lag, type: latency, stream: downstream, toxicity: 1.0, "
    "attributes: { latency: 100, jitter: 10 } }\n"                       /* 13 */
    "        - { type: reset_peer, stream: upstream, toxicity: 0.5 }\n"  /* 14 */
    "        - { type: latency }\n"                                      /* 15 */
    "    - { name: pg, listen: \"[::1]:0\", upstream: \"db.internal:5432\", enabled: false }\n";

static struct config *parse_ok(const char *text, bool faults_only_ok)
{
	struct config *c = NULL;
	struct err e;
	int r = faults_only_ok ? config_parse_faults("t.yml", text, strlen(text), &c, &e)
			       : config_parse("t.yml", NULL, text, strlen(text), &c, &e);
	if (r < 0)
		fail_msg("unexpected error %d:%d: %s", e.line, e.col, e.msg);
	return c;
}

static void test_example(void **state)
{
	struct config *c = parse_ok(example, false);
	const struct config_fault_proxy *p;
	const struct config_toxic *t;
	(void)state;

	assert_false(c->faults_only);
	assert_string_equal(c->faults.listen, "127.0.0.1:8474");
	assert_int_equal(c->faults.n_proxies, 2);
	p = &c->faults.proxies[0];
	assert_string_equal(p->name, "redis");
	assert_string_equal(p->listen, "127.0.0.1:26379");
	assert_string_equal(p->upstream, "127.0.0.1:6379");
	assert_true(p->enabled);
	assert_int_equal(p->line, 8);
	assert_int_equal(p->col, 7);
	assert_int_equal(p->n_toxics, 3);
	t = &p->toxics[0];
	assert_string_equal(t->name, "lag");
	assert_string_equal(t->type, "latency");
	assert_false(t->upstream);
	assert_true(t->toxicity == 1.0);
	assert_int_equal(t->n_attrs, 2);
	assert_string_equal(t->attrs[0].name, "latency");
	assert_int_equal(t->attrs[0].value, 100);
	assert_string_equal(t->attrs[1].name, "jitter");
	assert_int_equal(t->attrs[1].value, 10);
	assert_int_equal(t->line, 13);
	t = &p->toxics[1];
	assert_string_equal(t->name, "reset_peer_upstream"); /* Toxiproxy's default name */
	assert_true(t->upstream);
	assert_true(t->toxicity == 0.5);
	assert_int_equal(t->n_attrs, 0);
	t = &p->toxics[2];
	assert_string_equal(t->name, "latency_downstream");
	assert_true(t->toxicity == 1.0);
	p = &c->faults.proxies[1];
	assert_string_equal(p->name, "pg");
	assert_string_equal(p->listen, "[::1]:0");
	assert_string_equal(p->upstream, "db.internal:5432");
	assert_false(p->enabled);
	assert_int_equal(p->n_toxics, 0);
	config_free(c);
}

static void test_absent_and_empty(void **state)
{
	struct config *c = parse_ok(BASE, false);
	(void)state;
	assert_null(c->faults.listen);
	assert_int_equal(c->faults.n_proxies, 0);
	config_free(c);
	c = parse_ok(BASE "faults:\n", false);
	assert_null(c->faults.listen);
	config_free(c);
	c = parse_ok(BASE "faults: {listen: \"localhost:0\", proxies: []}\n", false);
	assert_string_equal(c->faults.listen, "localhost:0");
	assert_int_equal(c->faults.n_proxies, 0);
	config_free(c);
}

static void test_faults_only(void **state)
{
	static const char only[] = "faults:\n  proxies:\n"
				   "    - {name: r, listen: \"127.0.0.1:0\", upstream: \"127.0.0.1:1\"}\n";
	struct config *c = parse_ok(only, true);
	struct err e;
	(void)state;
	assert_true(c->faults_only);
	assert_null(c->app);
	assert_int_equal(c->faults.n_proxies, 1);
	config_free(c);
	/* a full cairn.yml read by config_parse_faults is checked whole */
	c = parse_ok(example, true);
	assert_false(c->faults_only);
	assert_string_equal(c->app, "x");
	config_free(c);
	c = NULL;
	assert_int_equal(config_parse_faults("t.yml", "faults: {}\nlisten: 1\n", 20, &c, &e),
			 -CAIRN_EINPUT);
	assert_null(c);
	assert_non_null(strstr(e.msg, "missing required key \"app\""));
	/* and config_parse (cairn check, deploy) never accepts a faults-only file */
	assert_int_equal(config_parse("t.yml", NULL, only, strlen(only), &c, &e), -CAIRN_EINPUT);
	assert_null(c);
	assert_non_null(strstr(e.msg, "missing required key \"app\""));
}

static void test_json(void **state)
{
	struct config *c = parse_ok(example, false);
	json_t *o = config_to_json(c), *f, *p0, *t0;
	(void)state;
	assert_non_null(o);
	f = json_object_get(o, "faults");
	assert_string_equal(json_string_value(json_object_get(f, "listen")), "127.0.0.1:8474");
	p0 = json_array_get(json_object_get(f, "proxies"), 0);
	assert_string_equal(json_string_value(json_object_get(p0, "upstream")), "127.0.0.1:6379");
	assert_true(json_is_true(json_object_get(p0, "enabled")));
	t0 = json_array_get(json_object_get(p0, "toxics"), 0);
	assert_string_equal(json_string_value(json_object_get(t0, "stream")), "downstream");
	assert_int_equal(
	    json_integer_value(json_object_get(json_object_get(t0, "attributes"), "latency")), 100);
	json_decref(o);
	config_free(c);
	c = parse_ok(BASE, false);
	o = config_to_json(c);
	f = json_object_get(o, "faults");
	assert_true(json_is_null(json_object_get(f, "listen")));
	assert_int_equal(json_array_size(json_object_get(f, "proxies")), 0);
	json_decref(o);
	config_free(c);
}

/* ---- errors ---------------------------------------------------------------------------------- */

#define PX "faults:\n  proxies:\n    - name: r\n      listen: 127.0.0.1:26379\n" \
	   "      upstream: 127.0.0.1:6379\n" /* lines 5-9 of BASE PX */
#define TX PX "      toxics:\n" /* line 10; toxics from line 11 */

struct error_case {
	const char *name;
	const char *text;
	int line, col;
	const char *want;
	const char *want2;
};

static const struct error_case error_cases[] = {
    {"unknown_key_faults", BASE "faults:\n  lisen: 127.0.0.1:1\n", 6, 3,
     "unknown key \"lisen\" in faults; did you mean \"listen\"?", NULL},
    {"faults_not_map", BASE "faults: [a]\n", 5, 9, "faults must be a mapping", "found a list"},
    {"api_listen_bad", BASE "faults:\n  listen: 8474\n", 6, 11,
     "faults.listen: \"8474\" is not HOST:PORT", "127.0.0.1:26379"},
    {"api_listen_port_range", BASE "faults:\n  listen: 127.0.0.1:70000\n", 6, 11,
     "faults.listen: port 70000 is out of range; it must be between 0 and 65535", NULL},
    {"proxies_not_list", BASE "faults:\n  proxies: {name: r}\n", 6, 12,
     "faults.proxies must be a list of proxies", "found a mapping"},
    {"proxy_not_map", BASE "faults:\n  proxies: [redis]\n", 6, 13,
     "faults.proxies[0] must be a mapping", "found \"redis\""},
    {"proxy_unknown_key", BASE PX "      upsteam: x\n", 10, 7,
     "unknown key \"upsteam\" in faults.proxies[0]; did you mean \"upstream\"?", NULL},
    {"proxy_missing_name", BASE "faults:\n  proxies:\n    - {listen: \"127.0.0.1:1\"}\n", 7, 7,
     "missing required key \"name\" in faults.proxies[0]", "upstream: \"127.0.0.1:6379\""},
    {"proxy_missing_upstream", BASE "faults:\n  proxies:\n    - {name: r, listen: \"h:1\"}\n",
     7, 7, "missing required key \"upstream\" in faults.proxies[0]", NULL},
    {"proxy_bad_name", BASE "faults:\n  proxies:\n    - {name: \"a/b\", listen: x, upstream: y}\n",
     7, 14, "faults.proxies[0].name: \"a/b\" is not a valid name", NULL},
    {"proxy_listen_no_port", BASE "faults:\n  proxies:\n    - {name: r, listen: localhost, "
     "upstream: \"h:1\"}\n", 7, 25, "faults.proxies[0].listen: \"localhost\" is not HOST:PORT",
     NULL},
    {"proxy_listen_bad_host", BASE "faults:\n  proxies:\n    - {name: r, listen: \"no host:1\", "
     "upstream: \"h:1\"}\n", 7, 25, "is not HOST:PORT", NULL},
    {"proxy_upstream_port_zero", BASE "faults:\n  proxies:\n    - {name: r, listen: \"h:0\", "
     "upstream: \"h:0\"}\n", 7, 42,
     "faults.proxies[0].upstream: port 0 is out of range; it must be between 1 and 65535", NULL},
    {"proxy_upstream_bad_ipv6", BASE "faults:\n  proxies:\n    - {name: r, listen: \"h:0\", "
     "upstream: \"[::1:6379\"}\n", 7, 42, "is not HOST:PORT", NULL},
    {"proxy_enabled_not_bool", BASE PX "      enabled: yes\n", 10, 16,
     "faults.proxies[0].enabled: \"yes\" is not a boolean", NULL},
    {"proxy_duplicate_name",
     BASE PX "    - {name: r, listen: \"127.0.0.1:0\", upstream: \"127.0.0.1:1\"}\n", 10, 7,
     "faults.proxies[1]: proxy name \"r\" is used twice (first at line 7)", NULL},
    {"proxy_duplicate_listen",
     BASE PX "    - {name: s, listen: \"127.0.0.1:26379\", upstream: \"127.0.0.1:1\"}\n", 10, 25,
     "\"127.0.0.1:26379\" is already the listen address of proxy r (line 7)", NULL},
    {"proxy_listen_is_api",
     BASE "faults:\n  listen: \"127.0.0.1:9000\"\n  proxies:\n"
     "    - {name: s, listen: \"127.0.0.1:9000\", upstream: \"127.0.0.1:1\"}\n", 8, 25,
     "is the address of the fault API (faults.listen, line 6)", NULL},
    {"toxics_not_list", BASE PX "      toxics: {type: latency}\n", 10, 15,
     "faults.proxies[0].toxics must be a list", NULL},
    {"toxic_missing_type", BASE TX "        - {name: lag}\n", 11, 11,
     "missing required key \"type\" in faults.proxies[0].toxics[0]", "type: latency"},
    {"toxic_unknown_type", BASE TX "        - {type: latncy}\n", 11, 18,
     "faults.proxies[0].toxics[0].type: \"latncy\" is not one of noop, latency, bandwidth, "
     "slow_close, timeout, reset_peer, slicer, limit_data; did you mean \"latency\"?", NULL},
    {"toxic_type_down", BASE TX "        - {type: down}\n", 11, 18,
     "down is not a toxic; write enabled: false on the proxy", NULL},
    {"toxic_unknown_attribute", BASE TX "        - {type: latency, attributes: {latncy: 5}}\n",
     11, 40,
     "unknown key \"latncy\" in faults.proxies[0].toxics[0].attributes; did you mean "
     "\"latency\"?", NULL},
    {"toxic_attribute_of_other_type",
     BASE TX "        - {type: bandwidth, attributes: {latency: 5}}\n", 11, 42,
     "unknown key \"latency\" in faults.proxies[0].toxics[0].attributes", "rate"},
    {"toxic_noop_attribute", BASE TX "        - {type: noop, attributes: {x: 1}}\n", 11, 37,
     "a noop toxic has no attributes; remove x", NULL},
    {"toxic_attribute_negative",
     BASE TX "        - {type: latency, attributes: {latency: -5}}\n", 11, 49,
     "faults.proxies[0].toxics[0].attributes.latency: -5 is too small; it must be at least 0",
     NULL},
    {"toxic_attribute_not_integer",
     BASE TX "        - {type: latency, attributes: {latency: 1.5}}\n", 11, 49,
     "attributes.latency: \"1.5\" is not a whole number", NULL},
    {"toxic_stream", BASE TX "        - {type: latency, stream: down}\n", 11, 35,
     "faults.proxies[0].toxics[0].stream: \"down\" is not one of downstream, upstream", NULL},
    {"toxic_toxicity_range", BASE TX "        - {type: latency, toxicity: 1.5}\n", 11, 37,
     "faults.proxies[0].toxics[0].toxicity: 1.5 is out of range; it is a probability", NULL},
    {"toxic_toxicity_negative", BASE TX "        - {type: latency, toxicity: -1}\n", 11, 37,
     "toxicity: \"-1\" is not a number", NULL},
    {"toxic_duplicate_default_name",
     BASE TX "        - {type: latency}\n        - {type: latency, attributes: {latency: 1}}\n",
     12, 11,
     "toxics[1]: toxic name \"latency_downstream\" is used twice in proxy r (first at line 11)",
     "give one a name"},
    {"toxic_duplicate_across_streams",
     BASE TX "        - {name: a, type: latency}\n        - {name: a, type: timeout, "
     "stream: upstream}\n", 12, 11, "toxic name \"a\" is used twice in proxy r", NULL},
    {"toxic_bad_name", BASE TX "        - {name: \"x y\", type: latency}\n", 11, 18,
     "faults.proxies[0].toxics[0].name: \"x y\" is not a valid name", NULL},
};

static void test_error_case(void **state)
{
	const struct error_case *k = *state;
	struct config *c = NULL;
	struct err e;
	int r = config_parse("t.yml", NULL, k->text, strlen(k->text), &c, &e);

	if (r >= 0)
		fail_msg("%s: parsed without an error", k->name);
	assert_null(c);
	assert_int_equal(r, -CAIRN_EINPUT);
	assert_string_equal(e.file, "t.yml");
	if (e.line != k->line || e.col != k->col)
		fail_msg("%s: at %d:%d, wanted %d:%d (%s)", k->name, e.line, e.col, k->line, k->col,
			 e.msg);
	if (!strstr(e.msg, k->want))
		fail_msg("%s: message \"%s\" lacks \"%s\"", k->name, e.msg, k->want);
	if (k->want2 && !strstr(e.msg, k->want2))
		fail_msg("%s: message \"%s\" lacks \"%s\"", k->name, e.msg, k->want2);
}

/* Too many toxics on one stream: the engine's limit is checked in the file. */
static void test_toxics_limit(void **state)
{
	struct buf b;
	struct config *c = NULL;
	struct err e;
	(void)state;
	buf_init(&b, 1 << 20);
	assert_int_equal(buf_adds(&b, BASE TX), 0);
	for (int i = 0; i <= CONFIG_FAULT_TOXICS_MAX; i++)
		assert_true(buf_addf(&b, "        - {name: t%d, type: noop}\n", i) >= 0);
	assert_int_equal(config_parse("t.yml", NULL, buf_str(&b), b.len, &c, &e), -CAIRN_EINPUT);
	assert_int_equal(e.line, 11 + CONFIG_FAULT_TOXICS_MAX);
	assert_non_null(strstr(e.msg, "more than 32 toxics on one stream"));
	buf_done(&b);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_example),	   cmocka_unit_test(test_absent_and_empty),
	    cmocka_unit_test(test_faults_only),	   cmocka_unit_test(test_json),
	    cmocka_unit_test(test_toxics_limit),
	};
	enum { N = sizeof(error_cases) / sizeof(error_cases[0]) };
	struct CMUnitTest errors[N];
	int failed;

	for (size_t i = 0; i < N; i++)
		errors[i] = (struct CMUnitTest){error_cases[i].name, test_error_case, NULL, NULL,
						(void *)&error_cases[i]};
	failed = cmocka_run_group_tests_name("config_faults", tests, NULL, NULL);
	failed += _cmocka_run_group_tests("config_faults_errors", errors, N, NULL, NULL);
	return failed ? 1 : 0;
}
