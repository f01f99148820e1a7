/* deps: the dependency finder — which versions a tree actually carries, read from installed
 * metadata and lockfiles (Python dist-info/egg-info, exact requirements pins, poetry/uv/
 * Pipfile locks; npm lockfiles and node_modules; Gemfile.lock; go.sum; Cargo.lock; Dockerfile
 * base images). These are the app's files: anything malformed is skipped (debug log), never
 * an error. Reads only the files it is given. */
#include "release/release-internal.h"

#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEPS_FILE_MAX (64u * 1024 * 1024)
#define DEPS_MAX_DEPTH 64

/* ---- dep_list ----------------------------------------------------------------------------- */

void dep_list_done(struct dep_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].ecosystem);
		free(l->v[i].name);
		free(l->v[i].version);
		free(l->v[i].source);
	}
	free(l->v);
	memset(l, 0, sizeof(*l));
}

void dep_list_add(struct dep_list *l, const char *eco, const char *name, const char *version,
		  const char *source)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	l->v[l->n++] = (struct dep){ xstrdup(eco), xstrdup(name), xstrdup(version ? version : ""),
				     xstrdup(source ? source : "") };
}

static int cmp_dep(const void *a, const void *b)
{
	const struct dep *x = a, *y = b;
	int c = strcmp(x->ecosystem, y->ecosystem);
	if (!c)
		c = strcmp(x->name, y->name);
	if (!c)
		c = strcmp(x->version, y->version);
	if (!c)
		c = strcmp(x->source, y->source);
	return c;
}

void dep_list_sort(struct dep_list *l)
{
	size_t k = 0;
	if (l->n > 1)
		qsort(l->v, l->n, sizeof(*l->v), cmp_dep);
	for (size_t i = 0; i < l->n; i++) {
		if (k > 0 && !cmp_dep(&l->v[k - 1], &l->v[i])) {
			free(l->v[i].ecosystem);
			free(l->v[i].name);
			free(l->v[i].version);
			free(l->v[i].source);
			continue;
		}
		l->v[k++] = l->v[i];
	}
	l->n = k;
}

/* ---- Python ------------------------------------------------------------------------------- */

static void add_py(struct dep_list *l, const char *name, size_t nn, const char *ver, size_t vn,
		   const char *src)
{
	char *canon = pins__py_name(name, nn);
	char *v = xstrndup(ver, vn);
	if (*canon && *v)
		dep_list_add(l, "python", canon, v, src);
	free(canon);
	free(v);
}

/* METADATA / PKG-INFO: RFC 822 headers up to the first blank line. */
static void py_metadata(const char *d, size_t n, const char *src, struct dep_list *out)
{
	const char *p = d, *end = d + n, *name = NULL, *ver = NULL;
	size_t nn = 0, vn = 0;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *e = nl ? nl : end;
		size_t len = (size_t)(e - p);
		if (len && p[len - 1] == '\r')
			len--;
		if (len == 0)
			break;
		const char *colon = memchr(p, ':', len);
		if (colon && p[0] != ' ' && p[0] != '\t') {
			const char *v = colon + 1, *ve = p + len;
			while (v < ve && (*v == ' ' || *v == '\t'))
				v++;
			while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
				ve--;
			size_t kn = (size_t)(colon - p);
			if (kn == 4 && !strncasecmp(p, "Name", 4) && !name)
				name = v, nn = (size_t)(ve - v);
			else if (kn == 7 && !strncasecmp(p, "Version", 7) && !ver)
				ver = v, vn = (size_t)(ve - v);
		}
		p = nl ? nl + 1 : end;
	}
	if (name && ver)
		add_py(out, name, nn, ver, vn, src);
}

/* requirements lines of the form name[extras]==version (markers and options allowed). */
static void py_requirements(const char *d, size_t n, const char *src, struct dep_list *out)
{
	struct pins__reader rd;
	struct pins__lline ll;
	pins__reader_init(&rd, d, n);
	pins__lline_init(&ll);
	while (pins__next_lline(&rd, &ll, PINS_LINES_PIP)) {
		const char *t = buf_str(&ll.text);
		size_t len = ll.text.len, i = 0, s;
		while (i < len && (t[i] == ' ' || t[i] == '\t'))
			i++;
		s = i;
		while (i < len && (isalnum((unsigned char)t[i]) || strchr("-_.", t[i])))
			i++;
		size_t ne = i;
		while (i < len && (t[i] == ' ' || t[i] == '\t'))
			i++;
		if (i < len && t[i] == '[') {
			const char *c = memchr(t + i, ']', len - i);
			if (!c)
				continue;
			i = (size_t)(c - t) + 1;
			while (i < len && (t[i] == ' ' || t[i] == '\t'))
				i++;
		}
		if (ne == s || len - i < 3 || t[i] != '=' || t[i + 1] != '=')
			continue;
		i += t[i + 2] == '=' ? 3 : 2;
		while (i < len && (t[i] == ' ' || t[i] == '\t'))
			i++;
		size_t v = i;
		while (i < len && !strchr(" \t;,#\\", t[i]))
			i++;
		if (i > v && !memchr(t + v, '*', i - v) && (i == len || t[i] != ','))
			add_py(out, t + s, ne - s, t + v, i - v, src);
	}
	pins__lline_done(&ll);
}

static void pipfile_lock(json_t *root, const char *src, struct dep_list *out)
{
	static const char *const secs[] = { "default", "develop" };
	for (size_t s = 0; s < ARRAY_SIZE(secs); s++) {
		const char *name;
		json_t *v;
		json_object_foreach(json_object_get(root, secs[s]), name, v) {
			const char *ver = json_string_value(json_object_get(v, "version"));
			if (ver && str_starts(ver, "=="))
				add_py(out, name, strlen(name), ver + 2, strlen(ver + 2), src);
		}
	}
}

/* ---- [[package]] lockfiles (Cargo.lock, poetry.lock, uv.lock) ------------------------------ */

struct pkglock {
	struct dep_list *out;
	const char *src;
	bool python;
	char *name, *version; /* owned: the current [[package]] */
};

static void pkglock_flush(struct pkglock *pl)
{
	if (pl->name && pl->version) {
		if (pl->python)
			add_py(pl->out, pl->name, strlen(pl->name), pl->version,
			       strlen(pl->version), pl->src);
		else
			dep_list_add(pl->out, "rust", pl->name, pl->version, pl->src);
	}
	free(pl->name);
	free(pl->version);
	pl->name = pl->version = NULL;
}

static void pkglock_kv(void *ctx, const struct toml__seg *p, size_t n, size_t nh, unsigned seq,
		       const struct toml__val *v)
{
	struct pkglock *pl = ctx;
	(void)seq;
	if (!v) {
		pkglock_flush(pl);
		return;
	}
	if (nh != 1 || n != 2 || strcmp(p[0].s, "package") || v->kind != TOML_STR)
		return;
	char **slot = !strcmp(p[1].s, "name")	 ? &pl->name
		      : !strcmp(p[1].s, "version") ? &pl->version
						   : NULL;
	if (slot) {
		free(*slot);
		*slot = xstrdup(v->s);
	}
}

static void pkglock(const char *d, size_t n, const char *src, bool python, struct dep_list *out)
{
	struct pkglock pl = { out, src, python, NULL, NULL };
	toml__read(d, n, pkglock_kv, &pl);
	pkglock_flush(&pl);
}

/* ---- Node --------------------------------------------------------------------------------- */

static void npm_v1(json_t *deps, const char *src, struct dep_list *out, int depth)
{
	const char *name;
	json_t *v;
	if (depth > DEPS_MAX_DEPTH)
		return;
	json_object_foreach(deps, name, v) {
		const char *ver = json_string_value(json_object_get(v, "version"));
		if (ver)
			dep_list_add(out, "node", name, ver, src);
		npm_v1(json_object_get(v, "dependencies"), src, out, depth + 1);
	}
}

static void npm_lock(json_t *root, const char *src, struct dep_list *out)
{
	json_t *pk = json_object_get(root, "packages");
	const char *key;
	json_t *v;
	if (!json_is_object(pk)) {
		npm_v1(json_object_get(root, "dependencies"), src, out, 0);
		return;
	}
	json_object_foreach(pk, key, v) {
		const char *nm = NULL, *ver = json_string_value(json_object_get(v, "version"));
		for (const char *s = key; (s = strstr(s, "node_modules/")); s++)
			nm = s + strlen("node_modules/");
		if (nm && *nm && ver && !json_is_true(json_object_get(v, "link")))
			dep_list_add(out, "node", nm, ver, src);
	}
}

static void node_package(json_t *root, const char *src, struct dep_list *out)
{
	const char *name = json_string_value(json_object_get(root, "name"));
	const char *ver = json_string_value(json_object_get(root, "version"));
	if (name && ver && *name && *ver)
		dep_list_add(out, "node", name, ver, src);
}

/* Is rel a package's own package.json inside node_modules (x/ or @scope/x/)? */
static bool node_modules_package(const char *rel)
{
	const char *nm = NULL;
	for (const char *s = rel; (s = strstr(s, "node_modules/")); s++)
		if (s == rel || s[-1] == '/')
			nm = s + strlen("node_modules/");
	if (!nm || *nm == '.')
		return false;
	const char *slash = strchr(nm, '/');
	if (slash && nm[0] == '@')
		slash = strchr(slash + 1, '/');
	return slash && !strcmp(slash + 1, "package.json");
}

/* ---- Ruby, Go ----------------------------------------------------------------------------- */

static void gemfile_lock(const char *d, size_t n, const char *src, struct dep_list *out)
{
	const char *p = d, *end = d + n;
	bool gems = false, specs = false;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *e = nl ? nl : end;
		size_t len = (size_t)(e - p);
		if (len && p[len - 1] == '\r')
			len--;
		if (len && p[0] != ' ') {
			gems = (len == 3 && (!memcmp(p, "GEM", 3) || !memcmp(p, "GIT", 3))) ||
			       (len == 4 && !memcmp(p, "PATH", 4));
			specs = false;
		} else if (gems && len >= 3 && !memcmp(p, "  ", 2) && p[2] != ' ') {
			specs = len == 8 && !memcmp(p, "  specs:", 8);
		} else if (gems && specs && len > 4 && !memcmp(p, "    ", 4) && p[4] != ' ') {
			const char *open = memchr(p, '(', len);
			if (open && p[len - 1] == ')' && open > p + 5 && open[-1] == ' ') {
				char *name = xstrndup(p + 4, (size_t)(open - 1 - (p + 4)));
				char *ver = xstrndup(open + 1, (size_t)(p + len - 1 - open - 1));
				if (*ver)
					dep_list_add(out, "ruby", name, ver, src);
				free(name);
				free(ver);
			}
		}
		p = nl ? nl + 1 : end;
	}
}

static void go_sum(const char *d, size_t n, const char *src, struct dep_list *out)
{
	const char *p = d, *end = d + n;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *e = nl ? nl : end;
		const char *sp1 = memchr(p, ' ', (size_t)(e - p));
		const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(e - sp1 - 1)) : NULL;
		if (sp1 && sp2 && sp1 > p && sp2 > sp1 + 1) {
			char *mod = xstrndup(p, (size_t)(sp1 - p));
			char *ver = xstrndup(sp1 + 1, (size_t)(sp2 - sp1 - 1));
			if (!str_ends(ver, "/go.mod"))
				dep_list_add(out, "go", mod, ver, src);
			free(mod);
			free(ver);
		}
		p = nl ? nl + 1 : end;
	}
}

/* ---- Docker ------------------------------------------------------------------------------- */

struct dockctx {
	struct dep_list *out;
	const char *src;
};

static void docker_image(void *ctx, const struct pins__from *fr)
{
	struct dockctx *dc = ctx;
	const char *ref = fr->resolved;
	if (!ref || !*ref || strchr(ref, '$'))
		return;
	const char *at = strchr(ref, '@');
	size_t nn = at ? (size_t)(at - ref) : strlen(ref);
	const char *slash = memrchr(ref, '/', nn);
	const char *from = slash ? slash : ref;
	const char *colon = memchr(from, ':', nn - (size_t)(from - ref));
	size_t namelen = colon ? (size_t)(colon - ref) : nn;
	char *name = xstrndup(ref, namelen);
	int tagn = colon ? (int)(nn - namelen - 1) : 0;
	char *ver = xasprintf("%.*s%s%s", tagn, colon ? colon + 1 : "", at ? "@" : "",
			      at ? at + 1 : "");
	if (!*ver) {
		free(ver);
		ver = xstrdup("latest");
	}
	dep_list_add(dc->out, "docker", name, ver, dc->src);
	free(name);
	free(ver);
}

/* ---- dispatch ----------------------------------------------------------------------------- */

static bool in_installed_dir(const char *rel)
{
	static const char *const dirs[] = { "node_modules", "site-packages", "dist-packages",
					    ".git" };
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		size_t k = strlen(dirs[i]);
		for (const char *s = rel; (s = strstr(s, dirs[i])); s++)
			if ((s == rel || s[-1] == '/') && s[k] == '/')
				return true;
	}
	return false;
}

static bool parent_ends(const char *rel, const char *base, const char *suffix)
{
	size_t n = strlen(rel), b = strlen(base), s = strlen(suffix);
	if (n < b + 1 + s || strcmp(rel + n - b, base) || rel[n - b - 1] != '/')
		return false;
	return !strncmp(rel + n - b - 1 - s, suffix, s);
}

static json_t *load_json(const char *d, size_t n, const char *src)
{
	json_error_t je;
	json_t *j = json_loadb(d, n, 0, &je);
	if (!j || !json_is_object(j)) {
		log_debug("deps", "%s skipped: %s", src, j ? "not a JSON object" : je.text);
		json_decref(j);
		return NULL;
	}
	return j;
}

int deps_scan_text(const char *name, const char *data, size_t n, struct dep_list *out)
{
	const char *slash = strrchr(name, '/');
	const char *base = slash ? slash + 1 : name;
	json_t *j;

	if (n >= 3 && !memcmp(data, "\xef\xbb\xbf", 3)) { /* a UTF-8 byte order mark */
		data += 3;
		n -= 3;
	}
	if (parent_ends(name, "METADATA", ".dist-info") ||
	    parent_ends(name, "PKG-INFO", ".egg-info") || str_ends(name, ".egg-info")) {
		py_metadata(data, n, name, out);
		return 1;
	}
	if (!strcmp(base, "package.json") && node_modules_package(name)) {
		if ((j = load_json(data, n, name)))
			node_package(j, name, out);
		json_decref(j);
		return 1;
	}
	if (in_installed_dir(name))
		return 0;
	if (pins__kind_of(name) == PINS_REQUIREMENTS) {
		py_requirements(data, n, name, out);
	} else if (!strcmp(base, "package-lock.json") || !strcmp(base, "npm-shrinkwrap.json")) {
		if ((j = load_json(data, n, name)))
			npm_lock(j, name, out);
		json_decref(j);
	} else if (!strcmp(base, "Pipfile.lock")) {
		if ((j = load_json(data, n, name)))
			pipfile_lock(j, name, out);
		json_decref(j);
	} else if (!strcmp(base, "poetry.lock") || !strcmp(base, "uv.lock")) {
		pkglock(data, n, name, true, out);
	} else if (!strcmp(base, "Cargo.lock")) {
		pkglock(data, n, name, false, out);
	} else if (!strcmp(base, "Gemfile.lock")) {
		gemfile_lock(data, n, name, out);
	} else if (!strcmp(base, "go.sum")) {
		go_sum(data, n, name, out);
	} else if (pins__kind_of(name) == PINS_DOCKERFILE) {
		struct dockctx dc = { out, name };
		pins__docker_parse(data, n, docker_image, NULL, &dc);
	} else {
		return 0;
	}
	return 1;
}

static bool wanted(const char *rel)
{
	const char *slash = strrchr(rel, '/');
	const char *base = slash ? slash + 1 : rel;
	static const char *const names[] = { "package.json", "package-lock.json",
					     "npm-shrinkwrap.json", "Pipfile.lock", "poetry.lock",
					     "uv.lock", "Cargo.lock", "Gemfile.lock", "go.sum" };
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (!strcmp(base, names[i]))
			return true;
	enum pins__kind k = pins__kind_of(rel);
	return k == PINS_REQUIREMENTS || k == PINS_DOCKERFILE || str_ends(rel, ".egg-info") ||
	       parent_ends(rel, "METADATA", ".dist-info") ||
	       parent_ends(rel, "PKG-INFO", ".egg-info");
}

int deps_scan(const char *root, const struct strv *files, struct dep_list *out, struct err *e)
{
	struct buf b;
	(void)e;
	buf_init(&b, DEPS_FILE_MAX);
	for (size_t i = 0; i < files->n; i++) {
		const char *rel = files->v[i];
		struct err fe;
		if (!wanted(rel))
			continue;
		if (!strcmp(strrchr(rel, '/') ? strrchr(rel, '/') + 1 : rel, "package.json") &&
		    !node_modules_package(rel))
			continue;
		char *abs = xasprintf("%s/%s", root, rel);
		buf_reset(&b);
		if (fs_read_file(abs, &b, &fe) < 0)
			log_debug("deps", "%s skipped: %s", rel, fe.msg);
		else
			deps_scan_text(rel, buf_str(&b), b.len, out);
		free(abs);
	}
	buf_done(&b);
	dep_list_sort(out);
	return 0;
}
