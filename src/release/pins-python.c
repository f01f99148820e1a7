/* pins-python: floating Python dependencies — requirements*.txt / constraints*.txt lines,
 * pyproject.toml ([project] dependencies, [tool.poetry.*dependencies]) and Pipfile.
 * The PEP 508 classifier here is also used for `pip install` words in Dockerfiles and
 * scripts. Reads only the bytes it is given. */
#include "release/release-internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool is_name_char(char c)
{
	return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.';
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool has_prefix(const char *s, size_t n, const char *p)
{
	size_t k = strlen(p);
	return n >= k && strncasecmp(s, p, k) == 0;
}

static const char *find_str(const char *s, size_t n, const char *needle)
{
	size_t k = strlen(needle);
	for (size_t i = 0; i + k <= n; i++)
		if (!memcmp(s + i, needle, k))
			return s + i;
	return NULL;
}

static bool is_vcs(const char *u, size_t n)
{
	return has_prefix(u, n, "git+") || has_prefix(u, n, "hg+") || has_prefix(u, n, "svn+") ||
	       has_prefix(u, n, "bzr+") || has_prefix(u, n, "git://");
}

/* scheme://... at the start (a bare URL rather than name @ URL) */
static bool is_url(const char *s, size_t n)
{
	size_t i = 0;
	if (!n || !isalpha((unsigned char)s[0]))
		return false;
	while (i < n && (isalnum((unsigned char)s[i]) || s[i] == '+' || s[i] == '.' || s[i] == '-'))
		i++;
	return n - i >= 3 && !memcmp(s + i, "://", 3);
}

/* Classifies a URL requirement. Returns a malloc'd problem or NULL. */
static char *url_problem(const char *u, size_t n, bool hashed, char **out_fix)
{
	const char *frag = memchr(u, '#', n);
	size_t end = frag ? (size_t)(frag - u) : n;
	const char *scheme = find_str(u, end, "://");

	if (is_vcs(u, n)) {
		size_t path = scheme ? (size_t)(scheme - u) + 3 : 0, at = SIZE_MAX;
		while (path < end && u[path] != '/')
			path++;
		for (size_t i = path; i < end; i++)
			if (u[i] == '@')
				at = i;
		const char *ref = at == SIZE_MAX ? NULL : u + at + 1;
		size_t refn = ref ? end - at - 1 : 0;
		bool svn = has_prefix(u, n, "svn+");
		bool ok = ref && ((!svn && pins__is_hex(ref, refn) && (refn == 40 || refn == 64)) ||
				  (svn && refn && strspn(ref, "0123456789") >= refn));
		if (ok)
			return NULL;
		size_t base = at == SIZE_MAX ? end : at;
		*out_fix = xasprintf("pin a full commit: %.*s@<40-hex commit>%.*s (`git ls-remote "
				     "URL REF` prints it)",
				     (int)base, u, (int)(n - end), u + end);
		if (!ref)
			return xstrdup("VCS URL without a commit: the default branch's head at "
				       "build time is installed");
		return xasprintf("VCS reference @%.*s is a branch or tag: it can move", (int)refn,
				 ref);
	}
	if (has_prefix(u, n, "http://") || has_prefix(u, n, "https://") ||
	    has_prefix(u, n, "ftp://")) {
		if (hashed)
			return NULL;
		if (frag && (find_str(frag, n - end, "sha256=") ||
			     find_str(frag, n - end, "sha384=") ||
			     find_str(frag, n - end, "sha512=")))
			return NULL;
		*out_fix = xasprintf("add the file's hash: %.*s#sha256=<digest> (`pip hash FILE` "
				     "prints it), or --hash=sha256:<digest>",
				     (int)end, u);
		return xstrdup("URL without a hash: the file behind it can change");
	}
	return NULL; /* file: URLs and unknown schemes point at local or unknowable things */
}

static bool looks_local(const char *s, size_t n)
{
	size_t tok = 0;
	while (tok < n && !is_blank(s[tok]) && s[tok] != ';')
		tok++;
	if (n && (s[0] == '.' || s[0] == '/' || s[0] == '~'))
		return true;
	if (find_str(s, tok, "://"))
		return false; /* name@URL */
	if (memchr(s, '/', tok) || memchr(s, '\\', tok))
		return true;
	static const char *const ext[] = { ".whl", ".zip", ".tar.gz", ".tgz", ".tar.bz2" };
	for (size_t i = 0; i < ARRAY_SIZE(ext); i++) {
		size_t k = strlen(ext[i]);
		if (tok >= k && !strncasecmp(s + tok - k, ext[i], k))
			return true;
	}
	return false;
}

static char *exact_fix(const struct pins__file *f, const char *name, size_t nn, const char *extra,
		       size_t en)
{
	char *canon = pins__py_name(name, nn);
	char *hint = pins__hint(f, "python", canon);
	char *fix;
	if (hint)
		fix = xasprintf("pin an exact version: %.*s%.*s==%s (the version installed in "
				"this tree)",
				(int)nn, name, (int)en, extra, hint);
	else
		fix = xasprintf("pin an exact version: %.*s%.*s==VERSION (`pip freeze` where you "
				"tested shows it; pip-compile pins the whole tree)",
				(int)nn, name, (int)en, extra);
	free(hint);
	free(canon);
	return fix;
}

void pins__pep508(const struct pins__file *f, const char *req, size_t n, bool hashed,
		  size_t *out_spec_len, char **out_problem, char **out_fix)
{
	size_t i = 0, j, spec_end;
	bool exact = false, wild = false, compat = false, lower = false, upper = false, ne = false;
	size_t clauses = 0;

	*out_problem = *out_fix = NULL;
	while (n && is_blank(req[n - 1]))
		n--;
	*out_spec_len = n;
	if (!n)
		return;
	size_t tok = 0;
	while (tok < n && !is_blank(req[tok]))
		tok++;
	if (is_vcs(req, n) || is_url(req, tok)) {
		*out_spec_len = tok;
		*out_problem = url_problem(req, tok, hashed, out_fix);
		return;
	}
	if (looks_local(req, n))
		return;
	while (i < n && is_name_char(req[i]))
		i++;
	if (i == 0)
		return;
	j = i;
	while (j < n && is_blank(req[j]))
		j++;
	size_t ex = j, exn = 0;
	if (j < n && req[j] == '[') {
		const char *close = memchr(req + j, ']', n - j);
		if (!close)
			return;
		exn = (size_t)(close - req) + 1 - j;
		j += exn;
	}
	while (j < n && is_blank(req[j]))
		j++;
	if (j < n && req[j] == '@') { /* name @ URL */
		j++;
		while (j < n && is_blank(req[j]))
			j++;
		size_t u = j;
		while (j < n && !is_blank(req[j]))
			j++;
		*out_spec_len = j;
		*out_problem = url_problem(req + u, j - u, hashed, out_fix);
		return;
	}
	const char *semi = memchr(req + j, ';', n - j);
	spec_end = semi ? (size_t)(semi - req) : n;
	*out_spec_len = spec_end;
	while (*out_spec_len > 0 && is_blank(req[*out_spec_len - 1]))
		(*out_spec_len)--;
	/* clauses: op version, separated by commas, optionally in parentheses */
	for (size_t k = j; k < spec_end;) {
		while (k < spec_end && (is_blank(req[k]) || req[k] == ',' || req[k] == '(' ||
					req[k] == ')'))
			k++;
		if (k >= spec_end)
			break;
		size_t c = k;
		while (k < spec_end && req[k] != ',' && req[k] != ')')
			k++;
		const char *cl = req + c;
		size_t cn = k - c;
		const char *star = memchr(cl, '*', cn);
		clauses++;
		if (has_prefix(cl, cn, "==="))
			exact = true;
		else if (has_prefix(cl, cn, "=="))
			*(star ? &wild : &exact) = true;
		else if (has_prefix(cl, cn, "~="))
			compat = true;
		else if (has_prefix(cl, cn, "!="))
			ne = true;
		else if (has_prefix(cl, cn, ">"))
			lower = true;
		else if (has_prefix(cl, cn, "<"))
			upper = true;
		else
			return; /* not a specifier we understand: pip would refuse the line */
	}
	if (exact)
		return;
	const char *what;
	if (!clauses)
		what = "no version: the newest release at build time is installed";
	else if (wild)
		what = "wildcard version: any matching release may be installed";
	else if (compat)
		what = "compatible-release range (~=): newer releases of the series are installed "
		       "as they appear";
	else if (lower && upper)
		what = "version range: any release in the range may be installed, and new ones "
		       "appear";
	else if (lower)
		what = "lower bound only: any newer release may be installed";
	else if (upper)
		what = "upper bound only: any release below it may be installed, also ones published "
		       "later";
	else if (ne)
		what = "exclusions only: any other release may be installed";
	else
		what = "not an exact version";
	*out_problem = xstrdup(what);
	*out_fix = exact_fix(f, req, i, req + ex, exn);
}

/* ---- requirements*.txt ------------------------------------------------------------------ */

static void report(const struct pins__file *f, const struct pins__lline *ll, size_t off,
		   const char *spec, size_t spec_len, char *problem, char *fix)
{
	int line, col;
	char *s = xmalloc(spec_len + 1), *o = s;
	for (size_t i = 0; i < spec_len; i++) /* continuation lines leave runs of blanks */
		if (!is_blank(spec[i]) || (o > s && !is_blank(o[-1])))
			*o++ = is_blank(spec[i]) ? ' ' : spec[i];
	*o = 0;
	pins__lline_pos(ll, off, &line, &col);
	pins__add_owned(f, line, col, "python", s, problem, fix);
	free(s);
}

static bool opt_is(const char *opt, size_t n, const char *name)
{
	return n == strlen(name) && !strncmp(opt, name, n);
}

static void requirement_option(const struct pins__file *f, const struct pins__lline *ll,
			       size_t s, size_t e)
{
	const char *t = ll->text.data;
	size_t o = s, a;
	while (o < e && !is_blank(t[o]) && t[o] != '=')
		o++;
	size_t optn = o - s;
	bool is_short = optn >= 2 && t[s + 1] != '-';
	if (is_short && optn > 2) { /* -rfile */
		optn = 2;
		a = s + 2;
	} else {
		a = o;
		if (a < e && t[a] == '=')
			a++;
		while (a < e && is_blank(t[a]))
			a++;
	}
	size_t ae = a;
	while (ae < e && !is_blank(t[ae]))
		ae++;
	const char *opt = t + s;
	if ((opt_is(opt, optn, "-r") || opt_is(opt, optn, "--requirement") ||
	     opt_is(opt, optn, "-c") || opt_is(opt, optn, "--constraint")) &&
	    ae > a) {
		if (f->includes)
			strv_push_owned(f->includes, xstrndup(t + a, ae - a));
	} else if ((opt_is(opt, optn, "-e") || opt_is(opt, optn, "--editable")) && ae > a) {
		char *problem, *fix;
		size_t sl;
		pins__pep508(f, t + a, ae - a, false, &sl, &problem, &fix);
		if (problem)
			report(f, ll, a, t + a, sl, problem, fix);
	}
}

void pins__requirements(const struct pins__file *f)
{
	struct pins__reader rd;
	struct pins__lline ll;

	pins__reader_init(&rd, f->data, f->n);
	pins__lline_init(&ll);
	while (pins__next_lline(&rd, &ll, PINS_LINES_PIP)) {
		const char *t = buf_str(&ll.text);
		size_t e = ll.text.len, s = 0;
		for (size_t k = 0; k < e; k++)
			if (t[k] == '#' && (k == 0 || is_blank(t[k - 1]))) {
				e = k;
				break;
			}
		while (s < e && is_blank(t[s]))
			s++;
		while (e > s && is_blank(t[e - 1]))
			e--;
		if (s == e)
			continue;
		if (t[s] == '-') {
			requirement_option(f, &ll, s, e);
			continue;
		}
		size_t cut = e;
		for (size_t k = s; k < e; k++) {
			if (!is_blank(t[k]))
				continue;
			size_t m = k;
			while (m < e && is_blank(t[m]))
				m++;
			if (m < e && t[m] == '-') {
				cut = k;
				break;
			}
		}
		bool hashed = find_str(t + cut, e - cut, "--hash") != NULL;
		char *problem, *fix;
		size_t sl;
		pins__pep508(f, t + s, cut - s, hashed, &sl, &problem, &fix);
		if (problem)
			report(f, &ll, s, t + s, sl, problem, fix);
	}
	pins__lline_done(&ll);
}

/* ---- pyproject.toml and Pipfile ----------------------------------------------------------- */

struct tomlscan {
	const struct pins__file *f;
	bool any; /* a lockable dependency was seen */
};

static bool seg_is(const struct toml__seg *p, size_t n, size_t i, const char *s)
{
	return i < n && !strcmp(p[i].s, s);
}

static void pep508_item(const struct pins__file *f, const struct toml__val *it)
{
	char *problem, *fix;
	size_t sl;
	if (it->kind != TOML_STR)
		return;
	pins__pep508(f, it->s, strlen(it->s), false, &sl, &problem, &fix);
	if (problem) {
		char *spec = xstrndup(it->s, sl);
		pins__add_owned(f, it->line, it->col, "python", spec, problem, fix);
		free(spec);
	}
}

/* Poetry constraint strings: exact is "1.2.3" or "==1.2.3". */
static const char *poetry_problem(const char *c)
{
	while (*c == ' ')
		c++;
	if (!*c || !strcmp(c, "*"))
		return "any version: the newest release at build time is installed";
	if (strchr(c, '*'))
		return "wildcard version: any matching release may be installed";
	if (c[0] == '^')
		return "caret range (^): any newer release with the same major version may be "
		       "installed";
	if (c[0] == '~' && c[1] != '=')
		return "tilde range (~): newer patch releases are installed as they appear";
	if (c[0] == '~')
		return "compatible-release range (~=): newer releases of the series are installed "
		       "as they appear";
	if (strchr(c, ',') || strchr(c, '|') || strchr(c, '>') || strchr(c, '<') ||
	    strchr(c, '!'))
		return "version range: releases published later may be installed";
	if (!strncmp(c, "==", 2) || !strncmp(c, "===", 3) || isdigit((unsigned char)c[0]))
		return NULL;
	return "not an exact version";
}

/* A dependency of Poetry or Pipenv: a string or an inline table (version / git / url / path).
 * pipenv: constraints are PEP 440 specifiers, not Poetry's. */
static void lockable_dep(struct tomlscan *ts, const struct toml__seg *name, const char *vstr,
			 const struct toml__val *tab, bool pipenv)
{
	const struct pins__file *f = ts->f;
	const char *lock = pipenv ? "Pipfile.lock (`pipenv lock`)" : "poetry.lock (`poetry lock`)";
	char *problem = NULL, *spec = NULL, *hint;
	const char *git = tab ? toml__get_str(tab, "git") : NULL;

	ts->any = true;
	if (f->locked)
		return;
	if (!vstr && tab)
		vstr = toml__get_str(tab, "version");
	if (git) {
		const char *rev = toml__get_str(tab, pipenv ? "ref" : "rev");
		const char *br = toml__get_str(tab, "branch"), *tag = toml__get_str(tab, "tag");
		if (rev && pins__is_hex(rev, strlen(rev)) && strlen(rev) >= 40)
			return;
		const char *kind = rev ? "ref" : br ? "branch" : tag ? "tag" : NULL;
		const char *ref = rev ? rev : br ? br : tag;
		spec = kind ? xasprintf("%s = { git = \"%s\", %s = \"%s\" }", name->s, git, kind,
					ref)
			    : xasprintf("%s = { git = \"%s\" }", name->s, git);
		pins__add_owned(f, name->line, name->col, "python", spec,
				xstrdup("git dependency without a commit: the branch or tag can "
					"move"),
				xasprintf("pin a full commit: %s = { git = \"%s\", %s = "
					  "\"<40-hex commit>\" }, or commit %s",
					  name->s, git, pipenv ? "ref" : "rev", lock));
		free(spec);
		return;
	}
	if (tab && (toml__get(tab, "path") || toml__get(tab, "file")))
		return;
	if (tab && toml__get_str(tab, "url")) {
		const char *u = toml__get_str(tab, "url");
		char *fix = NULL;
		problem = url_problem(u, strlen(u), false, &fix);
		if (problem) {
			spec = xasprintf("%s = { url = \"%s\" }", name->s, u);
			pins__add_owned(f, name->line, name->col, "python", spec, problem, fix);
			free(spec);
		}
		return;
	}
	if (!vstr && tab)
		vstr = "*"; /* a table without version: any version */
	if (!vstr)
		return;
	if (pipenv) {
		char *req = xasprintf("%s %s", name->s, strcmp(vstr, "*") ? vstr : "");
		char *fix;
		size_t sl;
		pins__pep508(f, req, strlen(req), false, &sl, &problem, &fix);
		free(fix);
		free(req);
	} else if (poetry_problem(vstr)) {
		problem = xstrdup(poetry_problem(vstr));
	}
	if (!problem)
		return;
	char *canon = pins__py_name(name->s, strlen(name->s));
	hint = pins__hint(f, "python", canon);
	free(canon);
	spec = tab ? xasprintf("%s = { version = \"%s\" }", name->s, vstr)
		   : xasprintf("%s = \"%s\"", name->s, vstr);
	pins__add_owned(f, name->line, name->col, "python", spec, problem,
			xasprintf("pin an exact version: %s = \"%s%s\", or commit %s", name->s,
				  pipenv ? "==" : "", hint ? hint : "VERSION", lock));
	free(hint);
	free(spec);
}

static void lockable_val(struct tomlscan *ts, const struct toml__seg *name,
			 const struct toml__val *v, bool pipenv)
{
	if (v->kind == TOML_STR)
		lockable_dep(ts, name, v->s, NULL, pipenv);
	else if (v->kind == TOML_TAB)
		lockable_dep(ts, name, NULL, v, pipenv);
	else if (v->kind == TOML_ARR && !pipenv)
		for (size_t i = 0; i < v->n; i++)
			if (v->kids[i].kind == TOML_TAB)
				lockable_dep(ts, name, NULL, &v->kids[i], pipenv);
}

static void pyproject_kv(void *ctx, const struct toml__seg *p, size_t n, size_t nh, unsigned seq,
			 const struct toml__val *v)
{
	struct tomlscan *ts = ctx;
	size_t l = 0;
	(void)nh;
	(void)seq;
	if (!v)
		return;
	if (seg_is(p, n, 0, "project") &&
	    ((n == 2 && seg_is(p, n, 1, "dependencies")) ||
	     (n == 3 && seg_is(p, n, 1, "optional-dependencies")))) {
		if (ts->f->locked || v->kind != TOML_ARR)
			return;
		for (size_t i = 0; i < v->n; i++)
			pep508_item(ts->f, &v->kids[i]);
		return;
	}
	if (seg_is(p, n, 0, "tool") && seg_is(p, n, 1, "poetry")) {
		if (seg_is(p, n, 2, "dependencies") || seg_is(p, n, 2, "dev-dependencies"))
			l = 3;
		else if (seg_is(p, n, 2, "group") && seg_is(p, n, 4, "dependencies"))
			l = 5;
	}
	if (!l || n <= l || !strcasecmp(p[l].s, "python"))
		return;
	if (n == l + 1)
		lockable_val(ts, &p[l], v, false);
	else if (n == l + 2 && !strcmp(p[l + 1].s, "version") && v->kind == TOML_STR)
		lockable_dep(ts, &p[l], v->s, NULL, false);
}

void pins__pyproject(const struct pins__file *f)
{
	struct tomlscan ts = { f, false };
	toml__read(f->data, f->n, pyproject_kv, &ts);
	if (ts.any && !f->locked)
		pins__lockfile_missing(f, "python", "poetry.lock",
				       "run `poetry lock` and commit poetry.lock");
}

static void pipfile_kv(void *ctx, const struct toml__seg *p, size_t n, size_t nh, unsigned seq,
		       const struct toml__val *v)
{
	struct tomlscan *ts = ctx;
	(void)nh;
	(void)seq;
	if (!v || !(seg_is(p, n, 0, "packages") || seg_is(p, n, 0, "dev-packages")))
		return;
	if (n == 2)
		lockable_val(ts, &p[1], v, true);
	else if (n == 3 && !strcmp(p[2].s, "version") && v->kind == TOML_STR)
		lockable_dep(ts, &p[1], v->s, NULL, true);
}

void pins__pipfile(const struct pins__file *f)
{
	struct tomlscan ts = { f, false };
	toml__read(f->data, f->n, pipfile_kv, &ts);
	if (ts.any && !f->locked)
		pins__lockfile_missing(f, "python", "Pipfile.lock",
				       "run `pipenv lock` and commit Pipfile.lock");
}
