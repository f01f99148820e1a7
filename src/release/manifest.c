/* manifest: the canonical description of a release and its (de)serialisation. The bytes are
 * compact JSON with sorted keys and entries sorted by path, so equal inputs give equal bytes
 * and the release id (sha256 of the bytes) is stable. Parsing is for outside bytes: strict,
 * bounded, never trusting a field it has not checked. */
#include "release/release-internal.h"


#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define MANIFEST_PATH_MAX 4096
#define MANIFEST_ENTRIES_MAX 10000000

void manifest_free(struct manifest *m)
{
	if (!m)
		return;
	free(m->app);
	for (size_t i = 0; i < m->n_entries; i++) {
		free(m->entries[i].path);
		free(m->entries[i].target);
	}
	free(m->entries);
	strv_done(&m->run_command);
	for (size_t i = 0; i < m->run_env.n; i++) {
		free(m->run_env.keys[i]);
		free(m->run_env.values[i]);
	}
	free(m->run_env.keys);
	free(m->run_env.values);
	free(m->run_user);
	dep_list_done(&m->deps);
	free(m);
}

static const char *type_name(char t)
{
	return t == MANIFEST_FILE ? "file" : t == MANIFEST_DIR ? "dir" : "link";
}

/* The canonical bytes are exactly what jansson's json_dumps(JSON_COMPACT | JSON_SORT_KEYS)
 * prints for the manifest object (a unit test holds the two together), written directly: a
 * 20 000-file manifest took 80 ms through jansson's objects and key sorting, 10 ms this way.
 * Keys below are emitted in sorted order by hand; strings must be valid UTF-8. */
static bool utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		int n = *p < 0x80 ? 0 : (*p & 0xe0) == 0xc0 ? 1 : (*p & 0xf0) == 0xe0 ? 2 : (*p & 0xf8) == 0xf0 ? 3 : -1;
		uint32_t cp = n == 0 ? *p : n == 1 ? *p & 0x1f : n == 2 ? *p & 0x0f : *p & 0x07;
		if (n < 0)
			return false;
		p++;
		for (int i = 0; i < n; i++, p++) {
			if ((*p & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (*p & 0x3f);
		}
		/* overlong forms, surrogates and values past U+10FFFF are not UTF-8 (jansson agrees) */
		if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			return false;
	}
	return true;
}

static int put_str(struct buf *b, const char *s)
{
	static const char hx[] = "0123456789ABCDEF";
	const char *run = s;
	int r = 0;

	if (!utf8_valid(s))
		return -EILSEQ;
	buf_addc(b, '"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		const char *esc = NULL;
		char u[7];
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		buf_add(b, run, (size_t)(s - run));
		run = s + 1;
		switch (c) {
		case '"': esc = "\\\""; break;
		case '\\': esc = "\\\\"; break;
		case '\b': esc = "\\b"; break;
		case '\f': esc = "\\f"; break;
		case '\n': esc = "\\n"; break;
		case '\r': esc = "\\r"; break;
		case '\t': esc = "\\t"; break;
		default:
			u[0] = '\\', u[1] = 'u', u[2] = '0', u[3] = '0', u[4] = hx[c >> 4], u[5] = hx[c & 15];
			u[6] = 0;
			esc = u;
		}
		buf_adds(b, esc);
	}
	buf_add(b, run, (size_t)(s - run));
	r = buf_addc(b, '"');
	return r;
}

static int put_key_str(struct buf *b, const char *key, const char *val, bool comma)
{
	if (comma)
		buf_addc(b, ',');
	buf_addf(b, "\"%s\":", key);
	return put_str(b, val);
}

int manifest_serialize(const struct manifest *m, struct buf *b)
{
	size_t start = b->len;
	int r;

	/* app < deps < entries < run < version */
	buf_adds(b, "{");
	if ((r = put_key_str(b, "app", m->app ? m->app : "", false)) < 0)
		goto fail;
	buf_adds(b, ",\"deps\":[");
	for (size_t i = 0; i < m->deps.n; i++) {
		const struct dep *d = &m->deps.v[i];
		/* ecosystem < name < source < version */
		buf_adds(b, i ? ",{" : "{");
		if ((r = put_key_str(b, "ecosystem", d->ecosystem, false)) < 0 ||
		    (r = put_key_str(b, "name", d->name, true)) < 0 ||
		    (r = put_key_str(b, "source", d->source, true)) < 0 ||
		    (r = put_key_str(b, "version", d->version, true)) < 0)
			goto fail;
		buf_addc(b, '}');
	}
	buf_adds(b, "],\"entries\":[");
	for (size_t i = 0; i < m->n_entries; i++) {
		const struct manifest_entry *en = &m->entries[i];
		/* digest < mode < path < size < target < type */
		buf_adds(b, i ? ",{" : "{");
		if (en->type == MANIFEST_FILE) {
			buf_addf(b, "\"digest\":\"%s\",\"mode\":%u,", en->digest, en->mode);
			if ((r = put_key_str(b, "path", en->path, false)) < 0)
				goto fail;
			buf_addf(b, ",\"size\":%lld", (long long)en->size);
		} else if (en->type == MANIFEST_DIR) {
			buf_addf(b, "\"mode\":%u,", en->mode);
			if ((r = put_key_str(b, "path", en->path, false)) < 0)
				goto fail;
		} else {
			if ((r = put_key_str(b, "path", en->path, false)) < 0 ||
			    (r = put_key_str(b, "target", en->target, true)) < 0)
				goto fail;
		}
		buf_addf(b, ",\"type\":\"%s\"}", type_name(en->type));
	}
	/* run: command < env < stop_timeout_ms < user (only when set) */
	buf_adds(b, "],\"run\":{\"command\":[");
	for (size_t i = 0; i < m->run_command.n; i++) {
		if (i)
			buf_addc(b, ',');
		if ((r = put_str(b, m->run_command.v[i])) < 0)
			goto fail;
	}
	buf_adds(b, "],\"env\":{");
	for (size_t i = 0; i < m->run_env.n; i++) {
		if (i)
			buf_addc(b, ',');
		if ((r = put_str(b, m->run_env.keys[i])) < 0)
			goto fail;
		buf_addc(b, ':');
		if ((r = put_str(b, m->run_env.values[i])) < 0)
			goto fail;
	}
	buf_addf(b, "},\"stop_timeout_ms\":%lld", (long long)m->stop_timeout_ms);
	if (m->run_user && (r = put_key_str(b, "user", m->run_user, true)) < 0)
		goto fail;
	buf_addf(b, "},\"version\":%d}", MANIFEST_VERSION);
	if (!(r = b->err))
		return 0;
fail:
	b->len = start;
	if (b->data)
		b->data[start] = 0;
	return r;
}

/* ---- validation ---------------------------------------------------------------------- */

static bool path_ok(const char *p, size_t len)
{
	if (len == 0 || len > MANIFEST_PATH_MAX || p[0] == '/' || p[len - 1] == '/')
		return false;
	if (memchr(p, 0, len))
		return false;
	for (const char *c = p; c < p + len;) {
		const char *end = memchr(c, '/', (size_t)(p + len - c));
		size_t n = end ? (size_t)(end - c) : (size_t)(p + len - c);
		if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		c += n + 1;
	}
	return true;
}

bool manifest_link_inside(const char *path, const char *target)
{
	long depth = 0;
	const char *c;

	if (!target[0] || target[0] == '/')
		return false;
	/* depth of the directory holding the link */
	for (c = path; *c; c++)
		if (*c == '/')
			depth++;
	for (c = target; *c;) {
		const char *end = strchr(c, '/');
		size_t n = end ? (size_t)(end - c) : strlen(c);
		if (n == 2 && c[0] == '.' && c[1] == '.') {
			if (--depth < 0)
				return false;
		} else if (!(n == 0 || (n == 1 && c[0] == '.'))) {
			depth++;
		}
		c += n + (end ? 1 : 0);
	}
	return true;
}

static int cmp_entry_path(const void *key, const void *el)
{
	return strcmp((const char *)key, ((const struct manifest_entry *)el)->path);
}

const struct manifest_entry *manifest_find(const struct manifest *m, const char *path)
{
	return m->n_entries ? bsearch(path, m->entries, m->n_entries, sizeof(*m->entries), cmp_entry_path)
			    : NULL;
}

/* A link's target must not pass through another link of the release: "a/.." where a → "."
 * would escape even though the words stay inside. */
static bool link_through_link(const struct manifest *m, const struct manifest_entry *en)
{
	char *dir = xstrdup(en->path);
	char *slash = strrchr(dir, '/');
	struct buf cur;
	bool bad = false;

	buf_init(&cur, MANIFEST_PATH_MAX * 2);
	if (slash) {
		*slash = 0;
		buf_adds(&cur, dir);
	}
	for (const char *c = en->target; *c && !bad;) {
		const char *end = strchr(c, '/');
		size_t n = end ? (size_t)(end - c) : strlen(c);
		bool last = !end || !end[1];
		if (n == 2 && c[0] == '.' && c[1] == '.') {
			char *s = strrchr(cur.data ? cur.data : "", '/');
			if (s)
				cur.len = (size_t)(s - cur.data), cur.data[cur.len] = 0;
			else
				buf_reset(&cur);
		} else if (!(n == 0 || (n == 1 && c[0] == '.'))) {
			if (cur.len)
				buf_addc(&cur, '/');
			buf_add(&cur, c, n);
			const struct manifest_entry *hit = manifest_find(m, buf_str(&cur));
			if (hit && hit->type == MANIFEST_LINK && !last)
				bad = true;
		}
		c += n + (end ? 1 : 0);
	}
	buf_done(&cur);
	free(dir);
	return bad;
}

int manifest_validate(const struct manifest *m, struct err *e)
{
	/* Paths and order first: the lookups below (bsearch) rely on the order. */
	for (size_t i = 0; i < m->n_entries; i++) {
		const struct manifest_entry *en = &m->entries[i];
		if (!path_ok(en->path, strlen(en->path)))
			return err_set(e, CAIRN_EINPUT, "manifest: unsafe path \"%s\"", en->path);
		if (i && strcmp(m->entries[i - 1].path, en->path) >= 0)
			return err_set(e, CAIRN_EINPUT, "manifest: entries not sorted or repeated at \"%s\"",
				       en->path);
	}
	for (size_t i = 0; i < m->n_entries; i++) {
		const struct manifest_entry *en = &m->entries[i];
		const char *slash;
		if ((slash = strrchr(en->path, '/'))) {
			char *parent = xstrndup(en->path, (size_t)(slash - en->path));
			const struct manifest_entry *p = manifest_find(m, parent);
			free(parent);
			if (!p || p->type != MANIFEST_DIR)
				return err_set(e, CAIRN_EINPUT,
					       "manifest: \"%s\" has no parent directory entry", en->path);
		}
		switch (en->type) {
		case MANIFEST_FILE:
			if (en->size < 0 || strlen(en->digest) != HASH_HEX_LEN ||
			    !hash_is_hex(en->digest, HASH_HEX_LEN))
				return err_set(e, CAIRN_EINPUT, "manifest: bad size or digest for \"%s\"",
					       en->path);
			/* fall through */
		case MANIFEST_DIR:
			if (en->mode & ~0777u)
				return err_set(e, CAIRN_EINPUT, "manifest: mode %o of \"%s\" is not allowed",
					       en->mode, en->path);
			break;
		case MANIFEST_LINK:
			/* bounded like a path: no system follows a longer target (PATH_MAX), and the
			 * walk in link_through_link relies on the bound */
			if (!en->target || strlen(en->target) > MANIFEST_PATH_MAX ||
			    !manifest_link_inside(en->path, en->target))
				return err_set(e, CAIRN_EINPUT,
					       "manifest: symlink \"%s\" points outside the release (→ %s)",
					       en->path, en->target ? en->target : "");
			break;
		default:
			return err_set(e, CAIRN_EINPUT, "manifest: bad entry type for \"%s\"", en->path);
		}
	}
	for (size_t i = 0; i < m->n_entries; i++)
		if (m->entries[i].type == MANIFEST_LINK && link_through_link(m, &m->entries[i]))
			return err_set(e, CAIRN_EINPUT,
				       "manifest: symlink \"%s\" resolves through another symlink (→ %s)",
				       m->entries[i].path, m->entries[i].target);
	return 0;
}

/* ---- parsing ------------------------------------------------------------------------- */

static char *dup_json_str(json_t *v)
{
	if (!json_is_string(v) || memchr(json_string_value(v), 0, json_string_length(v)) ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return NULL;
	return xstrdup(json_string_value(v));
}

static int parse_entry(json_t *o, struct manifest_entry *en, struct err *e)
{
	const char *type;
	json_t *v;

	if (!json_is_object(o) || !(en->path = dup_json_str(json_object_get(o, "path"))))
		return err_set(e, CAIRN_EINPUT, "manifest: an entry has no path");
	type = json_string_value(json_object_get(o, "type"));
	if (!type)
		return err_set(e, CAIRN_EINPUT, "manifest: \"%s\" has no type", en->path);
	if (!strcmp(type, "file"))
		en->type = MANIFEST_FILE;
	else if (!strcmp(type, "dir"))
		en->type = MANIFEST_DIR;
	else if (!strcmp(type, "link"))
		en->type = MANIFEST_LINK;
	else
		return err_set(e, CAIRN_EINPUT, "manifest: \"%s\" has unknown type", en->path);
	if (en->type != MANIFEST_LINK) {
		v = json_object_get(o, "mode");
		if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 0777)
			return err_set(e, CAIRN_EINPUT, "manifest: \"%s\" has a bad mode", en->path);
		en->mode = (unsigned)json_integer_value(v);
	}
	if (en->type == MANIFEST_FILE) {
		const char *d = json_string_value(json_object_get(o, "digest"));
		v = json_object_get(o, "size");
		if (!json_is_integer(v) || json_integer_value(v) < 0 || !d || strlen(d) != HASH_HEX_LEN)
			return err_set(e, CAIRN_EINPUT, "manifest: \"%s\" has a bad size or digest",
				       en->path);
		en->size = json_integer_value(v);
		memcpy(en->digest, d, HASH_HEX_LEN + 1);
	}
	if (en->type == MANIFEST_LINK) {
		if (!(en->target = dup_json_str(json_object_get(o, "target"))))
			return err_set(e, CAIRN_EINPUT, "manifest: symlink \"%s\" has no target", en->path);
		en->size = (int64_t)strlen(en->target);
	}
	return 0;
}

int manifest_parse(const char *data, size_t n, struct manifest **out, struct err *e)
{
	json_error_t je;
	json_t *root, *v, *run;
	struct manifest *m;
	size_t i;
	int r = 0;

	if (n > MANIFEST_MAX_BYTES)
		return err_set(e, CAIRN_EINPUT, "manifest is larger than %u bytes", MANIFEST_MAX_BYTES);
	root = json_loadb(data, n, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return err_set(e, CAIRN_EINPUT, "manifest is not valid JSON: %s (at byte %d)", je.text,
			       je.position);
	m = xcalloc(1, sizeof(*m));
	strv_init(&m->run_command);
	if (!json_is_object(root) || json_integer_value(json_object_get(root, "version")) !=
					     MANIFEST_VERSION) {
		r = err_set(e, CAIRN_EINPUT, "manifest: not a cairn manifest of version %d",
			    MANIFEST_VERSION);
		goto fail;
	}
	if (!(m->app = dup_json_str(json_object_get(root, "app")))) {
		r = err_set(e, CAIRN_EINPUT, "manifest: no app");
		goto fail;
	}
	if (!name_app_ok(m->app, strlen(m->app))) {
		/* the same rule as cairn.yml's app: (base/names.c) — every path that registers a
		 * release reads its manifest here */
		r = err_set(e, CAIRN_EINPUT,
			    "manifest: \"app\" is not a valid app name: lowercase letters, digits, "
			    "'_', '.' and '-', starting with a letter or digit, at most %d characters",
			    NAME_APP_MAX);
		goto fail;
	}
	v = json_object_get(root, "entries");
	if (!json_is_array(v) || json_array_size(v) > MANIFEST_ENTRIES_MAX) {
		r = err_set(e, CAIRN_EINPUT, "manifest: no entries list");
		goto fail;
	}
	m->entries = xcalloc(json_array_size(v), sizeof(*m->entries));
	for (i = 0; i < json_array_size(v); i++) {
		m->n_entries = i + 1;
		if ((r = parse_entry(json_array_get(v, i), &m->entries[i], e)) < 0)
			goto fail;
	}
	run = json_object_get(root, "run");
	v = json_object_get(run, "command");
	if (!json_is_object(run) || !json_is_array(v)) {
		r = err_set(e, CAIRN_EINPUT, "manifest: no run.command");
		goto fail;
	}
	for (i = 0; i < json_array_size(v); i++) {
		char *s = dup_json_str(json_array_get(v, i));
		if (!s) {
			r = err_set(e, CAIRN_EINPUT, "manifest: run.command has a non-string");
			goto fail;
		}
		strv_push_owned(&m->run_command, s);
	}
	v = json_object_get(run, "env");
	if (!json_is_object(v)) {
		r = err_set(e, CAIRN_EINPUT, "manifest: no run.env");
		goto fail;
	}
	{
		const char *k;
		json_t *val;
		size_t cap = json_object_size(v);
		m->run_env.keys = xcalloc(cap, sizeof(char *));
		m->run_env.values = xcalloc(cap, sizeof(char *));
		/* jansson iterates in insertion order; we serialise sorted, so re-sort here */
		struct strv keys;
		strv_init(&keys);
		json_object_foreach(v, k, val) strv_push(&keys, k);
		strv_sort(&keys);
		for (i = 0; i < keys.n; i++) {
			char *s = dup_json_str(json_object_get(v, keys.v[i]));
			if (!s) {
				strv_done(&keys);
				r = err_set(e, CAIRN_EINPUT, "manifest: run.env has a non-string");
				goto fail;
			}
			m->run_env.keys[m->run_env.n] = xstrdup(keys.v[i]);
			m->run_env.values[m->run_env.n++] = s;
		}
		strv_done(&keys);
	}
	v = json_object_get(run, "stop_timeout_ms");
	if (!json_is_integer(v) || json_integer_value(v) < 0) {
		r = err_set(e, CAIRN_EINPUT, "manifest: bad run.stop_timeout_ms");
		goto fail;
	}
	m->stop_timeout_ms = json_integer_value(v);
	v = json_object_get(run, "user");
	if (v && !(json_is_string(v) && proc_run_user_ok(json_string_value(v)))) {
		r = err_set(e, CAIRN_EINPUT, "manifest: bad run.user");
		goto fail;
	}
	m->run_user = v ? xstrdup(json_string_value(v)) : NULL;
	v = json_object_get(root, "deps");
	if (!json_is_array(v)) {
		r = err_set(e, CAIRN_EINPUT, "manifest: no deps list");
		goto fail;
	}
	for (i = 0; i < json_array_size(v); i++) {
		json_t *d = json_array_get(v, i);
		const char *eco = json_string_value(json_object_get(d, "ecosystem"));
		const char *name = json_string_value(json_object_get(d, "name"));
		const char *ver = json_string_value(json_object_get(d, "version"));
		const char *src = json_string_value(json_object_get(d, "source"));
		if (!eco || !name || !ver || !src) {
			r = err_set(e, CAIRN_EINPUT, "manifest: a dependency lacks a field");
			goto fail;
		}
		dep_list_add(&m->deps, eco, name, ver, src);
	}
	if ((r = manifest_validate(m, e)) < 0)
		goto fail;
	json_decref(root);
	*out = m;
	return 0;
fail:
	json_decref(root);
	manifest_free(m);
	return r;
}
