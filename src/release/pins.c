/* pins: finds unpinned and floating dependency specifications in a tree — the walk (which
 * never follows symlinks and skips installed-package directories), lockfile detection,
 * version hints for fix texts, the report and its printing. The per-format readers live in
 * pins-*.c; this file never interprets a manifest's contents itself. */
#include "release/release-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PINS_MAX_DEPTH 128

/* ---- report ----------------------------------------------------------------------------- */

void pin_report_done(struct pin_report *r)
{
	for (size_t i = 0; i < r->n; i++) {
		struct pin_finding *p = &r->v[i];
		free(p->file);
		free(p->ecosystem);
		free(p->spec);
		free(p->problem);
		free(p->fix);
	}
	free(r->v);
	memset(r, 0, sizeof(*r));
}

void pins__add_owned(const struct pins__file *f, int line, int col, const char *eco,
		     const char *spec, char *problem, char *fix)
{
	struct pin_report *r = f->r;
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 16;
		r->v = xrealloc(r->v, r->cap * sizeof(*r->v));
	}
	r->v[r->n++] = (struct pin_finding){ xstrdup(f->path), line, col, xstrdup(eco),
					     xstrdup(spec), problem, fix };
}

void pins__add(const struct pins__file *f, int line, int col, const char *eco, const char *spec,
	       const char *problem, const char *fix)
{
	pins__add_owned(f, line, col, eco, spec, xstrdup(problem), xstrdup(fix));
}

void pins__lockfile_missing(const struct pins__file *f, const char *eco, const char *lock,
			    const char *fix)
{
	const char *base = strrchr(f->path, '/');
	pins__add_owned(f, 1, 1, eco, base ? base + 1 : f->path,
			xasprintf("no %s beside it: the versions of indirect dependencies are not "
				  "pinned",
				  lock),
			xstrdup(fix));
}

char *pins__hint(const struct pins__file *f, const char *eco, const char *name)
{
	return f->hint ? f->hint(f->hint_ctx, eco, name) : NULL;
}

static int cmp_finding(const void *a, const void *b)
{
	const struct pin_finding *x = a, *y = b;
	int c = strcmp(x->file, y->file);
	if (c)
		return c;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	if (x->col != y->col)
		return x->col < y->col ? -1 : 1;
	return strcmp(x->spec, y->spec);
}

/* ---- kinds and dispatch ----------------------------------------------------------------- */

enum pins__kind pins__kind_of(const char *relpath)
{
	const char *slash = strrchr(relpath, '/');
	const char *base = slash ? slash + 1 : relpath;
	bool in_req_dir = slash && slash - relpath >= 12 &&
			  !strncmp(slash - 12, "requirements", 12) &&
			  (slash - relpath == 12 || slash[-13] == '/');

	if (str_ends(base, ".txt") &&
	    (str_starts(base, "requirements") || str_starts(base, "constraints") || in_req_dir))
		return PINS_REQUIREMENTS;
	if (!strcmp(base, "pyproject.toml"))
		return PINS_PYPROJECT;
	if (!strcmp(base, "Pipfile"))
		return PINS_PIPFILE;
	if (!strcmp(base, "package.json"))
		return PINS_PACKAGE_JSON;
	if (!strcmp(base, "Gemfile"))
		return PINS_GEMFILE;
	if (!strcmp(base, "go.mod"))
		return PINS_GOMOD;
	if (!strcmp(base, "Cargo.toml"))
		return PINS_CARGO;
	if (str_ends(base, ".dockerignore"))
		return PINS_NONE;
	if (!strcmp(base, "Dockerfile") || str_starts(base, "Dockerfile.") ||
	    str_ends(base, ".Dockerfile") || str_ends(base, ".dockerfile") ||
	    !strcmp(base, "Containerfile") || str_starts(base, "Containerfile."))
		return PINS_DOCKERFILE;
	if (str_ends(base, ".sh"))
		return PINS_SHELL;
	return PINS_NONE;
}

static void dispatch(enum pins__kind k, struct pins__file *f)
{
	if (f->n >= 3 && !memcmp(f->data, "\xef\xbb\xbf", 3)) { /* a UTF-8 byte order mark */
		f->data += 3;
		f->n -= 3;
	}
	switch (k) {
	case PINS_REQUIREMENTS: pins__requirements(f); break;
	case PINS_PYPROJECT: pins__pyproject(f); break;
	case PINS_PIPFILE: pins__pipfile(f); break;
	case PINS_PACKAGE_JSON: pins__package_json(f); break;
	case PINS_GEMFILE: pins__gemfile(f); break;
	case PINS_GOMOD: pins__gomod(f); break;
	case PINS_CARGO: pins__cargo(f); break;
	case PINS_DOCKERFILE: pins__dockerfile(f); break;
	case PINS_SHELL: pins__shell(f); break;
	case PINS_NONE: break;
	}
}

int pins_scan_text(const char *name, const char *data, size_t n, struct pin_report *out)
{
	enum pins__kind k = pins__kind_of(name);
	struct pins__file f = { .path = name, .data = data, .n = n, .r = out };
	if (k == PINS_NONE)
		return 0;
	dispatch(k, &f);
	out->files_scanned++;
	if (out->n > 1)
		qsort(out->v, out->n, sizeof(*out->v), cmp_finding);
	return 1;
}

/* ---- the walk --------------------------------------------------------------------------- */

struct pins_walk {
	const char *root;
	const struct strv *exclude;
	struct strv files;    /* tree-relative manifests */
	struct strv sitepkgs; /* tree-relative site-packages / dist-packages dirs (hints) */
};

static bool excluded(const struct strv *ex, const char *name, const char *rel)
{
	for (size_t i = 0; ex && i < ex->n; i++) {
		const char *x = ex->v[i];
		size_t xn = strlen(x);
		while (xn > 1 && x[xn - 1] == '/')
			xn--;
		if (memchr(x, '/', xn)) {
			if (!strncmp(rel, x, xn) && (rel[xn] == 0 || rel[xn] == '/'))
				return true;
		} else if (strlen(name) == xn && !strncmp(name, x, xn)) {
			return true;
		}
	}
	return false;
}

static bool has_entry(int dfd, const char *name)
{
	return faccessat(dfd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Directories of installed or generated packages: never the app's own manifests. */
static bool skip_dir(const char *name, const char *parent_rel, int fd)
{
	static const char *const names[] = { ".git", ".hg", ".svn", "node_modules", "__pycache__",
					     "site-packages", "dist-packages", "bower_components",
					     ".bundle", ".tox", ".nox" };
	const char *pslash = strrchr(parent_rel, '/');
	const char *parent = pslash ? pslash + 1 : parent_rel;
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (!strcmp(name, names[i]))
			return true;
	if (!strcmp(name, "bundle") && !strcmp(parent, "vendor"))
		return true; /* bundler's vendor/bundle */
	if (!strcmp(name, "vendor") && has_entry(fd, "modules.txt"))
		return true; /* go mod vendor */
	return has_entry(fd, "pyvenv.cfg") || has_entry(fd, "CACHEDIR.TAG");
}

static char *rel_join(const char *rel, const char *name)
{
	return *rel ? xasprintf("%s/%s", rel, name) : xstrdup(name);
}

/* A virtualenv is skipped, but what it has installed gives versions for fix texts:
 * records lib/python* /site-packages. Takes fd over. */
static void venv_site_packages(struct pins_walk *w, int fd, const char *rel)
{
	int lfd = openat(fd, "lib", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = lfd >= 0 ? fdopendir(lfd) : NULL;
	struct dirent *de;

	close(fd);
	if (!d) {
		if (lfd >= 0)
			close(lfd);
		return;
	}
	while ((de = readdir(d))) {
		if (!str_starts(de->d_name, "python"))
			continue;
		char *sp = xasprintf("%s/site-packages", de->d_name);
		struct stat st;
		if (fstatat(dirfd(d), sp, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
			strv_push_owned(&w->sitepkgs, xasprintf("%s/lib/%s", rel, sp));
		free(sp);
	}
	closedir(d);
}

static void walk_dir(struct pins_walk *w, int fd, const char *rel, int depth)
{
	DIR *d = fdopendir(fd);
	struct dirent *de;

	if (!d) {
		close(fd);
		return;
	}
	while ((de = readdir(d))) {
		const char *name = de->d_name;
		unsigned char type = de->d_type;
		if (!strcmp(name, ".") || !strcmp(name, ".."))
			continue;
		char *child = rel_join(rel, name);
		if (excluded(w->exclude, name, child)) {
			free(child);
			continue;
		}
		/* d_type saves a stat per entry on file systems that fill it in */
		if (type == DT_UNKNOWN) {
			struct stat st;
			if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
				free(child);
				continue;
			}
			type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_LNK;
		}
		if (type == DT_DIR) {
			int cfd = openat(dirfd(d), name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (cfd < 0 || depth >= PINS_MAX_DEPTH) {
				log_debug("pins", "%s: not descended into", child);
				if (cfd >= 0)
					close(cfd);
			} else if (skip_dir(name, rel, cfd)) {
				bool sp = !strcmp(name, "site-packages") ||
					  !strcmp(name, "dist-packages");
				if (sp)
					strv_push(&w->sitepkgs, child);
				else if (has_entry(cfd, "pyvenv.cfg"))
					venv_site_packages(w, cfd, child);
				else
					close(cfd);
			} else {
				walk_dir(w, cfd, child, depth + 1);
			}
		} else if (type == DT_REG && pins__kind_of(child) != PINS_NONE) {
			strv_push(&w->files, child);
		}
		free(child);
	}
	closedir(d);
}

/* ---- lockfiles -------------------------------------------------------------------------- */

static bool exists_in(const char *root, const char *dir, const char *name)
{
	char *p = *dir ? xasprintf("%s/%s/%s", root, dir, name) : xasprintf("%s/%s", root, name);
	struct stat st;
	bool ok = lstat(p, &st) == 0 && S_ISREG(st.st_mode);
	free(p);
	return ok;
}

static bool any_in(const char *root, const char *dir, const char *const *names)
{
	for (; *names; names++)
		if (exists_in(root, dir, *names))
			return true;
	return false;
}

static bool file_has(const char *root, const char *dir, const char *name, const char *needle,
		     bool json_key)
{
	char *p = *dir ? xasprintf("%s/%s/%s", root, dir, name) : xasprintf("%s/%s", root, name);
	struct buf b;
	bool found = false;
	buf_init(&b, PINS_FILE_MAX);
	if (fs_read_file(p, &b, NULL) == 0) {
		if (json_key) {
			json_t *j = json_loadb(b.data ? b.data : "", b.len, 0, NULL);
			found = j && json_object_get(j, needle);
			json_decref(j);
		} else {
			for (const char *s = buf_str(&b); (s = strstr(s, needle)); s++)
				if (s == b.data || s[-1] == '\n') {
					found = true;
					break;
				}
		}
	}
	buf_done(&b);
	free(p);
	return found;
}

static bool locked(const char *root, const char *rel, enum pins__kind k)
{
	static const char *const py[] = { "poetry.lock", "uv.lock", "pdm.lock", NULL };
	static const char *const node[] = { "package-lock.json", "npm-shrinkwrap.json",
					    "yarn.lock", "pnpm-lock.yaml", NULL };
	static const char *const pipfile[] = { "Pipfile.lock", NULL };
	static const char *const gem[] = { "Gemfile.lock", NULL };
	static const char *const gosum[] = { "go.sum", NULL };
	static const char *const cargo[] = { "Cargo.lock", NULL };
	const char *slash = strrchr(rel, '/');
	char *dir = slash ? xstrndup(rel, (size_t)(slash - rel)) : xstrdup("");
	bool ok = false;

	switch (k) {
	case PINS_PYPROJECT: ok = any_in(root, dir, py); break;
	case PINS_PIPFILE: ok = any_in(root, dir, pipfile); break;
	case PINS_GEMFILE: ok = any_in(root, dir, gem); break;
	case PINS_GOMOD: ok = any_in(root, dir, gosum); break;
	case PINS_PACKAGE_JSON:
	case PINS_CARGO: {
		bool node_k = k == PINS_PACKAGE_JSON;
		ok = any_in(root, dir, node_k ? node : cargo);
		/* or a workspace root above it with the lockfile */
		while (!ok && *dir) {
			char *up = strrchr(dir, '/');
			if (up)
				*up = 0;
			else
				dir[0] = 0;
			if (!any_in(root, dir, node_k ? node : cargo))
				continue;
			ok = node_k ? file_has(root, dir, "package.json", "workspaces", true) ||
					      exists_in(root, dir, "pnpm-workspace.yaml")
				    : file_has(root, dir, "Cargo.toml", "[workspace]", false);
		}
		break;
	}
	default: break;
	}
	free(dir);
	return ok;
}

/* ---- version hints ---------------------------------------------------------------------- */

struct hintctx {
	const struct pins_walk *w;
	const char *rel; /* the manifest */
};

static char *py_hint(const struct pins_walk *w, const char *name)
{
	char *found = NULL;
	for (size_t i = 0; i < w->sitepkgs.n; i++) {
		char *p = xasprintf("%s/%s", w->root, w->sitepkgs.v[i]);
		DIR *d = opendir(p);
		struct dirent *de;
		free(p);
		while (d && (de = readdir(d))) {
			const char *dash = strchr(de->d_name, '-');
			if (!dash || !str_ends(de->d_name, ".dist-info"))
				continue;
			char *n = pins__py_name(de->d_name, (size_t)(dash - de->d_name));
			if (!strcmp(n, name)) {
				size_t vn = strlen(dash + 1) - strlen(".dist-info");
				char *v = xstrndup(dash + 1, vn);
				if (found && strcmp(found, v)) { /* two versions: no answer */
					free(v);
					free(n);
					free(found);
					closedir(d);
					return NULL;
				}
				free(found);
				found = v;
			}
			free(n);
		}
		if (d)
			closedir(d);
	}
	return found;
}

static char *node_hint(const struct pins_walk *w, const char *rel, const char *name)
{
	const char *slash = strrchr(rel, '/');
	char *p = slash ? xasprintf("%s/%.*s/node_modules/%s/package.json", w->root,
				    (int)(slash - rel), rel, name)
			: xasprintf("%s/node_modules/%s/package.json", w->root, name);
	struct buf b;
	char *v = NULL;
	buf_init(&b, PINS_FILE_MAX);
	if (!strstr(name, "..") && fs_read_file(p, &b, NULL) == 0) {
		json_t *j = json_loadb(b.data ? b.data : "", b.len, 0, NULL);
		const char *s = json_string_value(json_object_get(j, "version"));
		if (s)
			v = xstrdup(s);
		json_decref(j);
	}
	buf_done(&b);
	free(p);
	return v;
}

static char *hint(void *ctx, const char *eco, const char *name)
{
	const struct hintctx *h = ctx;
	if (!strcmp(eco, "python"))
		return py_hint(h->w, name);
	if (!strcmp(eco, "node"))
		return node_hint(h->w, h->rel, name);
	return NULL;
}

/* ---- scan ------------------------------------------------------------------------------- */

/* Resolves a requirements include relative to the including file; NULL when it leaves the
 * tree, is excluded, passes through a symlink or is not a regular file. */
static char *resolve_include(const struct pins_walk *w, const char *from, const char *target)
{
	const char *slash = strrchr(from, '/');
	char *joined = slash ? xasprintf("%.*s/%s", (int)(slash - from), from, target)
			     : xstrdup(target);
	struct strv parts;
	struct buf out;
	char *res = NULL;

	strv_init(&parts);
	buf_init(&out, PINS_FILE_MAX);
	if (target[0] == '/' || strstr(target, "://"))
		goto done;
	for (char *s = joined, *tok; (tok = strsep(&s, "/"));) {
		if (!*tok || !strcmp(tok, "."))
			continue;
		if (!strcmp(tok, "..")) {
			if (!parts.n)
				goto done;
			free(parts.v[--parts.n]);
			parts.v[parts.n] = NULL;
			continue;
		}
		strv_push(&parts, tok);
	}
	for (size_t i = 0; i < parts.n; i++) {
		struct stat st;
		if (i)
			buf_addc(&out, '/');
		buf_adds(&out, parts.v[i]);
		char *abs = xasprintf("%s/%s", w->root, buf_str(&out));
		bool last = i + 1 == parts.n;
		int r = lstat(abs, &st);
		free(abs);
		if (r < 0 || excluded(w->exclude, parts.v[i], buf_str(&out)) ||
		    (last ? !S_ISREG(st.st_mode) : !S_ISDIR(st.st_mode)))
			goto done;
	}
	if (parts.n)
		res = buf_detach(&out);
done:
	buf_done(&out);
	strv_done(&parts);
	free(joined);
	return res;
}

static bool listed(const struct strv *a, const struct strv *b, const char *s)
{
	for (size_t i = 0; i < a->n; i++)
		if (!strcmp(a->v[i], s))
			return true;
	for (size_t i = 0; i < b->n; i++)
		if (!strcmp(b->v[i], s))
			return true;
	return false;
}

static void scan_one(struct pins_walk *w, const char *rel, enum pins__kind k, struct strv *includes,
		     struct pin_report *r)
{
	char *abs = xasprintf("%s/%s", w->root, rel);
	struct buf b;
	struct err e;
	struct hintctx hc = { w, rel };
	struct pins__file f = { .path = rel, .hint = hint, .hint_ctx = &hc, .r = r };

	buf_init(&b, PINS_FILE_MAX);
	if (fs_read_file(abs, &b, &e) < 0) {
		log_debug("pins", "%s skipped: %s", rel, e.msg);
	} else {
		f.data = buf_str(&b);
		f.n = b.len;
		f.locked = locked(w->root, rel, k);
		f.includes = includes;
		dispatch(k, &f);
		r->files_scanned++;
	}
	buf_done(&b);
	free(abs);
}

int pins_scan(const char *dir, const struct strv *exclude, struct pin_report *out, struct err *e)
{
	struct pins_walk w = { .root = dir, .exclude = exclude };
	struct pin_report r = { 0 };
	struct strv incl, queued;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0) {
		int en = errno;
		if (en == ENOENT)
			return err_set(e, CAIRN_EINPUT,
				       "%s: no such directory; give the app's directory", dir);
		if (en == ENOTDIR)
			return err_set(e, CAIRN_EINPUT,
				       "%s is not a directory; give the directory that holds it",
				       dir);
		return err_set(e, en, "cannot open %s: %s", dir, strerror(en));
	}
	strv_init(&w.files);
	strv_init(&w.sitepkgs);
	strv_init(&incl);
	strv_init(&queued);
	walk_dir(&w, fd, "", 0);
	strv_sort(&w.files);
	for (size_t i = 0; i < w.files.n; i++) {
		enum pins__kind k = pins__kind_of(w.files.v[i]);
		scan_one(&w, w.files.v[i], k, k == PINS_REQUIREMENTS ? &incl : NULL, &r);
		/* files named by -r / -c that the walk did not pick up by name */
		for (size_t j = 0; j < incl.n; j++) {
			char *t = resolve_include(&w, w.files.v[i], incl.v[j]);
			if (t && !listed(&w.files, &queued, t))
				strv_push_owned(&queued, t);
			else
				free(t);
		}
		strv_done(&incl);
	}
	for (size_t i = 0; i < queued.n; i++) {
		scan_one(&w, queued.v[i], PINS_REQUIREMENTS, &incl, &r);
		for (size_t j = 0; j < incl.n; j++) {
			char *t = resolve_include(&w, queued.v[i], incl.v[j]);
			if (t && !listed(&w.files, &queued, t))
				strv_push_owned(&queued, t);
			else
				free(t);
		}
		strv_done(&incl);
	}
	if (r.n > 1)
		qsort(r.v, r.n, sizeof(*r.v), cmp_finding);
	strv_done(&w.files);
	strv_done(&w.sitepkgs);
	strv_done(&queued);
	*out = r;
	return 0;
}

/* ---- printing --------------------------------------------------------------------------- */

void pins_print(const struct pin_report *r, FILE *out)
{
	size_t files = 0;
	for (size_t i = 0; i < r->n; i++) {
		const struct pin_finding *p = &r->v[i];
		if (i == 0 || strcmp(p->file, r->v[i - 1].file))
			files++;
		fprintf(out, "%s:%d:%d: unpinned: %s \u2014 %s\n    fix: %s\n", p->file, p->line,
			p->col, p->spec, p->problem, p->fix);
	}
	if (r->n)
		fprintf(out, "%zu unpinned %s in %zu %s (%zu %s scanned)\n", r->n,
			r->n == 1 ? "dependency" : "dependencies", files,
			files == 1 ? "file" : "files",
			r->files_scanned, r->files_scanned == 1 ? "file" : "files");
	else
		fprintf(out, "all dependencies pinned (%zu %s scanned)\n", r->files_scanned,
			r->files_scanned == 1 ? "file" : "files");
}
