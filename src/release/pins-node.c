/* pins-node: floating dependencies in package.json (dependencies, devDependencies,
 * optionalDependencies; peerDependencies are the consumer's business and are skipped).
 * Values are read with jansson; positions come from a small scan of the text, since jansson
 * keeps none. Only reports when no lockfile pins the tree. */
#include "release/release-internal.h"

#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 64

static const char *const sections[] = { "dependencies", "devDependencies",
					"optionalDependencies" };

struct keypos {
	const char *section; /* borrowed from sections[] */
	const char *key;     /* raw key text in the file, borrowed */
	size_t keyn;
	int line, col;
};

struct keyposv {
	struct keypos *v; /* owned */
	size_t n, cap;
};

static const char *section_of(const char *s, size_t n)
{
	for (size_t i = 0; i < ARRAY_SIZE(sections); i++)
		if (strlen(sections[i]) == n && !memcmp(sections[i], s, n))
			return sections[i];
	return NULL;
}

/* Records the position of every key of the sections' objects (depth 2 of the root object). */
static void scan_positions(const char *data, size_t n, struct keyposv *out)
{
	const char *p = data, *end = data + n, *ls = data;
	char type[JSON_MAX_DEPTH];
	const char *okey[JSON_MAX_DEPTH];
	const char *lastkey = NULL;
	size_t okeyn[JSON_MAX_DEPTH], lastkeyn = 0;
	int depth = 0, line = 1;

	while (p < end) {
		char c = *p;
		if (c == '\n') {
			line++;
			ls = ++p;
			continue;
		}
		if (c == '{' || c == '[') {
			if (depth == JSON_MAX_DEPTH)
				return;
			type[depth] = c;
			bool keyed = depth > 0 && type[depth - 1] == '{';
			okey[depth] = keyed ? lastkey : NULL;
			okeyn[depth] = keyed ? lastkeyn : 0;
			depth++;
			lastkey = NULL;
			p++;
			continue;
		}
		if (c == '}' || c == ']') {
			if (depth > 0)
				depth--;
			p++;
			continue;
		}
		if (c != '"') {
			p++;
			continue;
		}
		const char *s = ++p;
		int col = (int)(s - ls) + 1;
		while (p < end && *p != '"' && *p != '\n') {
			if (*p == '\\' && p + 1 < end && p[1] != '\n')
				p++;
			p++;
		}
		size_t sn = (size_t)(p - s);
		if (p < end && *p == '"')
			p++;
		const char *q = p;
		while (q < end && (*q == ' ' || *q == '\t' || *q == '\r' || *q == '\n'))
			q++;
		if (q >= end || *q != ':')
			continue;
		lastkey = s;
		lastkeyn = sn;
		if (depth == 2 && type[0] == '{' && type[1] == '{' && okey[1]) {
			const char *sec = section_of(okey[1], okeyn[1]);
			if (!sec)
				continue;
			if (out->n == out->cap) {
				out->cap = out->cap ? out->cap * 2 : 16;
				out->v = xrealloc(out->v, out->cap * sizeof(*out->v));
			}
			out->v[out->n++] = (struct keypos){ sec, s, sn, line, col };
		}
	}
}

static void find_pos(const struct keyposv *kp, const char *sec, const char *key, int *line,
		     int *col)
{
	size_t kn = strlen(key);
	*line = *col = 1;
	for (size_t i = 0; i < kp->n; i++) /* the last one wins, as in jansson */
		if (kp->v[i].section == sec && kp->v[i].keyn == kn &&
		    !memcmp(kp->v[i].key, key, kn)) {
			*line = kp->v[i].line;
			*col = kp->v[i].col;
		}
}

static bool exact_semver(const char *v)
{
	if (*v == 'v' || *v == '=')
		v++;
	for (int part = 0; part < 3; part++) {
		if (!isdigit((unsigned char)*v))
			return false;
		while (isdigit((unsigned char)*v))
			v++;
		if (part < 2 && *v++ != '.')
			return false;
	}
	if (*v == '-' || *v == '+') {
		for (v++; *v; v++)
			if (!isalnum((unsigned char)*v) && *v != '.' && *v != '-' && *v != '+')
				return false;
		return true;
	}
	return *v == 0;
}

static bool is_git_spec(const char *v)
{
	static const char *const pre[] = { "git+", "git://", "github:", "gitlab:", "bitbucket:",
					   "gist:" };
	for (size_t i = 0; i < ARRAY_SIZE(pre); i++)
		if (str_starts(v, pre[i]))
			return true;
	/* GitHub shorthand: user/repo[#ref] */
	const char *slash = strchr(v, '/');
	if (!slash || slash == v || strchr(v, ':') || strchr(v, ' '))
		return false;
	for (const char *c = v; *c && *c != '#'; c++)
		if (!isalnum((unsigned char)*c) && !strchr("-_./", *c))
			return false;
	return true;
}

/* NULL when the spec is exact or local; else what is wrong with it. */
static const char *npm_problem(const char *v)
{
	while (*v == ' ')
		v++;
	if (str_starts(v, "file:") || str_starts(v, "link:") || str_starts(v, "workspace:") ||
	    str_starts(v, "portal:"))
		return NULL;
	if (str_starts(v, "npm:")) { /* alias: npm:name@range */
		const char *at = strrchr(v + 5, '@');
		if (!at)
			return "alias without a version: the newest release is installed";
		v = at + 1;
	}
	if (is_git_spec(v)) {
		const char *hash = strchr(v, '#');
		if (hash && pins__is_hex(hash + 1, strlen(hash + 1)) && strlen(hash + 1) == 40)
			return NULL;
		return "git dependency without a commit: the branch or tag can move";
	}
	if (str_starts(v, "http://") || str_starts(v, "https://"))
		return "tarball URL: the file behind it can change, and without a lockfile nothing "
		       "records its integrity";
	if (exact_semver(v))
		return NULL;
	if (!*v || !strcmp(v, "*") || !strcmp(v, "x") || !strcmp(v, "X"))
		return "any version: the newest release at install time is installed";
	if (v[0] == '^')
		return "caret range (^): any newer minor or patch release may be installed";
	if (v[0] == '~')
		return "tilde range (~): newer patch releases are installed as they appear";
	if (strstr(v, "||"))
		return "alternative ranges (||): releases published later may be installed";
	if (strstr(v, " - "))
		return "hyphen range: any release in the range may be installed";
	if (v[0] == '>' || v[0] == '<')
		return "version range: releases published later may be installed";
	if (strpbrk(v, "xX*"))
		return "wildcard version: any matching release may be installed";
	if (isdigit((unsigned char)v[0]) ||
	    ((v[0] == 'v' || v[0] == '=') && isdigit((unsigned char)v[1])))
		return "partial version: it means a range (\"1.2\" is any 1.2.x)";
	return "dist-tag: it points at whatever is published under it at install time";
}

void pins__package_json(const struct pins__file *f)
{
	json_error_t jerr;
	json_t *root = json_loadb(f->data, f->n, 0, &jerr);
	struct keyposv kp = { 0 };
	bool any = false;

	if (!root || !json_is_object(root)) {
		log_debug("pins", "%s: not a JSON object (%s)", f->path, root ? "" : jerr.text);
		json_decref(root);
		return;
	}
	if (!f->locked)
		scan_positions(f->data, f->n, &kp);
	for (size_t s = 0; s < ARRAY_SIZE(sections); s++) {
		json_t *deps = json_object_get(root, sections[s]);
		const char *name;
		json_t *val;
		if (!json_is_object(deps))
			continue;
		json_object_foreach(deps, name, val) {
			const char *v = json_string_value(val), *problem;
			any = true;
			if (f->locked || !v || !(problem = npm_problem(v)))
				continue;
			int line, col;
			find_pos(&kp, sections[s], name, &line, &col);
			char *hint = pins__hint(f, "node", name);
			char *spec = xasprintf("%s@%s", name, v);
			pins__add_owned(f, line, col, "node", spec, xstrdup(problem),
					xasprintf("pin an exact version: \"%s\": \"%s\" (`npm "
						  "install --save-exact %s@%s`), and commit the "
						  "lockfile",
						  name, hint ? hint : "VERSION", name,
						  hint ? hint : "VERSION"));
			free(spec);
			free(hint);
		}
	}
	if (any && !f->locked)
		pins__lockfile_missing(f, "node",
				       "lockfile (package-lock.json, npm-shrinkwrap.json, "
				       "yarn.lock or pnpm-lock.yaml)",
				       "run `npm install --package-lock-only` (or yarn / pnpm "
				       "install) and commit the lockfile");
	free(kp.v);
	json_decref(root);
}
