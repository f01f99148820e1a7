/* toml-lite: a small, bounded, line-recovering TOML reader for dependency manifests and
 * lockfiles (pyproject.toml, Pipfile, Cargo.toml, Cargo.lock, poetry.lock, uv.lock).
 * It is not a validating TOML parser: it keeps what the pins and deps scanners need, and a
 * line it cannot read is skipped. It never reads past `n` and never recurses deeper than
 * TOML_MAX_DEPTH. */
#include "release/release-internal.h"

#include <stdlib.h>
#include <string.h>

#define TOML_MAX_DEPTH 32
#define TOML_MAX_PATH 64

struct tr {
	const char *p, *end;
	const char *line_start;
	int line;
};

static int col_of(const struct tr *t, const char *at)
{
	return (int)(at - t->line_start) + 1;
}

static void newline(struct tr *t)
{
	/* t->p points just past a '\n' */
	t->line++;
	t->line_start = t->p;
}

static void skip_blank(struct tr *t)
{
	while (t->p < t->end && (*t->p == ' ' || *t->p == '\t'))
		t->p++;
}

/* Skips blanks, comments and newlines (inside arrays and inline tables). */
static void skip_space_nl(struct tr *t)
{
	while (t->p < t->end) {
		char c = *t->p;
		if (c == ' ' || c == '\t' || c == '\r') {
			t->p++;
		} else if (c == '\n') {
			t->p++;
			newline(t);
		} else if (c == '#') {
			while (t->p < t->end && *t->p != '\n')
				t->p++;
		} else {
			break;
		}
	}
}

static void skip_to_next_line(struct tr *t)
{
	while (t->p < t->end && *t->p != '\n')
		t->p++;
	if (t->p < t->end) {
		t->p++;
		newline(t);
	}
}

static void val_done(struct toml__val *v)
{
	for (size_t i = 0; i < v->n; i++)
		val_done(&v->kids[i]);
	free(v->kids);
	free(v->s);
	free(v->key);
	memset(v, 0, sizeof(*v));
}

static struct toml__val *val_push(struct toml__val *parent)
{
	if (parent->n == parent->cap) {
		parent->cap = parent->cap ? parent->cap * 2 : 4;
		parent->kids = xrealloc(parent->kids, parent->cap * sizeof(*parent->kids));
	}
	memset(&parent->kids[parent->n], 0, sizeof(parent->kids[0]));
	return &parent->kids[parent->n++];
}

static void add_utf8(struct buf *b, unsigned long cp)
{
	char u[4];
	size_t k;
	if (cp < 0x80) {
		u[0] = (char)cp;
		k = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xc0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3f));
		k = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xe0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
		k = 3;
	} else {
		u[0] = (char)(0xf0 | (cp >> 18));
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (char)(0x80 | (cp & 0x3f));
		k = 4;
	}
	buf_add(b, u, k);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Reads a string at t->p (a quote). On success `out` receives the malloc'd text and
 * `line`/`col` the position of its first content character. Returns false on an
 * unterminated or malformed string. */
static bool read_string(struct tr *t, char **out, int *line, int *col)
{
	char q = *t->p;
	bool multi = t->end - t->p >= 3 && t->p[1] == q && t->p[2] == q;
	struct buf b;

	buf_init(&b, (size_t)(t->end - t->p));
	t->p += multi ? 3 : 1;
	if (multi && t->p < t->end && *t->p == '\n') { /* a newline right after """ is trimmed */
		t->p++;
		newline(t);
	} else if (multi && t->end - t->p >= 2 && t->p[0] == '\r' && t->p[1] == '\n') {
		t->p += 2;
		newline(t);
	}
	*line = t->line;
	*col = col_of(t, t->p);
	while (t->p < t->end) {
		char c = *t->p;
		if (c == q) {
			if (!multi) {
				t->p++;
				*out = buf_detach(&b);
				return true;
			}
			if (t->end - t->p >= 3 && t->p[1] == q && t->p[2] == q) {
				t->p += 3;
				/* up to two more quotes belong to the content */
				while (t->p < t->end && *t->p == q && b.len < b.max) {
					buf_addc(&b, q);
					t->p++;
				}
				*out = buf_detach(&b);
				return true;
			}
		}
		if (c == '\n') {
			if (!multi)
				break;
			buf_addc(&b, c);
			t->p++;
			newline(t);
			continue;
		}
		if (c == '\\' && q == '"') {
			if (t->end - t->p < 2)
				break;
			char e = t->p[1];
			t->p += 2;
			switch (e) {
			case 'b': buf_addc(&b, '\b'); break;
			case 't': buf_addc(&b, '\t'); break;
			case 'n': buf_addc(&b, '\n'); break;
			case 'f': buf_addc(&b, '\f'); break;
			case 'r': buf_addc(&b, '\r'); break;
			case 'e': buf_addc(&b, 0x1b); break;
			case '"': buf_addc(&b, '"'); break;
			case '\\': buf_addc(&b, '\\'); break;
			case 'u':
			case 'U': {
				int k = e == 'u' ? 4 : 8;
				unsigned long cp = 0;
				if (t->end - t->p < k)
					goto bad;
				for (int i = 0; i < k; i++) {
					int h = hexval(t->p[i]);
					if (h < 0)
						goto bad;
					cp = cp * 16 + (unsigned long)h;
				}
				if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
					goto bad;
				t->p += k;
				add_utf8(&b, cp);
				break;
			}
			default:
				if (!multi)
					goto bad;
				/* line-ending backslash: drop the newline and leading blanks */
				t->p--;
				while (t->p < t->end && strchr(" \t\r", *t->p) && *t->p)
					t->p++;
				if (t->p >= t->end || *t->p != '\n')
					goto bad;
				while (t->p < t->end && (*t->p == ' ' || *t->p == '\t' ||
							 *t->p == '\r' || *t->p == '\n')) {
					if (*t->p++ == '\n')
						newline(t);
				}
				break;
			}
			continue;
		}
		buf_addc(&b, c);
		t->p++;
	}
bad:
	buf_done(&b);
	return false;
}

static bool is_bare(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-';
}

/* A (dotted) key into segs (malloc'd strings). Stops before '=' or ']'. */
static bool read_key(struct tr *t, char **segs, int *lines, int *cols, size_t *nseg, size_t max)
{
	*nseg = 0;
	for (;;) {
		skip_blank(t);
		if (t->p >= t->end || *nseg == max)
			return false;
		lines[*nseg] = t->line;
		cols[*nseg] = col_of(t, t->p);
		if (*t->p == '"' || *t->p == '\'') {
			if (!read_string(t, &segs[*nseg], &lines[*nseg], &cols[*nseg]))
				return false;
		} else {
			const char *s = t->p;
			while (t->p < t->end && is_bare(*t->p))
				t->p++;
			if (t->p == s)
				return false;
			segs[*nseg] = xstrndup(s, (size_t)(t->p - s));
		}
		(*nseg)++;
		skip_blank(t);
		if (t->p < t->end && *t->p == '.') {
			t->p++;
			continue;
		}
		return true;
	}
}

static void free_segs(char **segs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(segs[i]);
}

static bool read_value(struct tr *t, struct toml__val *v, int depth);

static bool read_inline_table(struct tr *t, struct toml__val *v, int depth)
{
	char *segs[TOML_MAX_PATH];
	int lines[TOML_MAX_PATH], cols[TOML_MAX_PATH];
	size_t nseg;

	v->kind = TOML_TAB;
	t->p++;
	for (;;) {
		skip_space_nl(t);
		if (t->p >= t->end)
			return false;
		if (*t->p == '}') {
			t->p++;
			return true;
		}
		if (!read_key(t, segs, lines, cols, &nseg, TOML_MAX_PATH)) {
			free_segs(segs, nseg);
			return false;
		}
		struct toml__val *kid = val_push(v);
		struct buf k;
		buf_init(&k, (size_t)(t->end - t->p) + 4096);
		for (size_t i = 0; i < nseg; i++) {
			if (i)
				buf_addc(&k, '.');
			buf_adds(&k, segs[i]);
		}
		free_segs(segs, nseg);
		kid->key = buf_detach(&k);
		kid->key_line = lines[0];
		kid->key_col = cols[0];
		skip_blank(t);
		if (t->p >= t->end || *t->p != '=')
			return false;
		t->p++;
		skip_blank(t);
		if (!read_value(t, kid, depth + 1))
			return false;
		skip_space_nl(t);
		if (t->p < t->end && *t->p == ',')
			t->p++;
		else if (t->p < t->end && *t->p == '}')
			continue;
		else
			return false;
	}
}

static bool read_value(struct tr *t, struct toml__val *v, int depth)
{
	if (depth > TOML_MAX_DEPTH || t->p >= t->end)
		return false;
	v->line = t->line;
	v->col = col_of(t, t->p);
	switch (*t->p) {
	case '"':
	case '\'':
		v->kind = TOML_STR;
		return read_string(t, &v->s, &v->line, &v->col);
	case '[':
		v->kind = TOML_ARR;
		t->p++;
		for (;;) {
			skip_space_nl(t);
			if (t->p >= t->end)
				return false;
			if (*t->p == ']') {
				t->p++;
				return true;
			}
			if (!read_value(t, val_push(v), depth + 1))
				return false;
			skip_space_nl(t);
			if (t->p < t->end && *t->p == ',')
				t->p++;
			else if (!(t->p < t->end && *t->p == ']'))
				return false;
		}
	case '{':
		return read_inline_table(t, v, depth);
	default: {
		const char *s = t->p;
		while (t->p < t->end && *t->p && !strchr(" \t\r\n,]}#", *t->p))
			t->p++;
		if (t->p == s)
			return false;
		v->kind = TOML_RAW;
		v->s = xstrndup(s, (size_t)(t->p - s));
		return true;
	}
	}
}

/* The rest of the line must be blank or a comment. */
static bool line_end_ok(struct tr *t)
{
	skip_blank(t);
	if (t->p < t->end && *t->p == '\r')
		t->p++;
	if (t->p >= t->end)
		return true;
	return *t->p == '\n' || *t->p == '#';
}

void toml__read(const char *data, size_t n, toml__kv_cb cb, void *ctx)
{
	struct tr t = { data, data + n, data, 1 };
	char *hdr[TOML_MAX_PATH], *key[TOML_MAX_PATH];
	int hl[TOML_MAX_PATH], hc[TOML_MAX_PATH], kl[TOML_MAX_PATH], kc[TOML_MAX_PATH];
	size_t nhdr = 0, nkey;
	unsigned seq = 0;
	struct toml__seg path[2 * TOML_MAX_PATH];

	while (t.p < t.end) {
		skip_space_nl(&t);
		if (t.p >= t.end)
			break;
		if (*t.p == '[') {
			bool arr = t.end - t.p >= 2 && t.p[1] == '[';
			size_t nnew;
			char *nh[TOML_MAX_PATH];
			int nl[TOML_MAX_PATH], nc[TOML_MAX_PATH];
			t.p += arr ? 2 : 1;
			if (!read_key(&t, nh, nl, nc, &nnew, TOML_MAX_PATH) || t.p >= t.end ||
			    *t.p != ']' || (arr && (t.end - t.p < 2 || t.p[1] != ']'))) {
				free_segs(nh, nnew);
				skip_to_next_line(&t);
				continue;
			}
			t.p += arr ? 2 : 1;
			free_segs(hdr, nhdr);
			nhdr = nnew;
			for (size_t i = 0; i < nnew; i++) {
				hdr[i] = nh[i];
				hl[i] = nl[i];
				hc[i] = nc[i];
				path[i] = (struct toml__seg){ hdr[i], hl[i], hc[i] };
			}
			seq++;
			cb(ctx, path, nhdr, nhdr, seq, NULL);
			if (!line_end_ok(&t))
				skip_to_next_line(&t);
			continue;
		}
		const char *line_at = t.p;
		bool ok = read_key(&t, key, kl, kc, &nkey, TOML_MAX_PATH);
		if (!ok || t.p >= t.end || *t.p != '=') {
			free_segs(key, nkey);
			if (t.p == line_at)
				t.p++;
			skip_to_next_line(&t);
			continue;
		}
		t.p++;
		skip_blank(&t);
		struct toml__val v;
		memset(&v, 0, sizeof(v));
		v.key_line = kl[0];
		v.key_col = kc[0];
		if (read_value(&t, &v, 0) && line_end_ok(&t)) {
			for (size_t i = 0; i < nhdr; i++)
				path[i] = (struct toml__seg){ hdr[i], hl[i], hc[i] };
			for (size_t i = 0; i < nkey; i++)
				path[nhdr + i] = (struct toml__seg){ key[i], kl[i], kc[i] };
			cb(ctx, path, nhdr + nkey, nhdr, seq, &v);
		} else {
			skip_to_next_line(&t);
		}
		val_done(&v);
		free_segs(key, nkey);
	}
	free_segs(hdr, nhdr);
}

const struct toml__val *toml__get(const struct toml__val *tab, const char *key)
{
	const struct toml__val *found = NULL;
	if (!tab || tab->kind != TOML_TAB)
		return NULL;
	for (size_t i = 0; i < tab->n; i++)
		if (tab->kids[i].key && !strcmp(tab->kids[i].key, key))
			found = &tab->kids[i];
	return found;
}

const char *toml__get_str(const struct toml__val *tab, const char *key)
{
	const struct toml__val *v = toml__get(tab, key);
	return v && v->kind == TOML_STR ? v->s : NULL;
}
