/* pins-other: Ruby (Gemfile), Go (go.mod) and Rust (Cargo.toml). These ecosystems pin through
 * a lockfile (Gemfile.lock, go.sum, Cargo.lock): with it nothing is reported; without it the
 * manifest gets one file-level finding and every non-exact requirement one more. */
#include "release/release-internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* ---- Gemfile ---------------------------------------------------------------------------- */

struct rb_arg {
	char *key;     /* owned; NULL for a positional argument */
	char *str;     /* owned; string value (NULL when not a string literal) */
	size_t off;    /* offset of the value's first content char */
};

struct rb_args {
	struct rb_arg v[32];
	size_t n;
};

static void rb_args_done(struct rb_args *a)
{
	for (size_t i = 0; i < a->n; i++) {
		free(a->v[i].key);
		free(a->v[i].str);
	}
	a->n = 0;
}

static size_t skip_ws(const char *t, size_t i, size_t n)
{
	while (i < n && (t[i] == ' ' || t[i] == '\t'))
		i++;
	return i;
}

/* A string literal at t[i] ('..', "..", %q(..), %Q{..}); returns the index after it, or i
 * when there is none. */
static size_t rb_string(const char *t, size_t i, size_t n, char **out, size_t *off)
{
	char close;
	size_t s;
	if (i < n && (t[i] == '\'' || t[i] == '"')) {
		close = t[i];
		s = i + 1;
	} else if (i + 2 < n && t[i] == '%' && (t[i + 1] == 'q' || t[i + 1] == 'Q') &&
		   strchr("({[<|!/", t[i + 2])) {
		const char *o = "({[<", *c = ")}]>";
		const char *k = strchr(o, t[i + 2]);
		close = k ? c[k - o] : t[i + 2];
		s = i + 3;
	} else {
		return i;
	}
	struct buf b;
	buf_init(&b, n);
	size_t j = s;
	for (; j < n && t[j] != close; j++) {
		if (t[j] == '\\' && j + 1 < n)
			j++;
		buf_addc(&b, t[j]);
	}
	if (j >= n) {
		buf_done(&b);
		return i;
	}
	*out = buf_detach(&b);
	*off = s;
	return j + 1;
}

/* Arguments of a `gem` call starting at t[i]. */
static void rb_parse_args(const char *t, size_t i, size_t n, struct rb_args *a)
{
	while (a->n < ARRAY_SIZE(a->v)) {
		struct rb_arg *arg = &a->v[a->n];
		memset(arg, 0, sizeof(*arg));
		i = skip_ws(t, i, n);
		if (i >= n || t[i] == '#' || t[i] == ')')
			return;
		size_t j = rb_string(t, i, n, &arg->str, &arg->off);
		if (j > i) {
			i = skip_ws(t, j, n);
			if (i + 1 < n && t[i] == '=' && t[i + 1] == '>') { /* "key" => value */
				arg->key = arg->str;
				arg->str = NULL;
				i += 2;
			}
		} else {
			size_t k = i + (t[i] == ':');
			size_t s = k;
			while (k < n && (isalnum((unsigned char)t[k]) || t[k] == '_'))
				k++;
			size_t e = skip_ws(t, k, n);
			bool colon_after = k < n && t[k] == ':' && (k + 1 >= n || t[k + 1] != ':');
			bool rocket = e + 1 < n && t[e] == '=' && t[e + 1] == '>';
			if (k > s && t[i] != ':' && colon_after) {
				arg->key = xstrndup(t + s, k - s); /* key: value */
				i = k + 1;
			} else if (k > s && t[i] == ':' && rocket) {
				arg->key = xstrndup(t + s, k - s); /* :key => value */
				i = e + 2;
			}
		}
		if (arg->key) {
			i = skip_ws(t, i, n);
			size_t j2 = rb_string(t, i, n, &arg->str, &arg->off);
			i = j2;
		}
		a->n++;
		/* skip the rest of this argument (arrays, symbols, numbers) */
		int depth = 0;
		while (i < n && (depth > 0 || t[i] != ',')) {
			if (t[i] == '#' && depth == 0)
				return;
			if (t[i] == '[' || t[i] == '(' || t[i] == '{')
				depth++;
			else if ((t[i] == ']' || t[i] == ')' || t[i] == '}') && --depth < 0)
				return;
			i++;
		}
		if (i >= n)
			return;
		i++;
	}
}

static const char *rb_get(const struct rb_args *a, const char *key)
{
	for (size_t i = 0; i < a->n; i++)
		if (a->v[i].key && !strcmp(a->v[i].key, key))
			return a->v[i].str ? a->v[i].str : "";
	return NULL;
}

static bool rb_exact(const char *r)
{
	while (*r == ' ')
		r++;
	if (*r == '=' && r[1] != '=')
		r++;
	while (*r == ' ')
		r++;
	if (!isdigit((unsigned char)*r))
		return false;
	return strspn(r, "0123456789.abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_") ==
	       strlen(r);
}

static void gem(const struct pins__file *f, const struct pins__lline *ll, const struct rb_args *a,
		bool *any)
{
	const struct rb_arg *name = &a->v[0];
	struct buf vers;
	const char *problem = NULL;
	int line, col;

	if (!a->n || name->key || !name->str)
		return;
	*any = true;
	if (f->locked || rb_get(a, "path"))
		return;
	pins__lline_pos(ll, name->off, &line, &col);
	const char *src = rb_get(a, "git") ? "git" : rb_get(a, "github") ? "github"
		     : rb_get(a, "gitlab") ? "gitlab" : rb_get(a, "bitbucket") ? "bitbucket" : NULL;
	if (src) {
		const char *ref = rb_get(a, "ref");
		if (ref && strlen(ref) >= 40 && pins__is_hex(ref, strlen(ref)))
			return;
		char *spec = xasprintf("%s (%s: %s)", name->str, src, rb_get(a, src));
		pins__add_owned(f, line, col, "ruby", spec,
				xstrdup("git dependency without a commit: the branch or tag can "
					"move"),
				xasprintf("pin a full commit: ref: '<40-hex commit>', or commit "
					  "Gemfile.lock (`bundle lock`)"));
		free(spec);
		return;
	}
	buf_init(&vers, PINS_FILE_MAX);
	size_t nv = 0;
	bool exact = false, pess = false, lower = false, upper = false;
	for (size_t i = 1; i < a->n; i++) {
		const char *r = a->v[i].str;
		if (a->v[i].key || !r)
			continue;
		buf_adds(&vers, nv++ ? ", " : "");
		buf_adds(&vers, r);
		while (*r == ' ')
			r++;
		if (rb_exact(r))
			exact = true;
		else if (str_starts(r, "~>"))
			pess = true;
		else if (*r == '>')
			lower = true;
		else if (*r == '<')
			upper = true;
	}
	if (nv == 0)
		problem = "no version: the newest release at build time is installed";
	else if (exact)
		problem = NULL;
	else if (pess)
		problem = "pessimistic range (~>): newer releases of the series are installed as "
			  "they appear";
	else if (lower && upper)
		problem = "version range: any release in the range may be installed, and new ones "
			  "appear";
	else if (lower)
		problem = "lower bound only: any newer release may be installed";
	else if (upper)
		problem = "upper bound only: releases below it may be installed";
	else
		problem = "not an exact version";
	if (problem) {
		char *hint = pins__hint(f, "ruby", name->str);
		char *spec = nv ? xasprintf("%s (%s)", name->str, buf_str(&vers))
				: xstrdup(name->str);
		pins__add_owned(f, line, col, "ruby", spec, xstrdup(problem),
				xasprintf("pin an exact version: gem '%s', '%s', and commit "
					  "Gemfile.lock (`bundle lock`)",
					  name->str, hint ? hint : "VERSION"));
		free(spec);
		free(hint);
	}
	buf_done(&vers);
}

void pins__gemfile(const struct pins__file *f)
{
	struct pins__reader rd;
	struct pins__lline ll;
	bool any = false;

	pins__reader_init(&rd, f->data, f->n);
	pins__lline_init(&ll);
	while (pins__next_lline(&rd, &ll, PINS_LINES_RUBY)) {
		const char *t = buf_str(&ll.text);
		size_t n = ll.text.len, i = skip_ws(t, 0, n);
		if (n - i < 4 || strncmp(t + i, "gem", 3) || !strchr(" \t(", t[i + 3]))
			continue;
		struct rb_args a = { .n = 0 };
		rb_parse_args(t, i + 4, n, &a);
		gem(f, &ll, &a, &any);
		rb_args_done(&a);
	}
	pins__lline_done(&ll);
	if (any && !f->locked)
		pins__lockfile_missing(f, "ruby", "Gemfile.lock",
				       "run `bundle lock` and commit Gemfile.lock");
}

/* ---- go.mod ----------------------------------------------------------------------------- */

void pins__gomod(const struct pins__file *f)
{
	struct pins__reader rd;
	struct pins__lline ll;
	bool any = false, block = false;

	if (f->locked)
		return;
	pins__reader_init(&rd, f->data, f->n);
	pins__lline_init(&ll);
	while (!any && pins__next_lline(&rd, &ll, PINS_LINES_SHELL)) {
		const char *t = buf_str(&ll.text);
		size_t n = ll.text.len, i = skip_ws(t, 0, n);
		for (size_t k = i; k + 1 < n; k++)
			if (t[k] == '/' && t[k + 1] == '/') {
				n = k;
				break;
			}
		while (n > i && (t[n - 1] == ' ' || t[n - 1] == '\t' || t[n - 1] == '\r'))
			n--;
		if (i == n)
			continue;
		if (block) {
			if (t[i] == ')')
				block = false;
			else
				any = true;
		} else if (n - i > 7 && !strncmp(t + i, "require", 7) &&
			   (t[i + 7] == ' ' || t[i + 7] == '\t' || t[i + 7] == '(')) {
			size_t r = skip_ws(t, i + 7, n);
			if (r < n && t[r] == '(')
				block = true;
			else
				any = r < n;
		}
	}
	pins__lline_done(&ll);
	if (any)
		pins__add(f, 1, 1, "go", strrchr(f->path, '/') ? strrchr(f->path, '/') + 1
							      : f->path,
			  "no go.sum beside it: module checksums are not pinned, so a module's "
			  "content at a version is not verified",
			  "run `go mod tidy` and commit go.sum");
}

/* ---- Cargo.toml ------------------------------------------------------------------------- */

struct cargo {
	const struct pins__file *f;
	bool any;
	/* [dependencies.NAME] subtables arrive key by key: kept until the next header */
	struct {
		char *name; /* owned */
		int line, col;
		char *version, *git, *rev; /* owned */
		bool local;
	} sub;
};

static const char *cargo_problem(const char *v)
{
	while (*v == ' ')
		v++;
	if (*v == '=' && !strchr(v, ',') && !strchr(v, '*'))
		return NULL;
	if (!*v || !strcmp(v, "*"))
		return "any version: the newest release at build time is resolved";
	if (strchr(v, '*'))
		return "wildcard version: any matching release may be resolved";
	if (*v == '~')
		return "tilde range: newer patch releases are resolved as they appear";
	if (*v == '>' || *v == '<' || strchr(v, ','))
		return "version range: releases published later may be resolved";
	return "caret range (a bare version in Cargo means ^): any compatible newer release "
	       "may be resolved";
}

static void cargo_dep(struct cargo *c, const char *name, int line, int col, const char *version,
		      const char *git, const char *rev, bool local)
{
	const struct pins__file *f = c->f;
	c->any = true;
	if (f->locked || local)
		return;
	if (git) {
		if (rev && strlen(rev) >= 40 && pins__is_hex(rev, strlen(rev)))
			return;
		char *spec = xasprintf("%s = { git = \"%s\" }", name, git);
		pins__add_owned(f, line, col, "rust", spec,
				xstrdup("git dependency without a commit: the branch or tag can "
					"move"),
				xasprintf("pin a full commit: %s = { git = \"%s\", rev = "
					  "\"<40-hex commit>\" }, or commit Cargo.lock",
					  name, git));
		free(spec);
		return;
	}
	const char *problem = cargo_problem(version ? version : "*");
	if (!problem)
		return;
	char *hint = pins__hint(f, "rust", name);
	char *spec = xasprintf("%s = \"%s\"", name, version ? version : "*");
	pins__add_owned(f, line, col, "rust", spec, xstrdup(problem),
			xasprintf("commit Cargo.lock (`cargo generate-lockfile`), or pin an exact "
				  "version: %s = \"=%s\"",
				  name, hint ? hint : "VERSION"));
	free(spec);
	free(hint);
}

static void cargo_flush(struct cargo *c)
{
	if (c->sub.name)
		cargo_dep(c, c->sub.name, c->sub.line, c->sub.col, c->sub.version, c->sub.git,
			  c->sub.rev, c->sub.local);
	free(c->sub.name);
	free(c->sub.version);
	free(c->sub.git);
	free(c->sub.rev);
	memset(&c->sub, 0, sizeof(c->sub));
}

static size_t cargo_deps_prefix(const struct toml__seg *p, size_t n)
{
	static const char *const kinds[] = { "dependencies", "dev-dependencies",
					     "build-dependencies" };
	for (size_t k = 0; k < ARRAY_SIZE(kinds); k++) {
		if (n >= 1 && !strcmp(p[0].s, kinds[k]))
			return 1;
		if (n >= 3 && !strcmp(p[0].s, "target") && !strcmp(p[2].s, kinds[k]))
			return 3;
	}
	if (n >= 2 && !strcmp(p[0].s, "workspace") && !strcmp(p[1].s, "dependencies"))
		return 2;
	return 0;
}

static void cargo_kv(void *ctx, const struct toml__seg *p, size_t n, size_t nh, unsigned seq,
		     const struct toml__val *v)
{
	struct cargo *c = ctx;
	size_t l = cargo_deps_prefix(p, n);
	(void)seq;
	if (!v) {
		cargo_flush(c);
		if (l && n == l + 1) { /* [dependencies.NAME] */
			c->sub.name = xstrdup(p[l].s);
			c->sub.line = p[l].line;
			c->sub.col = p[l].col;
		}
		return;
	}
	if (!l || n <= l)
		return;
	if (n == l + 1 && nh == l) {
		if (v->kind == TOML_STR) {
			cargo_dep(c, p[l].s, p[l].line, p[l].col, v->s, NULL, NULL, false);
		} else if (v->kind == TOML_TAB) {
			const struct toml__val *ws = toml__get(v, "workspace");
			bool local = toml__get(v, "path") ||
				     (ws && ws->s && !strcmp(ws->s, "true"));
			cargo_dep(c, p[l].s, p[l].line, p[l].col, toml__get_str(v, "version"),
				  toml__get_str(v, "git"), toml__get_str(v, "rev"), local);
		}
		return;
	}
	if (n == l + 2 && nh == l && !strcmp(p[l + 1].s, "version") && v->kind == TOML_STR) {
		cargo_dep(c, p[l].s, p[l].line, p[l].col, v->s, NULL, NULL, false); /* a.version */
		return;
	}
	if (n == l + 2 && c->sub.name && !strcmp(c->sub.name, p[l].s)) {
		const char *key = p[l + 1].s;
		char **slot = !strcmp(key, "version") ? &c->sub.version
			      : !strcmp(key, "git")   ? &c->sub.git
			      : !strcmp(key, "rev")   ? &c->sub.rev
						      : NULL;
		if (slot && v->kind == TOML_STR) {
			free(*slot);
			*slot = xstrdup(v->s);
		}
		if (!strcmp(key, "path") ||
		    (!strcmp(key, "workspace") && v->s && !strcmp(v->s, "true")))
			c->sub.local = true;
	}
}

void pins__cargo(const struct pins__file *f)
{
	struct cargo c;
	memset(&c, 0, sizeof(c));
	c.f = f;
	toml__read(f->data, f->n, cargo_kv, &c);
	cargo_flush(&c);
	if (c.any && !f->locked)
		pins__lockfile_missing(f, "rust", "Cargo.lock",
				       "run `cargo generate-lockfile` and commit Cargo.lock");
}
