/* controller/body: parsing of everything a client sends besides the method — JSON bodies,
 * Idempotency-Key, Last-Event-ID, Authorization and the path, and the request-head follower.
 * Pure functions over bytes with bounds; they never crash on any input (fuzz/fuzz_api_body.c,
 * fuzz/fuzz_api_headers.c, fuzz/fuzz_api_head_scan.c). */
#include "controller/controller.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int get_string(json_t *root, const char *key, char *out, size_t max, bool required,
		      struct err *e)
{
	json_t *v = json_object_get(root, key);
	if (!v) {
		if (required)
			return err_set(e, CAIRN_EINPUT, "body: \"%s\" is required", key);
		out[0] = '\0';
		return 0;
	}
	if (!json_is_string(v))
		return err_set(e, CAIRN_EINPUT, "body: \"%s\" must be a string", key);
	size_t n = json_string_length(v);
	const char *s = json_string_value(v);
	if (n >= max)
		return err_set(e, CAIRN_EINPUT, "body: \"%s\" is longer than %zu bytes", key, max - 1);
	if (memchr(s, '\0', n))
		return err_set(e, CAIRN_EINPUT, "body: \"%s\" contains a NUL character", key);
	memcpy(out, s, n + 1);
	if (required && n == 0)
		return err_set(e, CAIRN_EINPUT, "body: \"%s\" must not be empty", key);
	return 0;
}

int api_parse_deploy_body(const char *p, size_t n, bool rollback, struct api_deploy_body *out,
			  struct err *e)
{
	static const char *const deploy_keys[] = { "release", "reason", "force" };
	static const char *const rollback_keys[] = { "to", "reason" };
	const char *const *keys = rollback ? rollback_keys : deploy_keys;
	size_t n_keys = rollback ? ARRAY_SIZE(rollback_keys) : ARRAY_SIZE(deploy_keys);
	struct api_deploy_body b;
	json_error_t je;
	json_t *root, *v;
	const char *k;
	int r = 0;

	if (n > API_BODY_MAX)
		return err_set(e, E2BIG, "body is larger than %d bytes", API_BODY_MAX);
	memset(&b, 0, sizeof(b));
	if (n == 0 && rollback)
		root = json_object();
	else
		root = json_loadb(p, n, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return err_set(e, CAIRN_EINPUT, "body is not JSON: %s (line %d, column %d)", je.text,
			       je.line, je.column);
	if (!json_is_object(root)) {
		r = err_set(e, CAIRN_EINPUT, "body must be a JSON object");
		goto fail;
	}
	json_object_foreach(root, k, v)
	{
		bool known = false;
		for (size_t i = 0; i < n_keys; i++)
			known |= !strcmp(k, keys[i]);
		if (!known) {
			r = err_set(e, CAIRN_EINPUT, "body: unknown key \"%.64s\"; expected %s", k,
				    rollback ? "\"to\", \"reason\"" : "\"release\", \"reason\", \"force\"");
			goto fail;
		}
	}
	if ((r = get_string(root, rollback ? "to" : "release", b.release, sizeof(b.release),
			    !rollback, e)) < 0 ||
	    (r = get_string(root, "reason", b.reason, sizeof(b.reason), false, e)) < 0)
		goto fail;
	if ((v = json_object_get(root, "force"))) {
		if (!json_is_boolean(v)) {
			r = err_set(e, CAIRN_EINPUT, "body: \"force\" must be true or false");
			goto fail;
		}
		b.force = json_is_true(v);
	}
	/* the fingerprint covers the meaning, not the spelling: defaults filled, keys sorted */
	json_t *canon = json_pack("{s:s,s:s,s:s,s:b}", "kind", rollback ? "rollback" : "deploy",
				  "release", b.release, "reason", b.reason, "force", b.force);
	char *txt = canon ? json_dumps(canon, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(canon);
	if (!txt) {
		r = err_set(e, ENOMEM, "out of memory");
		goto fail;
	}
	hash_mem(txt, strlen(txt), b.fingerprint);
	free(txt);
	*out = b;
fail:
	json_decref(root);
	return r;
}

int api_parse_stop_body(const char *p, size_t n, char *reason, char *by, struct err *e)
{
	json_error_t je;
	json_t *root, *v;
	const char *k;
	int r = 0;
	reason[0] = by[0] = '\0';
	if (n > API_BODY_MAX)
		return err_set(e, E2BIG, "body is larger than %d bytes", API_BODY_MAX);
	if (n == 0)
		return 0;
	if (!(root = json_loadb(p, n, JSON_REJECT_DUPLICATES, &je)))
		return err_set(e, CAIRN_EINPUT, "body is not JSON: %s (line %d, column %d)", je.text,
			       je.line, je.column);
	if (!json_is_object(root)) {
		r = err_set(e, CAIRN_EINPUT, "body must be a JSON object");
		goto out;
	}
	json_object_foreach(root, k, v)
		if (strcmp(k, "reason") && strcmp(k, "by")) {
			r = err_set(e, CAIRN_EINPUT,
				    "body: unknown key \"%.64s\"; expected \"reason\", \"by\"", k);
			goto out;
		}
	if ((r = get_string(root, "reason", reason, STORE_REASON_MAX, false, e)) < 0 ||
	    (r = get_string(root, "by", by, STORE_OWNER_MAX, false, e)) < 0)
		goto out;
out:
	json_decref(root);
	return r;
}

int api_parse_idem_key(const char *v, char out[STORE_IDEM_KEY_MAX + 1], struct err *e)
{
	size_t n = strlen(v);
	if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
		v++;
		n -= 2;
	}
	if (n == 0 || n > STORE_IDEM_KEY_MAX)
		return err_set(e, CAIRN_EINPUT, "Idempotency-Key must be 1 to %d characters",
			       STORE_IDEM_KEY_MAX);
	for (size_t i = 0; i < n; i++)
		if (v[i] < 0x21 || v[i] > 0x7e || v[i] == '"' || v[i] == '\\')
			return err_set(e, CAIRN_EINPUT,
				       "Idempotency-Key may hold only visible ASCII characters "
				       "(no quotes or backslashes); a UUID is a good key");
	memcpy(out, v, n);
	out[n] = '\0';
	return 0;
}

int api_parse_event_id(const char *v, int64_t *out)
{
	int64_t x = 0;
	if (!*v)
		return -EINVAL;
	for (; *v; v++) {
		if (*v < '0' || *v > '9' || x > (INT64_MAX - 9) / 10)
			return -EINVAL;
		x = x * 10 + (*v - '0');
	}
	*out = x;
	return 0;
}

const char *api_parse_bearer(const char *v)
{
	if (strncasecmp(v, "Bearer ", 7))
		return NULL;
	v += 7;
	while (*v == ' ')
		v++;
	return *v ? v : NULL;
}

bool api_token_ok(const char *authorization, const char *token)
{
	const char *tok = authorization ? api_parse_bearer(authorization) : NULL;
	size_t n = token ? strlen(token) : 0;
	return tok && n && strlen(tok) == n && CRYPTO_memcmp(tok, token, n) == 0;
}

void api_head_scan_reset(struct api_head_scan *h)
{
	h->first_line = h->line_over = h->auth_ok = h->done = false;
	h->line_n = h->reqline_n = 0;
}

static void head_line(struct api_head_scan *h, const char *token)
{
	static const char auth[] = "authorization:";
	size_t n = h->line_n, a = sizeof(auth) - 1;
	if (n && h->line[n - 1] == '\r')
		n--;
	if (!h->first_line) {
		h->first_line = true;
		h->reqline_n = n < sizeof(h->reqline) ? n : sizeof(h->reqline);
		memcpy(h->reqline, h->line, h->reqline_n);
	} else if (!h->line_over && n > a && !strncasecmp(h->line, auth, a)) {
		char v[API_HEAD_LINE_KEEP + 1];
		while (a < n && (h->line[a] == ' ' || h->line[a] == '\t'))
			a++;
		while (n > a && (h->line[n - 1] == ' ' || h->line[n - 1] == '\t'))
			n--;
		memcpy(v, h->line + a, n - a);
		v[n - a] = '\0';
		h->auth_ok |= api_token_ok(v, token);
	}
	h->line_n = 0;
	h->line_over = false;
}

size_t api_head_scan(struct api_head_scan *h, const char *p, size_t n, const char *token)
{
	for (size_t i = 0; i < n; i++) {
		if (h->done)
			return i;
		char c = p[i];
		if (c != '\n') {
			if (h->line_n < sizeof(h->line))
				h->line[h->line_n++] = c;
			else
				h->line_over = true;
			continue;
		}
		bool empty = !h->line_over && (h->line_n == 0 || (h->line_n == 1 && h->line[0] == '\r'));
		if (empty && h->first_line)
			h->done = true;
		else if (empty)
			h->line_n = 0; /* an empty line before the request line is skipped */
		else
			head_line(h, token);
	}
	return n;
}

bool api_app_name_ok(const char *s, size_t n)
{
	return name_app_ok(s, n); /* the one rule: base/names.c */
}

static const char *const route_names[ROUTE_COUNT] = {
	[ROUTE_NONE] = "none",       [ROUTE_DEPLOYS] = "deploys", [ROUTE_ROLLBACK] = "rollback",
	[ROUTE_STOP] = "stop",       [ROUTE_UNLOCK] = "lease",    [ROUTE_APP] = "app",
	[ROUTE_INSTANCES] = "instances",
	[ROUTE_APPS] = "apps",       [ROUTE_JOB] = "job",         [ROUTE_JOBS] = "jobs",
	[ROUTE_EVENTS] = "events",   [ROUTE_METRICS] = "metrics",
	[ROUTE_OBJECTS_MISSING] = "objects_missing",
	[ROUTE_OBJECT] = "object",
	[ROUTE_RELEASES] = "releases",
};

const char *api_route_name(enum api_route r)
{
	return (unsigned)r < ROUTE_COUNT ? route_names[r] : "none";
}

void api_match_path(const char *path, struct api_path *out)
{
	size_t n = strcspn(path, "?#");
	struct slice p = { path, n };
	memset(out, 0, sizeof(*out));
	if (slice_eq(p, "/metrics")) {
		out->route = ROUTE_METRICS;
		return;
	}
	if (slice_eq(p, "/v1/events")) {
		out->route = ROUTE_EVENTS;
		return;
	}
	if (slice_eq(p, "/v1/jobs")) {
		out->route = ROUTE_JOBS;
		return;
	}
	if (slice_eq(p, "/v1/apps")) {
		out->route = ROUTE_APPS;
		return;
	}
	if (slice_eq(p, "/v1/releases")) {
		out->route = ROUTE_RELEASES;
		return;
	}
	if (slice_eq(p, "/v1/objects/missing")) {
		out->route = ROUTE_OBJECTS_MISSING;
		return;
	}
	if (slice_starts(p, "/v1/objects/") && n > 12) {
		out->route = ROUTE_OBJECT;
		if (api_digest_ok(path + 12, n - 12))
			memcpy(out->hex, path + 12, HASH_HEX_LEN);
		return;
	}
	if (slice_starts(p, "/v1/jobs/")) {
		int64_t id;
		char num[24];
		size_t k = n - 9;
		if (k == 0 || k >= sizeof(num))
			return;
		memcpy(num, path + 9, k);
		num[k] = '\0';
		if (api_parse_event_id(num, &id) == 0 && id > 0) {
			out->route = ROUTE_JOB;
			out->job_id = id;
		}
		return;
	}
	if (slice_starts(p, "/v1/apps/")) {
		const char *a = path + 9, *end = path + n;
		const char *slash = memchr(a, '/', (size_t)(end - a));
		size_t an = (size_t)((slash ? slash : end) - a);
		if (!api_app_name_ok(a, an))
			return;
		memcpy(out->app, a, an);
		out->app[an] = '\0';
		if (!slash) {
			out->route = ROUTE_APP;
			return;
		}
		struct slice rest = { slash, (size_t)(end - slash) };
		if (slice_eq(rest, "/deploys"))
			out->route = ROUTE_DEPLOYS;
		else if (slice_eq(rest, "/rollback"))
			out->route = ROUTE_ROLLBACK;
		else if (slice_eq(rest, "/stop"))
			out->route = ROUTE_STOP;
		else if (slice_eq(rest, "/lease"))
			out->route = ROUTE_UNLOCK;
		else if (slice_eq(rest, "/instances"))
			out->route = ROUTE_INSTANCES;
		if (out->route == ROUTE_NONE)
			out->app[0] = '\0';
	}
}
