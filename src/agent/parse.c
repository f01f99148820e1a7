/* parse: the agent API's request bodies → typed structs, with a clear error for anything
 * else. Outside bytes: bounded, never crashes (fuzz/fuzz_agent_api.c). No libevent here. */
#include "agent/agent-internal.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define BODY_MAX       AGENT_BODY_MAX
#define ENV_VALUE_MAX  65536
#define TIMEOUT_MAX_MS (24LL * 3600 * 1000)

static const struct {
	const char *name;
	int sig;
} signals[] = {
    {"SIGTERM", SIGTERM}, {"SIGINT", SIGINT},	{"SIGQUIT", SIGQUIT}, {"SIGHUP", SIGHUP},
    {"SIGUSR1", SIGUSR1}, {"SIGUSR2", SIGUSR2}, {"SIGKILL", SIGKILL},
};

int agent_signal_parse(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(signals); i++)
		if (!strcmp(name, signals[i].name))
			return signals[i].sig;
	return -1;
}

const char *agent_signal_name(int sig)
{
	for (size_t i = 0; i < ARRAY_SIZE(signals); i++)
		if (signals[i].sig == sig)
			return signals[i].name;
	return "SIGTERM";
}

bool agent_name_ok(const char *s)
{
	return strlen(s) <= AGENT_NAME_MAX && name_app_ok(s, strlen(s)); /* base/names.c */
}

/* Parses an object body; an empty body is {}. */
static int parse_object(const char *body, size_t n, json_t **out, struct err *e)
{
	json_error_t je;
	json_t *j;

	if (n > BODY_MAX)
		return err_set(e, CAIRN_EINPUT, "request body is larger than %d bytes", BODY_MAX);
	if (n == 0) {
		*out = json_object();
		return 0;
	}
	j = json_loadb(body, n, JSON_REJECT_DUPLICATES, &je);
	if (!j)
		return err_set(e, CAIRN_EINPUT, "request body is not JSON: %s (at byte %d)",
			       je.text, je.position);
	if (!json_is_object(j)) {
		json_decref(j);
		return err_set(e, CAIRN_EINPUT, "request body must be a JSON object");
	}
	*out = j;
	return 0;
}

/* Refuses keys outside `known` (NULL-terminated). */
static int check_keys(json_t *o, const char *const *known, struct err *e)
{
	const char *k;
	json_t *v;
	json_object_foreach(o, k, v)
	{
		bool ok = false;
		for (size_t i = 0; known[i]; i++)
			ok |= !strcmp(k, known[i]);
		if (!ok)
			return err_set(e, CAIRN_EINPUT,
				       "unknown field \"%.64s\" in the request body", k);
	}
	return 0;
}

static int get_ms(json_t *o, const char *key, int64_t def, int64_t *out, struct err *e)
{
	json_t *v = json_object_get(o, key);
	if (!v || json_is_null(v)) {
		*out = def;
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    json_integer_value(v) > TIMEOUT_MAX_MS)
		return err_set(e, CAIRN_EINPUT,
			       "\"%s\" must be an integer of milliseconds (0 to %lld)", key,
			       TIMEOUT_MAX_MS);
	*out = json_integer_value(v);
	return 0;
}

static bool env_key_ok(const char *k)
{
	if (!*k || strlen(k) > 256 || (*k >= '0' && *k <= '9'))
		return false;
	for (const char *p = k; *p; p++)
		if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		      (*p >= '0' && *p <= '9') || *p == '_'))
			return false;
	return true;
}

void start_req_done(struct start_req *r)
{
	json_decref(r->env);
	r->env = NULL;
}

int agent_parse_start(const char *body, size_t n, struct start_req *out, struct err *e)
{
	static const char *const known[] = {"release",	   "count",    "env",
					    "stop_timeout_ms", "stop_signal", "data_dir",
					    "reserved_ports", NULL};
	struct start_req r = {.count = 1, .stop_timeout_ms = -1, .stop_signal = SIGTERM};
	json_t *o = NULL, *v;
	int rc;

	if ((rc = parse_object(body, n, &o, e)) < 0)
		return rc;
	if ((rc = check_keys(o, known, e)) < 0)
		goto fail;
	v = json_object_get(o, "release");
	const char *rel = json_string_value(v);
	if (!rel) {
		rc = err_set(e, CAIRN_EINPUT,
			     "\"release\" (a release id sha256:<64 hex>) is required");
		goto fail;
	}
	const char *hex = str_starts(rel, "sha256:") ? rel + 7 : rel;
	if (strlen(hex) != HASH_HEX_LEN || !hash_is_hex(hex, HASH_HEX_LEN)) {
		rc = err_set(e, CAIRN_EINPUT,
			     "\"release\" must be a full release id (sha256:<64 hex>)");
		goto fail;
	}
	snprintf(r.release, sizeof(r.release), "sha256:%s", hex);
	v = json_object_get(o, "count");
	if (v && !json_is_null(v)) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > AGENT_MAX_COUNT) {
			rc = err_set(e, CAIRN_EINPUT, "\"count\" must be an integer from 1 to %d",
				     AGENT_MAX_COUNT);
			goto fail;
		}
		r.count = (int)json_integer_value(v);
	}
	if ((rc = get_ms(o, "stop_timeout_ms", -1, &r.stop_timeout_ms, e)) < 0)
		goto fail;
	v = json_object_get(o, "stop_signal");
	if (v && !json_is_null(v)) {
		r.stop_signal = json_is_string(v) ? agent_signal_parse(json_string_value(v)) : -1;
		if (r.stop_signal < 0) {
			rc = err_set(
			    e, CAIRN_EINPUT,
			    "\"stop_signal\" must be one of SIGTERM, SIGINT, SIGQUIT, SIGHUP, "
			    "SIGUSR1, SIGUSR2, SIGKILL");
			goto fail;
		}
	}
	v = json_object_get(o, "reserved_ports");
	if (v && !json_is_null(v)) {
		size_t i;
		json_t *pv;
		if (!json_is_array(v) || json_array_size(v) > AGENT_MAX_RESERVED) {
			rc = err_set(e, CAIRN_EINPUT,
				     "\"reserved_ports\" must be an array of at most %d ports",
				     AGENT_MAX_RESERVED);
			goto fail;
		}
		json_array_foreach(v, i, pv)
		{
			if (!json_is_integer(pv) || json_integer_value(pv) < 1 ||
			    json_integer_value(pv) > 65535) {
				rc = err_set(e, CAIRN_EINPUT,
					     "\"reserved_ports\"[%zu] must be a port from 1 to 65535",
					     i);
				goto fail;
			}
			r.reserved[r.n_reserved++] = (int)json_integer_value(pv);
		}
	}
	v = json_object_get(o, "data_dir");
	if (v && !json_is_null(v)) {
		rc = err_set(e, CAIRN_EINPUT,
			     "\"data_dir\" must be null: the data directory is <state>/data/<app>");
		goto fail;
	}
	r.env = json_object();
	v = json_object_get(o, "env");
	if (v && !json_is_null(v)) {
		const char *k;
		json_t *ev;
		if (!json_is_object(v)) {
			rc = err_set(e, CAIRN_EINPUT, "\"env\" must be an object of strings");
			goto fail;
		}
		if (json_object_size(v) > AGENT_MAX_ENV) {
			rc = err_set(e, CAIRN_EINPUT, "\"env\" has more than %d variables",
				     AGENT_MAX_ENV);
			goto fail;
		}
		json_object_foreach(v, k, ev)
		{
			if (!env_key_ok(k)) {
				rc = err_set(e, CAIRN_EINPUT,
					     "\"env\": \"%.64s\" is not a variable name "
					     "([A-Za-z_][A-Za-z0-9_]*)",
					     k);
				goto fail;
			}
			if (!json_is_string(ev) || json_string_length(ev) > ENV_VALUE_MAX ||
			    memchr(json_string_value(ev), 0, json_string_length(ev))) {
				rc = err_set(e, CAIRN_EINPUT,
					     "\"env\": %s must be a string without NUL bytes "
					     "of at most %d bytes",
					     k, ENV_VALUE_MAX);
				goto fail;
			}
			if (!strcmp(k, "PORT") || str_starts(k, "CAIRN_")) {
				rc = err_set(e, CAIRN_EINPUT, "\"env\": %s is set by the agent", k);
				goto fail;
			}
			json_object_set(r.env, k, ev);
		}
	}
	json_decref(o);
	*out = r;
	return 0;
fail:
	json_decref(r.env);
	json_decref(o);
	return rc;
}

int agent_parse_probe(const char *body, size_t n, struct probe_req *out, struct err *e)
{
	static const char *const known[] = {"http", "timeout_ms", NULL};
	json_t *o = NULL, *v;
	struct probe_req r = {0};
	int rc;

	if ((rc = parse_object(body, n, &o, e)) < 0)
		return rc;
	if ((rc = check_keys(o, known, e)) < 0 ||
	    (rc = get_ms(o, "timeout_ms", 2000, &r.timeout_ms, e)) < 0)
		goto done;
	if (r.timeout_ms == 0 || r.timeout_ms > 60000) {
		rc = err_set(e, CAIRN_EINPUT, "\"timeout_ms\" must be from 1 to 60000");
		goto done;
	}
	v = json_object_get(o, "http");
	if (v && !json_is_null(v)) {
		const char *p = json_string_value(v);
		if (!p || p[0] != '/' || json_string_length(v) > 2048) {
			rc = err_set(e, CAIRN_EINPUT,
				     "\"http\" must be a path starting with '/' (or null "
				     "for a TCP connect)");
			goto done;
		}
		for (const char *c = p; *c; c++)
			if ((unsigned char)*c <= 0x20 || *c == 0x7f) {
				rc = err_set(e, CAIRN_EINPUT,
					     "\"http\" must not contain spaces or control "
					     "characters");
				goto done;
			}
		r.http = strdup(p);
		if (!r.http) {
			rc = err_set(e, ENOMEM, "out of memory");
			goto done;
		}
	}
	*out = r;
done:
	json_decref(o);
	return rc;
}

int agent_parse_timeout(const char *body, size_t n, int64_t def_ms, int64_t *out_ms, struct err *e)
{
	static const char *const known[] = {"timeout_ms", NULL};
	json_t *o = NULL;
	int rc;

	if ((rc = parse_object(body, n, &o, e)) < 0)
		return rc;
	if ((rc = check_keys(o, known, e)) == 0)
		rc = get_ms(o, "timeout_ms", def_ms, out_ms, e);
	json_decref(o);
	return rc;
}

void proxy_req_done(struct proxy_req *r)
{
	json_decref(r->upstreams);
	r->upstreams = NULL;
}

static int addr_ok(const char *what, const char *s, bool port0_ok, struct err *e)
{
	char host[NET_ADDR_STRLEN], port[16];
	char *end;
	if (!s || strlen(s) >= NET_ADDR_STRLEN ||
	    net_split_hostport(s, host, sizeof(host), port, sizeof(port)) < 0 || !host[0])
		return err_set(e, CAIRN_EINPUT, "%s must be \"HOST:PORT\" (e.g. 127.0.0.1:8080)", what);
	long p = strtol(port, &end, 10);
	if (*end || end == port || p < (port0_ok ? 0 : 1) || p > 65535)
		return err_set(e, CAIRN_EINPUT, "%s: port %.16s is not %d..65535", what, port,
			       port0_ok ? 0 : 1);
	return 0;
}

int agent_parse_proxy(const char *body, size_t n, struct proxy_req *out, struct err *e)
{
	static const char *const known[] = {"listen", "mode", "upstreams", "stopped", NULL};
	static const char *const known_up[] = {"addr", "release", NULL};
	struct proxy_req r = {.http = true};
	json_t *o = NULL, *v, *u;
	size_t i;
	int rc;

	if ((rc = parse_object(body, n, &o, e)) < 0)
		return rc;
	if ((rc = check_keys(o, known, e)) < 0)
		goto fail;
	v = json_object_get(o, "listen");
	if ((rc = addr_ok("\"listen\"", json_string_value(v), true, e)) < 0)
		goto fail;
	snprintf(r.listen, sizeof(r.listen), "%s", json_string_value(v));
	v = json_object_get(o, "mode");
	if (v && !json_is_null(v)) {
		const char *m = json_string_value(v);
		if (!m || (strcmp(m, "http") && strcmp(m, "tcp"))) {
			rc = err_set(e, CAIRN_EINPUT, "\"mode\" must be \"http\" or \"tcp\"");
			goto fail;
		}
		r.http = !strcmp(m, "http");
	}
	v = json_object_get(o, "stopped");
	if (v && !json_is_null(v)) {
		if (!json_is_boolean(v)) {
			rc = err_set(e, CAIRN_EINPUT, "\"stopped\" must be true or false");
			goto fail;
		}
		r.stopped = json_is_true(v);
	}
	v = json_object_get(o, "upstreams");
	if (v && !json_is_null(v) && (!json_is_array(v) || json_array_size(v) > AGENT_PROXY_UPS_MAX)) {
		rc = err_set(e, CAIRN_EINPUT, "\"upstreams\" must be an array of at most %d "
			     "{\"addr\": \"HOST:PORT\", \"release\": ID} objects", AGENT_PROXY_UPS_MAX);
		goto fail;
	}
	r.upstreams = json_array();
	json_array_foreach(v, i, u)
	{
		const char *rel;
		if (!json_is_object(u) || (rc = check_keys(u, known_up, e)) < 0) {
			if (!json_is_object(u))
				rc = err_set(e, CAIRN_EINPUT, "\"upstreams\"[%zu] must be an object", i);
			goto fail;
		}
		if ((rc = addr_ok("\"upstreams\"[].addr", json_string_value(json_object_get(u, "addr")),
				  false, e)) < 0)
			goto fail;
		rel = json_string_value(json_object_get(u, "release"));
		if (rel && (strlen(rel) >= PROXY_LABEL_MAX || !*rel)) {
			rc = err_set(e, CAIRN_EINPUT, "\"upstreams\"[%zu].release must be 1 to %d "
				     "characters", i, PROXY_LABEL_MAX - 1);
			goto fail;
		}
		json_array_append_new(r.upstreams,
				      json_pack("{s:s,s:s}", "addr",
						json_string_value(json_object_get(u, "addr")), "release",
						rel ? rel : ""));
	}
	json_decref(o);
	*out = r;
	return 0;
fail:
	json_decref(r.upstreams);
	json_decref(o);
	return rc;
}

void check_req_done(struct check_req *r)
{
	json_decref(r->doc);
	strv_done(&r->headers);
	memset(r, 0, sizeof(*r));
}

static bool token_ok(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (!n || n > max)
		return false;
	for (const char *p = s; *p; p++)
		if (*p <= 0x20 || *p >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", *p))
			return false;
	return true;
}

static bool text_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 && s[i] != '\t')
			return false;
	return true;
}

int agent_parse_check(const char *body, size_t n, struct check_req *out, struct err *e)
{
	static const char *const known[] = {"method", "path", "headers", "body", "timeout_ms",
					    "expect", NULL};
	static const char *const known_x[] = {"status", "body_contains", "max_latency_ms", NULL};
	struct check_req r = {.expect_status = 200, .timeout_ms = 10000};
	json_t *v, *x;
	const char *k;
	int rc;

	strv_init(&r.headers);
	if ((rc = parse_object(body, n, &r.doc, e)) < 0)
		return rc;
	if ((rc = check_keys(r.doc, known, e)) < 0)
		goto fail;
	r.method = json_string_value(json_object_get(r.doc, "method"));
	if (!r.method)
		r.method = "GET";
	if (!token_ok(r.method, 16)) {
		rc = err_set(e, CAIRN_EINPUT, "\"method\" must be an HTTP method (a token)");
		goto fail;
	}
	r.path = json_string_value(json_object_get(r.doc, "path"));
	if (!r.path || r.path[0] != '/' || strlen(r.path) > 2048 ||
	    strpbrk(r.path, " \t\r\n") || !text_ok(r.path, strlen(r.path))) {
		rc = err_set(e, CAIRN_EINPUT, "\"path\" must start with '/', without spaces or "
			     "control characters, at most 2048 bytes");
		goto fail;
	}
	v = json_object_get(r.doc, "headers");
	if (v && !json_is_null(v)) {
		if (!json_is_object(v) || json_object_size(v) > 64) {
			rc = err_set(e, CAIRN_EINPUT, "\"headers\" must be an object of at most 64 "
				     "strings");
			goto fail;
		}
		json_object_foreach(v, k, x)
		{
			const char *hv = json_string_value(x);
			if (!token_ok(k, 256) || !hv || json_string_length(x) > 8192 ||
			    !text_ok(hv, json_string_length(x))) {
				rc = err_set(e, CAIRN_EINPUT, "\"headers\": \"%.64s\" must be a header "
					     "name with a string value without control characters", k);
				goto fail;
			}
			strv_push_owned(&r.headers, xasprintf("%s: %s", k, hv));
		}
	}
	v = json_object_get(r.doc, "body");
	if (v && !json_is_null(v)) {
		if (!json_is_string(v)) {
			rc = err_set(e, CAIRN_EINPUT, "\"body\" must be a string");
			goto fail;
		}
		r.body = json_string_value(v);
		r.body_n = json_string_length(v);
	}
	if ((rc = get_ms(r.doc, "timeout_ms", 10000, &r.timeout_ms, e)) < 0)
		goto fail;
	if (r.timeout_ms == 0 || r.timeout_ms > 600000) {
		rc = err_set(e, CAIRN_EINPUT, "\"timeout_ms\" must be from 1 to 600000");
		goto fail;
	}
	x = json_object_get(r.doc, "expect");
	if (x && !json_is_null(x)) {
		if (!json_is_object(x) || (rc = check_keys(x, known_x, e)) < 0) {
			if (!json_is_object(x))
				rc = err_set(e, CAIRN_EINPUT, "\"expect\" must be an object");
			goto fail;
		}
		v = json_object_get(x, "status");
		if (v && (!json_is_integer(v) || json_integer_value(v) < 100 ||
			  json_integer_value(v) > 599)) {
			rc = err_set(e, CAIRN_EINPUT, "\"expect\".status must be 100 to 599");
			goto fail;
		}
		if (v)
			r.expect_status = (int)json_integer_value(v);
		v = json_object_get(x, "body_contains");
		if (v && !json_is_null(v) && !json_is_string(v)) {
			rc = err_set(e, CAIRN_EINPUT, "\"expect\".body_contains must be a string");
			goto fail;
		}
		r.expect_body = json_string_value(v);
		if ((rc = get_ms(x, "max_latency_ms", 0, &r.expect_max_latency_ms, e)) < 0)
			goto fail;
	}
	*out = r;
	return 0;
fail:
	check_req_done(&r);
	return rc;
}
