/* diff: what changed between two releases (or a release and a directory) — files added,
 * removed and changed with unified diffs for text, dependency versions, run config. The
 * comparison is computed once as JSON and rendered as text from it, so both say the same. */
#include "release/release-internal.h"

#include "config/config.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define DIFF_DEFAULT_MAX_TEXT (1024 * 1024)

static const char *type_word(char t)
{
	return t == MANIFEST_FILE ? "file" : t == MANIFEST_DIR ? "dir" : "link";
}

static int read_side(const struct diff_side *s, const struct manifest_entry *en, struct buf *b,
		     struct err *e)
{
	if (s->os)
		return objstore_read(s->os, en->digest, b, e);
	char *p = fs_join(s->dir, en->path);
	int r = fs_read_file(p, b, e);
	free(p);
	return r;
}

static json_t *entry_json(const struct manifest_entry *en)
{
	json_t *o = json_pack("{s:s}", "type", type_word(en->type));
	if (en->type != MANIFEST_LINK)
		json_object_set_new(o, "mode", json_sprintf("%03o", en->mode));
	if (en->type == MANIFEST_FILE) {
		json_object_set_new(o, "size", json_integer(en->size));
		json_object_set_new(o, "digest", json_sprintf("sha256:%s", en->digest));
	}
	if (en->type == MANIFEST_LINK)
		json_object_set_new(o, "target", json_string(en->target));
	return o;
}

/* Adds "diff" (unified text) or "binary": true to a file change. */
static int content_diff(const struct diff_side *a, const struct diff_side *b,
			const struct manifest_entry *ea, const struct manifest_entry *eb,
			const struct diff_opts *o, json_t *fc, struct err *e)
{
	struct buf ba, bb, out;
	size_t max = o->max_text_bytes ? o->max_text_bytes : DIFF_DEFAULT_MAX_TEXT;
	int r = 0;

	if ((ea && ea->size > (int64_t)max) || (eb && eb->size > (int64_t)max)) {
		json_object_set_new(fc, "note", json_string("larger than the text diff limit; compared by digest"));
		return 0;
	}
	buf_init(&ba, max);
	buf_init(&bb, max);
	buf_init(&out, 16 * max);
	if (ea && (r = read_side(a, ea, &ba, e)) < 0)
		goto done;
	if (eb && (r = read_side(b, eb, &bb, e)) < 0)
		goto done;
	if (textdiff_is_binary(buf_str(&ba), ba.len) || textdiff_is_binary(buf_str(&bb), bb.len)) {
		json_object_set_new(fc, "binary", json_true());
		goto done;
	}
	if (textdiff_unified(buf_str(&ba), ba.len, buf_str(&bb), bb.len,
			     o->context_lines >= 0 ? o->context_lines : 3, &out) < 0)
		json_object_set_new(fc, "note", json_string("too different to show line by line"));
	else
		json_object_set_new(fc, "diff", json_stringn(buf_str(&out), out.len));
done:
	buf_done(&ba);
	buf_done(&bb);
	buf_done(&out);
	return r;
}

static int diff_files(const struct diff_side *a, const struct diff_side *b, const struct diff_opts *o,
		      json_t *files, struct err *e)
{
	const struct manifest *ma = a->m, *mb = b->m;
	size_t i = 0, j = 0;
	int r = 0;

	while ((i < ma->n_entries || j < mb->n_entries) && r == 0) {
		const struct manifest_entry *ea = i < ma->n_entries ? &ma->entries[i] : NULL;
		const struct manifest_entry *eb = j < mb->n_entries ? &mb->entries[j] : NULL;
		int c = !ea ? 1 : !eb ? -1 : strcmp(ea->path, eb->path);
		json_t *fc;
		if (c < 0)
			eb = NULL, i++;
		else if (c > 0)
			ea = NULL, j++;
		else
			i++, j++;
		if (ea && eb && ea->type == eb->type && ea->mode == eb->mode &&
		    (ea->type != MANIFEST_FILE || !strcmp(ea->digest, eb->digest)) &&
		    (ea->type != MANIFEST_LINK || !strcmp(ea->target, eb->target)))
			continue;
		if ((ea && ea->type == MANIFEST_DIR && !eb) || (eb && eb->type == MANIFEST_DIR && !ea))
			continue; /* a directory's coming and going shows through its files */
		fc = json_pack("{s:s,s:s}", "path", ea ? ea->path : eb->path, "status",
			       !ea ? "added" : !eb ? "removed"
			       : ea->type != eb->type ? "type_changed"
			       : (ea->type == MANIFEST_FILE && strcmp(ea->digest, eb->digest)) ||
					 (ea->type == MANIFEST_LINK && strcmp(ea->target, eb->target))
				       ? "modified"
				       : "mode_changed");
		if (ea)
			json_object_set_new(fc, "old", entry_json(ea));
		if (eb)
			json_object_set_new(fc, "new", entry_json(eb));
		bool fa = ea && ea->type == MANIFEST_FILE, fb = eb && eb->type == MANIFEST_FILE;
		bool content = (fa || fb) && !(fa && fb && !strcmp(ea->digest, eb->digest));
		if (content && !o->stat_only)
			r = content_diff(a, b, fa ? ea : NULL, fb ? eb : NULL, o, fc, e);
		json_array_append_new(files, fc);
	}
	return r;
}

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

static size_t count_lines(const char *p, size_t n)
{
	size_t c = 0;
	for (size_t i = 0; i < n; i++)
		c += p[i] == '\n';
	return c + (n && p[n - 1] != '\n');
}

/* A removed and an added file with the same name whose contents are mostly alike are one file
 * that moved (vendor/eventlet-0.20.0.dist-info/METADATA → …-0.20.1.dist-info/METADATA):
 * shown as a rename with the diff between the two, as git does. */
static int find_renames(const struct diff_side *a, const struct diff_side *b,
			const struct diff_opts *o, json_t *files, struct err *e)
{
	size_t max = o->max_text_bytes ? o->max_text_bytes : DIFF_DEFAULT_MAX_TEXT;
	int r = 0;

	for (size_t i = 0; i < json_array_size(files) && r == 0; i++) {
		json_t *rm = json_array_get(files, i);
		const char *rpath = json_string_value(json_object_get(rm, "path"));
		if (strcmp(json_string_value(json_object_get(rm, "status")), "removed"))
			continue;
		const struct manifest_entry *ea = manifest_find(a->m, rpath);
		if (!ea || ea->type != MANIFEST_FILE || ea->size > (int64_t)max)
			continue;
		for (size_t j = 0; j < json_array_size(files); j++) {
			json_t *ad = json_array_get(files, j);
			const char *apath = json_string_value(json_object_get(ad, "path"));
			if (strcmp(json_string_value(json_object_get(ad, "status")), "added") ||
			    strcmp(base_name(apath), base_name(rpath)))
				continue;
			const struct manifest_entry *eb = manifest_find(b->m, apath);
			if (!eb || eb->type != MANIFEST_FILE || eb->size > (int64_t)max)
				continue;
			struct buf ba, bb, out;
			bool alike = !strcmp(ea->digest, eb->digest);
			buf_init(&ba, max);
			buf_init(&bb, max);
			buf_init(&out, 16 * max);
			if (!alike && (r = read_side(a, ea, &ba, e)) == 0 && (r = read_side(b, eb, &bb, e)) == 0 &&
			    !textdiff_is_binary(buf_str(&ba), ba.len) && !textdiff_is_binary(buf_str(&bb), bb.len) &&
			    textdiff_unified(buf_str(&ba), ba.len, buf_str(&bb), bb.len,
					     o->context_lines >= 0 ? o->context_lines : 3, &out) == 0) {
				size_t changed = 0;
				for (const char *l = buf_str(&out); *l;) {
					const char *nl = strchr(l, '\n');
					changed += (*l == '+' || *l == '-');
					l = nl ? nl + 1 : l + strlen(l);
				}
				alike = 2 * changed <= count_lines(ba.data ? ba.data : "", ba.len) +
							       count_lines(bb.data ? bb.data : "", bb.len);
			}
			if (alike && r == 0) {
				json_t *fc = json_pack("{s:s,s:s,s:s,s:o,s:o}", "path", apath, "old_path", rpath,
						       "status", "renamed", "old", entry_json(ea), "new",
						       entry_json(eb));
				if (out.len && !o->stat_only)
					json_object_set_new(fc, "diff", json_stringn(buf_str(&out), out.len));
				json_array_set_new(files, j, fc);
				json_array_remove(files, i);
				i--;
			}
			buf_done(&ba);
			buf_done(&bb);
			buf_done(&out);
			if (alike || r < 0)
				break;
		}
	}
	return r;
}

/* Dependencies grouped by (ecosystem, name): the set of versions found on each side. */
static json_t *dep_versions(const struct dep_list *l, size_t *i)
{
	json_t *vers = json_array();
	const struct dep *first = &l->v[*i];
	const char *last = NULL;
	while (*i < l->n && !strcmp(l->v[*i].ecosystem, first->ecosystem) &&
	       !strcmp(l->v[*i].name, first->name)) {
		if (!last || strcmp(last, l->v[*i].version))
			json_array_append_new(vers, json_string(l->v[*i].version));
		last = l->v[*i].version;
		(*i)++;
	}
	return vers;
}

static json_t *diff_deps(const struct dep_list *a, const struct dep_list *b)
{
	json_t *out = json_array();
	size_t i = 0, j = 0;
	while (i < a->n || j < b->n) {
		const struct dep *da = i < a->n ? &a->v[i] : NULL, *db = j < b->n ? &b->v[j] : NULL;
		int c = !da ? 1 : !db ? -1 : strcmp(da->ecosystem, db->ecosystem);
		if (c == 0)
			c = strcmp(da->name, db->name);
		const struct dep *d = c <= 0 ? da : db;
		json_t *va = c <= 0 ? dep_versions(a, &i) : json_array();
		json_t *vb = c >= 0 ? dep_versions(b, &j) : json_array();
		if (!json_equal(va, vb))
			json_array_append_new(out, json_pack("{s:s,s:s,s:o,s:o}", "ecosystem", d->ecosystem,
							     "name", d->name, "old", va, "new", vb));
		else
			json_decref(va), json_decref(vb);
	}
	return out;
}

static json_t *run_json(const struct manifest *m)
{
	json_t *cmd = json_array(), *o = json_object();
	for (size_t i = 0; i < m->run_command.n; i++)
		json_array_append_new(cmd, json_string(m->run_command.v[i]));
	json_object_set_new(o, "run.command", cmd);
	for (size_t i = 0; i < m->run_env.n; i++) {
		char *k = xasprintf("run.env.%s", m->run_env.keys[i]);
		json_object_set_new(o, k, json_string(m->run_env.values[i]));
		free(k);
	}
	char d[32];
	time_fmt_duration(m->stop_timeout_ms, d, sizeof(d));
	json_object_set_new(o, "run.stop_timeout", json_string(d));
	return o;
}

/* Keys of the resolved cairn.yml already compared from the manifest, or not run config. */
static bool cfg_key_skipped(const char *k)
{
	static const char *const skip[] = { "file", "dir", "app", "run.command", "run.env",
					    "run.stop_timeout_ms", "build" };
	for (size_t i = 0; i < ARRAY_SIZE(skip); i++) {
		size_t n = strlen(skip[i]);
		if (!strncmp(k, skip[i], n) && (!k[n] || k[n] == '.'))
			return true;
	}
	return false;
}

/* Flattens objects into dotted keys ("rollout.gates.max_p99_ms"); arrays stay whole. */
static void flatten(json_t *v, const char *prefix, json_t *out)
{
	const char *k;
	json_t *x;
	if (!json_is_object(v)) {
		if (!cfg_key_skipped(prefix))
			json_object_set(out, prefix, v);
		return;
	}
	json_object_foreach(v, k, x)
	{
		char *key = *prefix ? xasprintf("%s.%s", prefix, k) : xstrdup(k);
		if (!strcmp(key, "listen") && json_is_object(x)) /* one value: HOST:PORT */
			json_object_set_new(out, key, json_sprintf("%s:%lld",
				json_string_value(json_object_get(x, "host")) ?: "?",
				(long long)json_integer_value(json_object_get(x, "port"))));
		else
			flatten(x, key, out);
		free(key);
	}
}

/* The side's cairn.yml, resolved (defaults filled in) and flattened; NULL when it has none
 * or it does not parse (its text diff still shows what changed). */
static json_t *side_config(const struct diff_side *s)
{
	const struct manifest_entry *en = manifest_find(s->m, CONFIG_DEFAULT_NAME);
	struct config *cfg = NULL;
	json_t *out = NULL;
	struct err e;
	struct buf b;
	if (!en || en->type != MANIFEST_FILE)
		return NULL;
	buf_init(&b, CONFIG_MAX_BYTES);
	if (read_side(s, en, &b, &e) == 0 &&
	    config_parse(CONFIG_DEFAULT_NAME, NULL, b.data ? b.data : "", b.len, &cfg, &e) == 0) {
		json_t *j = config_to_json(cfg);
		out = json_object();
		flatten(j, "", out);
		json_decref(j);
	}
	config_free(cfg);
	buf_done(&b);
	return out;
}

static json_t *diff_config(const struct diff_side *sa, const struct diff_side *sb)
{
	const struct manifest *a = sa->m, *b = sb->m;
	json_t *ra = run_json(a), *rb = run_json(b), *out = json_array();
	json_t *ca = side_config(sa), *cb = side_config(sb);
	if (ca && cb) { /* every other key of the run config: listen, instances, health, gates… */
		json_object_update(ra, ca);
		json_object_update(rb, cb);
	}
	json_decref(ca);
	json_decref(cb);
	const char *k;
	json_t *v;
	struct strv keys;
	strv_init(&keys);
	json_object_foreach(ra, k, v) strv_push(&keys, k);
	json_object_foreach(rb, k, v) if (!json_object_get(ra, k)) strv_push(&keys, k);
	strv_sort(&keys);
	for (size_t i = 0; i < keys.n; i++) {
		json_t *x = json_object_get(ra, keys.v[i]), *y = json_object_get(rb, keys.v[i]);
		if (x && y && json_equal(x, y))
			continue;
		json_array_append_new(out, json_pack("{s:s,s:O?,s:O?}", "key", keys.v[i], "old", x, "new", y));
	}
	if (strcmp(a->app, b->app))
		json_array_append_new(out, json_pack("{s:s,s:s,s:s}", "key", "app", "old", a->app, "new", b->app));
	strv_done(&keys);
	json_decref(ra);
	json_decref(rb);
	return out;
}

int release_diff(const struct diff_side *a, const struct diff_side *b, const struct diff_opts *o,
		 struct buf *out, bool *out_differs, struct err *e)
{
	json_t *files = json_array(), *deps, *cfg, *root;
	int r;

	if ((r = diff_files(a, b, o, files, e)) < 0 || (r = find_renames(a, b, o, files, e)) < 0) {
		json_decref(files);
		return r;
	}
	deps = diff_deps(&a->m->deps, &b->m->deps);
	cfg = diff_config(a, b);
	*out_differs = json_array_size(files) || json_array_size(deps) || json_array_size(cfg);
	root = json_pack("{s:s,s:s,s:b,s:o,s:o,s:o}", "a", a->label, "b", b->label, "differs",
			 *out_differs, "files", files, "deps", deps, "config", cfg);
	if (o->json) {
		char *s = json_dumps(root, JSON_COMPACT);
		r = buf_adds(out, s);
		buf_addc(out, '\n');
		free(s);
	} else {
		r = diff_render_text(root, o->color, out);
	}
	json_decref(root);
	return r < 0 ? err_set(e, -r, "diff output too large") : 0;
}
