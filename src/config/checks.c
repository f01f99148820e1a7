/* config checks: the acceptance: section — requests sent to a new release before it takes
 * traffic — into struct config_check, with methods, paths, headers and expectations checked.
 * Only reads the tree; the HTTP client that runs the checks lives elsewhere. */
#include "config/config-internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *header_key_check(const char *k)
{
	if (!k[0] || strspn(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
			       "!#$%&'*+-.^_`|~") != strlen(k))
		return "is not a valid HTTP header name (letters, digits and -)";
	if (!strcasecmp(k, "Content-Length") || !strcasecmp(k, "Transfer-Encoding"))
		return "is computed by cairn from the body; remove it";
	return NULL;
}

static int parse_request(struct cfg_parse *p, struct config_check *k, const struct cnode *n,
			 const char *path)
{
	static const char *const keys[] = {"method", "path", "body", "headers", NULL};
	static const char *const methods[] = {"GET",   "HEAD",	 "POST",    "PUT",
					      "PATCH", "DELETE", "OPTIONS", NULL};
	char sub[CONFIG__PATH_MAX], q[CONFIG__QUOTE_BUF];
	const struct cnode *v[4];
	struct config_kv *kv = NULL;
	size_t nkv = 0;
	int r = config__fields(p, n, path, keys, v), m = 0;

	if (r < 0)
		return r;
	if (!v[1])
		return config__missing(p, n, path, "path", "path: /healthz");
	if (v[0]) {
		config__path(sub, path, "method");
		if (v[0]->kind == CNODE_SCALAR)
			for (int i = 0; methods[i]; i++)
				if (!strcasecmp(v[0]->text, methods[i]))
					m = i + 1;
		if (!m)
			return config__enum(p, v[0], sub, methods, &m);
		m--;
	}
	r = config__set_str(p, &k->method, methods[m]);
	config__path(sub, path, "path");
	if (r == 0)
		r = config__str(p, v[1], sub, &k->path);
	if (r == 0 && !config__is_http_path(k->path))
		return config__err(p, v[1],
				   "%s: %s must start with '/' and hold no spaces, e.g. "
				   "/shorten",
				   sub, config__quote(k->path, q));
	config__path(sub, path, "body");
	if (r == 0 && v[2] && v[2]->kind != CNODE_SCALAR)
		return config__type_err(p, v[2], sub,
					"a string (quote JSON bodies: body: '{\"url\": \"...\"}')");
	if (r == 0 && v[2] && !config__is_null(v[2]))
		r = config__str(p, v[2], sub, &k->body);
	config__path(sub, path, "headers");
	if (r == 0 && v[3])
		r = config__strmap(p, v[3], sub, header_key_check, true, strcasecmp, &kv, &nkv);
	if (r == 0 && nkv) {
		/* struct config_header is name/value; move the strings over */
		k->headers = calloc(nkv, sizeof(*k->headers));
		if (!k->headers) {
			config__kv_free(kv, nkv);
			return err_set(p->e, ENOMEM, "out of memory");
		}
		for (size_t i = 0; i < nkv; i++)
			k->headers[i] = (struct config_header){kv[i].key, kv[i].value};
		k->n_headers = nkv;
		free(kv);
	}
	return r;
}

static int parse_expect(struct cfg_parse *p, struct config_check *k, const struct cnode *n,
			const char *path)
{
	static const char *const keys[] = {"status", "body_contains", "max_latency", NULL};
	char sub[CONFIG__PATH_MAX];
	const struct cnode *v[3];
	int r = config__fields(p, n, path, keys, v);

	config__path(sub, path, "status");
	if (r == 0 && v[0])
		r = config__int(p, v[0], sub, 100, 599, &k->expect_status);
	config__path(sub, path, "body_contains");
	if (r == 0 && v[1])
		r = config__str(p, v[1], sub, &k->expect_body_contains);
	if (r == 0 && v[1] && !k->expect_body_contains[0])
		return config__err(p, v[1], "%s is empty; remove it or write the text to look for",
				   sub);
	config__path(sub, path, "max_latency");
	if (r == 0 && v[2])
		r = config__duration(p, v[2], sub, &k->expect_max_latency_ms);
	return r;
}

static int parse_check(struct cfg_parse *p, struct config_check *k, const struct cnode *n,
		       const char *path)
{
	static const char *const keys[] = {"name", "request", "expect", NULL};
	char sub[CONFIG__PATH_MAX];
	const struct cnode *v[3];
	int r;

	k->expect_status = 200;
	if (n->kind != CNODE_MAP)
		return config__type_err(p, n, path,
					"a mapping with request: and expect:, e.g. {name: home, "
					"request: {path: /}, expect: {status: 200}}");
	r = config__fields(p, n, path, keys, v);
	if (r == 0 && !v[1])
		return config__missing(p, n, path, "request", "request: {method: GET, path: /}");
	config__path(sub, path, "request");
	if (r == 0 && config__is_null(v[1]))
		return config__err(p, v[1], "%s has no value; it needs at least path:", sub);
	if (r == 0)
		r = parse_request(p, k, v[1], sub);
	config__path(sub, path, "expect");
	if (r == 0 && v[2])
		r = parse_expect(p, k, v[2], sub);
	config__path(sub, path, "name");
	if (r == 0 && v[0])
		r = config__str(p, v[0], sub, &k->name);
	if (r == 0 && v[0] && !k->name[0])
		return config__err(p, v[0], "%s is empty; name the check or remove the key", sub);
	if (r == 0 && !v[0]) {
		k->name = malloc(strlen(k->method) + strlen(k->path) + 2);
		if (!k->name)
			return err_set(p->e, ENOMEM, "out of memory");
		sprintf(k->name, "%s %s", k->method, k->path);
	}
	return r;
}

int config__acceptance(struct cfg_parse *p, struct config *c, const struct cnode *n)
{
	char path[CONFIG__PATH_MAX], q[CONFIG__QUOTE_BUF];
	const struct cnode *item;
	size_t i = 0;
	int r = 0;

	if (config__is_null(n))
		return 0;
	if (n->kind != CNODE_SEQ)
		return config__type_err(p, n, "acceptance",
					"a list of checks (lines starting with -)");
	if (n->n > CONFIG_CHECKS_MAX)
		return config__err(p, n, "acceptance has %zu checks; at most %d are allowed", n->n,
				   CONFIG_CHECKS_MAX);
	c->acceptance = calloc(n->n ? n->n : 1, sizeof(*c->acceptance));
	if (!c->acceptance)
		return err_set(p->e, ENOMEM, "out of memory");
	for (item = n->first; item && r == 0; item = item->next, i++) {
		config__path_index(path, "acceptance", i);
		c->n_acceptance = i + 1;
		r = parse_check(p, &c->acceptance[i], item, path);
		for (size_t j = 0; r == 0 && j < i; j++)
			if (!strcmp(c->acceptance[j].name, c->acceptance[i].name))
				r = config__err(
				    p, item,
				    "%s: a check named %s is already defined; give each "
				    "check its own name:",
				    path, config__quote(c->acceptance[i].name, q));
	}
	return r;
}
