/* pins-docker: Dockerfiles (FROM and COPY --from images without a digest, install commands in
 * RUN) and shell scripts (install commands). The Dockerfile reader (continuations, the escape
 * directive, ARG defaults, stage names) is shared with the dependency finder. Install
 * commands understood: apt-get/apt/aptitude install, apk add, pip install. */
#include "release/release-internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- Dockerfile reader ------------------------------------------------------------------ */

struct dparse {
	struct strv arg_names, arg_vals; /* global ARGs (before the first FROM), with defaults */
	struct strv stages;              /* AS names, lowercase */
	bool seen_from;
};

static bool is_ident(const char *s, size_t n)
{
	if (!n || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
			return false;
	return true;
}

static const char *arg_value(const struct dparse *dp, const char *name, size_t n)
{
	const char *v = NULL;
	for (size_t i = 0; i < dp->arg_names.n; i++)
		if (strlen(dp->arg_names.v[i]) == n && !memcmp(dp->arg_names.v[i], name, n))
			v = dp->arg_vals.v[i];
	return v;
}

/* $VAR, ${VAR}, ${VAR:-default}, ${VAR-default} with global ARG defaults; NULL when a
 * variable has no value. */
static char *substitute(const struct dparse *dp, const char *s)
{
	struct buf b;
	buf_init(&b, PINS_FILE_MAX);
	while (*s) {
		if (*s != '$') {
			buf_addc(&b, *s++);
			continue;
		}
		const char *name, *def = NULL;
		size_t nn, defn = 0;
		if (s[1] == '{') {
			const char *close = strchr(s, '}');
			if (!close)
				goto fail;
			name = s + 2;
			nn = strcspn(name, ":-}");
			if (name[nn] == ':' && name[nn + 1] == '-') {
				def = name + nn + 2;
			} else if (name[nn] == '-') {
				def = name + nn + 1;
			} else if (name[nn] != '}') {
				goto fail;
			}
			if (def)
				defn = (size_t)(close - def);
			s = close + 1;
		} else {
			name = s + 1;
			nn = 0;
			while (isalnum((unsigned char)name[nn]) || name[nn] == '_')
				nn++;
			s = name + nn;
		}
		const char *v = is_ident(name, nn) ? arg_value(dp, name, nn) : NULL;
		if (v && *v)
			buf_adds(&b, v);
		else if (def)
			buf_add(&b, def, defn);
		else
			goto fail;
	}
	return buf_detach(&b);
fail:
	buf_done(&b);
	return NULL;
}

static bool is_stage(const struct dparse *dp, const char *img)
{
	if (!strcasecmp(img, "scratch"))
		return true;
	for (size_t i = 0; i < dp->stages.n; i++)
		if (!strcasecmp(dp->stages.v[i], img))
			return true;
	return false;
}

static void on_arg(struct dparse *dp, const struct pins__words *w)
{
	if (dp->seen_from)
		return; /* stage-local ARGs cannot be used in FROM */
	for (size_t i = 1; i < w->n; i++) {
		const char *eq = strchr(w->v[i].s, '=');
		size_t nn = eq ? (size_t)(eq - w->v[i].s) : strlen(w->v[i].s);
		strv_push_owned(&dp->arg_names, xstrndup(w->v[i].s, nn));
		strv_push(&dp->arg_vals, eq ? eq + 1 : "");
	}
}

static void image_ref(struct dparse *dp, const struct pins__lline *ll, const struct pins__word *w,
		      size_t skip, bool copy_from, pins__from_cb cb, void *ctx)
{
	const char *raw = w->s + skip;
	char *resolved = strchr(raw, '$') ? substitute(dp, raw) : xstrdup(raw);
	struct pins__from fr = { raw, resolved, 0, 0, copy_from };

	if (!*raw || is_stage(dp, raw) || (resolved && is_stage(dp, resolved)) ||
	    (copy_from && strspn(raw, "0123456789") == strlen(raw))) {
		free(resolved);
		return;
	}
	pins__lline_pos(ll, w->off + skip, &fr.line, &fr.col);
	cb(ctx, &fr);
	free(resolved);
}

static void on_from(struct dparse *dp, const struct pins__lline *ll, const struct pins__words *w,
		    pins__from_cb cb, void *ctx)
{
	size_t i = 1;
	while (i < w->n && str_starts(w->v[i].s, "--"))
		i++;
	if (i >= w->n)
		return;
	if (cb)
		image_ref(dp, ll, &w->v[i], 0, false, cb, ctx);
	if (i + 2 < w->n && !strcasecmp(w->v[i + 1].s, "as")) {
		char *name = xstrdup(w->v[i + 2].s);
		for (char *c = name; *c; c++)
			*c = (char)tolower((unsigned char)*c);
		strv_push_owned(&dp->stages, name);
	}
	dp->seen_from = true;
}

static void on_copy(struct dparse *dp, const struct pins__lline *ll, const struct pins__words *w,
		    pins__from_cb cb, void *ctx)
{
	for (size_t i = 1; cb && i < w->n && str_starts(w->v[i].s, "--"); i++)
		if (str_starts(w->v[i].s, "--from="))
			image_ref(dp, ll, &w->v[i], 7, true, cb, ctx);
}

/* Exec form ["a", "b"]: blank out brackets and commas outside strings (same length, so the
 * offsets stay right) and hand it on as words. */
static void exec_form_to_words(char *s, size_t n)
{
	bool in = false;
	for (size_t i = 0; i < n; i++) {
		if (in && s[i] == '\\' && i + 1 < n)
			i++;
		else if (s[i] == '"')
			in = !in;
		else if (!in && (s[i] == '[' || s[i] == ']' || s[i] == ','))
			s[i] = ' ';
	}
}

static void on_run(struct pins__lline *ll, size_t off, pins__run_cb cb, void *ctx)
{
	char *t = ll->text.data;
	size_t n = ll->text.len;
	for (;;) { /* RUN --mount=... --network=... */
		while (off < n && (t[off] == ' ' || t[off] == '\t'))
			off++;
		if (off + 2 > n || t[off] != '-' || t[off + 1] != '-')
			break;
		while (off < n && t[off] != ' ' && t[off] != '\t')
			off++;
	}
	if (off < n && t[off] == '<')
		return; /* heredoc: its body is on the following lines, not read here */
	if (off < n && t[off] == '[')
		exec_form_to_words(t + off, n - off);
	cb(ctx, ll, off, n - off);
}

static bool directive(struct pins__reader *rd, const char *t, size_t n)
{
	size_t i = 1;
	while (i < n && (t[i] == ' ' || t[i] == '\t'))
		i++;
	size_t k = i;
	while (k < n && isalpha((unsigned char)t[k]))
		k++;
	size_t e = k;
	while (e < n && (t[e] == ' ' || t[e] == '\t'))
		e++;
	if (k == i || e >= n || t[e] != '=')
		return false;
	e++;
	while (e < n && (t[e] == ' ' || t[e] == '\t'))
		e++;
	if (k - i == 6 && !strncasecmp(t + i, "escape", 6) && e < n &&
	    (t[e] == '`' || t[e] == '\\'))
		rd->esc = t[e];
	return true;
}

void pins__docker_parse(const char *data, size_t n, pins__from_cb from_cb, pins__run_cb run_cb,
			void *ctx)
{
	struct pins__reader rd;
	struct pins__lline ll;
	struct dparse dp;
	bool directives = true;

	memset(&dp, 0, sizeof(dp));
	pins__reader_init(&rd, data, n);
	pins__lline_init(&ll);
	while (pins__next_lline(&rd, &ll, PINS_LINES_DOCKER)) {
		const char *t = buf_str(&ll.text);
		size_t len = ll.text.len, s = 0;
		while (s < len && (t[s] == ' ' || t[s] == '\t'))
			s++;
		if (s == len)
			continue;
		if (t[s] == '#') {
			directives = directives && directive(&rd, t + s, len - s);
			continue;
		}
		directives = false;
		size_t ie = s;
		while (ie < len && t[ie] != ' ' && t[ie] != '\t')
			ie++;
		const char *ins = t + s;
		size_t insn = ie - s;
		if (insn == 3 && !strncasecmp(ins, "RUN", 3)) {
			if (run_cb)
				on_run(&ll, ie, run_cb, ctx);
			continue;
		}
		struct pins__words w = { 0 };
		pins__words_split(t + s, len - s, s, &w);
		if (insn == 4 && !strncasecmp(ins, "FROM", 4))
			on_from(&dp, &ll, &w, from_cb, ctx);
		else if (insn == 3 && !strncasecmp(ins, "ARG", 3))
			on_arg(&dp, &w);
		else if (insn == 4 && !strncasecmp(ins, "COPY", 4))
			on_copy(&dp, &ll, &w, from_cb, ctx);
		pins__words_done(&w);
	}
	pins__lline_done(&ll);
	strv_done(&dp.arg_names);
	strv_done(&dp.arg_vals);
	strv_done(&dp.stages);
}

/* ---- Dockerfile findings ---------------------------------------------------------------- */

static bool has_digest(const char *ref)
{
	const char *at = strrchr(ref, '@');
	return at && str_starts(at + 1, "sha256:") && strlen(at + 8) == 64 &&
	       pins__is_hex(at + 8, 64);
}

static void docker_from(void *ctx, const struct pins__from *fr)
{
	const struct pins__file *f = ctx;
	const char *ref = fr->resolved ? fr->resolved : fr->raw;
	const char *kw = fr->copy_from ? "COPY --from=" : "FROM ";
	bool dyn = strchr(fr->raw, '$') != NULL;
	char *problem, *fix;

	if (has_digest(ref))
		return;
	const char *at = strchr(ref, '@');
	size_t namelen = at ? (size_t)(at - ref) : strlen(ref);
	const char *slash = memrchr(ref, '/', namelen);
	const char *from = slash ? slash : ref;
	const char *colon = memchr(from, ':', namelen - (size_t)(from - ref));
	if (at)
		problem = xasprintf("malformed digest: a digest is @sha256: and 64 hex digits");
	else if (!colon)
		problem = xasprintf("no tag and no digest: `latest` at build time is used, "
				    "whatever it is then");
	else if (!strcmp(colon + 1, "latest"))
		problem = xasprintf("`latest` without a digest: it moves with every release");
	else
		problem = xasprintf("tag without a digest: %.*s can be re-pushed with another "
				    "image at any time, and a rebuild (or a rollback that "
				    "rebuilds) gets it",
				    (int)namelen, ref);
	if (dyn && !fr->resolved) {
		free(problem);
		problem = xstrdup("image from build arguments without a default: whatever "
				  "--build-arg gives is used");
	} else if (dyn) {
		char *p2 = xasprintf("image from build arguments (default %s): %s", fr->resolved,
				     problem);
		free(problem);
		problem = p2;
	}
	fix = xasprintf("pin the digest: %s%.*s%s@sha256:<digest> (`docker buildx imagetools "
			"inspect %.*s` prints it)%s",
			kw, (int)namelen, ref, colon ? "" : ":<tag>", (int)namelen, ref,
			dyn ? "; give the ARG a digest-pinned default" : "");
	pins__add_owned(f, fr->line, fr->col, "docker", fr->raw, problem, fix);
}

static void docker_run(void *ctx, const struct pins__lline *ll, size_t off, size_t n)
{
	const struct pins__file *f = ctx;
	struct pins__words w = { 0 };
	pins__words_split(ll->text.data + off, n, off, &w);
	pins__shell_installs(f, ll, &w);
	pins__words_done(&w);
}

void pins__dockerfile(const struct pins__file *f)
{
	pins__docker_parse(f->data, f->n, docker_from, docker_run, (void *)f);
}

void pins__shell(const struct pins__file *f)
{
	struct pins__reader rd;
	struct pins__lline ll;

	pins__reader_init(&rd, f->data, f->n);
	pins__lline_init(&ll);
	while (pins__next_lline(&rd, &ll, PINS_LINES_SHELL)) {
		struct pins__words w = { 0 };
		pins__words_split(buf_str(&ll.text), ll.text.len, 0, &w);
		pins__shell_installs(f, &ll, &w);
		pins__words_done(&w);
	}
	pins__lline_done(&ll);
}

/* ---- install commands ------------------------------------------------------------------- */

enum pkgmgr { MGR_NONE, MGR_APT, MGR_APK, MGR_PIP };

static bool in_list(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (!strcmp(s, *list))
			return true;
	return false;
}

static bool takes_arg(enum pkgmgr m, const char *opt)
{
	static const char *const apt[] = { "-o", "-c", "-t", "--target-release",
					   "--default-release", "-a", "--host-architecture", NULL };
	static const char *const apk[] = { "-t", "--virtual", "-X", "--repository", "-p", "--root",
					   "--arch", "--cache-dir", "--keys-dir",
					   "--repositories-file", NULL };
	static const char *const pip[] = {
		"-r", "--requirement", "-c", "--constraint", "-i", "--index-url",
		"--extra-index-url", "-f", "--find-links", "-t", "--target", "--prefix", "--root",
		"--platform", "--python-version", "--implementation", "--abi", "--src",
		"--upgrade-strategy", "--progress-bar", "--cache-dir", "--log", "--proxy",
		"--retries", "--timeout", "--exists-action", "--cert", "--client-cert",
		"--global-option", "--config-settings", "-C", "--report", "--trusted-host",
		"--no-binary", "--only-binary", "--python", "--keyring-provider",
		"--root-user-action", NULL
	};
	return in_list(opt, m == MGR_APT ? apt : m == MGR_APK ? apk : pip);
}

static bool name_matches(const char *s, const char *prefix)
{
	if (!str_starts(s, prefix))
		return false;
	return strspn(s + strlen(prefix), "0123456789.") == strlen(s + strlen(prefix));
}

static void apt_like(const struct pins__file *f, const struct pins__lline *ll, enum pkgmgr m,
		     const char *cmd, const struct pins__word *w)
{
	const char *s = w->s;
	size_t len = strlen(s);
	int line, col;
	if (!len || s[0] == '.' || s[0] == '/' || str_ends(s, ".deb") || str_ends(s, ".apk"))
		return;
	const char *eq = strchr(s, '=');
	if (m == MGR_APT && eq && eq[1] && !strchr(eq, '*'))
		return;
	if (m == MGR_APK && eq && eq[1] && !strpbrk(s, "<>~"))
		return;
	size_t nn = strcspn(s, m == MGR_APT ? "=/" : "=<>~@");
	pins__lline_pos(ll, w->off, &line, &col);
	if (m == MGR_APT)
		pins__add_owned(f, line, col, "apt", s,
				xasprintf("%s install %.*s takes whatever version the mirror has "
					  "today",
					  cmd, (int)nn, s),
				xasprintf("pin %.*s=VERSION (`apt-cache policy %.*s` in the image "
					  "shows the candidate), or install from a dated snapshot "
					  "mirror",
					  (int)nn, s, (int)nn, s));
	else
		pins__add_owned(f, line, col, "apk", s,
				xasprintf("apk add %.*s takes whatever version the repository has "
					  "today",
					  (int)nn, s),
				xasprintf("pin %.*s=VERSION (`apk policy %.*s` in the image shows "
					  "it), and pin the base image by digest",
					  (int)nn, s, (int)nn, s));
}

static void pip_word(const struct pins__file *f, const struct pins__lline *ll,
		     const struct pins__word *w)
{
	char *problem, *fix;
	size_t sl;
	int line, col;
	pins__pep508(f, w->s, strlen(w->s), false, &sl, &problem, &fix);
	if (!problem)
		return;
	char *spec = xstrndup(w->s, sl);
	pins__lline_pos(ll, w->off, &line, &col);
	pins__add_owned(f, line, col, "python", spec, problem, fix);
	free(spec);
}

static void one_command(const struct pins__file *f, const struct pins__lline *ll,
			const struct pins__word *w, size_t n)
{
	static const char *const wrappers[] = { "sudo", "env", "command", "exec", "nohup",
						"time", "nice", "then", "do", "else", "elif",
						"if", "while", "until", "!", "{", NULL };
	size_t i = 0;
	enum pkgmgr m = MGR_NONE;

	while (i < n && (w[i].s[0] == '-' || in_list(w[i].s, wrappers) ||
			 (strchr(w[i].s, '=') && is_ident(w[i].s, strcspn(w[i].s, "=")))))
		i++;
	if (i >= n)
		return;
	const char *cmd = strrchr(w[i].s, '/') ? strrchr(w[i].s, '/') + 1 : w[i].s;
	if (!strcmp(cmd, "apt-get") || !strcmp(cmd, "apt") || !strcmp(cmd, "aptitude"))
		m = MGR_APT;
	else if (!strcmp(cmd, "apk"))
		m = MGR_APK;
	else if (name_matches(cmd, "pip"))
		m = MGR_PIP;
	else if (name_matches(cmd, "python") && i + 2 < n && !strcmp(w[i + 1].s, "-m") &&
		 !strcmp(w[i + 2].s, "pip"))
		m = MGR_PIP, i += 2;
	else if (!strcmp(cmd, "uv") && i + 1 < n && !strcmp(w[i + 1].s, "pip"))
		m = MGR_PIP, i += 1;
	if (m == MGR_NONE)
		return;
	for (i++; i < n && w[i].s[0] == '-'; i++)
		if (takes_arg(m, w[i].s))
			i++;
	if (i >= n || strcmp(w[i].s, m == MGR_APK ? "add" : "install"))
		return;
	for (i++; i < n; i++) {
		if (w[i].s[0] == '-') {
			bool editable = !strcmp(w[i].s, "-e") || !strcmp(w[i].s, "--editable");
			if (m == MGR_PIP && editable && i + 1 < n && !w[i + 1].dyn)
				pip_word(f, ll, &w[++i]);
			else if (takes_arg(m, w[i].s))
				i++;
			continue;
		}
		if (w[i].dyn)
			continue;
		if (m == MGR_PIP)
			pip_word(f, ll, &w[i]);
		else
			apt_like(f, ll, m, cmd, &w[i]);
	}
}

void pins__shell_installs(const struct pins__file *f, const struct pins__lline *ll,
			  const struct pins__words *w)
{
	size_t a = 0;
	for (size_t i = 0; i <= w->n; i++) {
		if (i < w->n && !w->v[i].sep)
			continue;
		if (i > a)
			one_command(f, ll, w->v + a, i - a);
		a = i + 1;
	}
}
