/* buf, slice, strv and small string helpers. buf is the one owning byte buffer of the
 * project: bounded by a mandatory maximum and always NUL-terminated. */
#include "base/base.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b, size_t max)
{
	b->data = NULL;
	b->len = b->cap = 0;
	b->max = max;
	b->err = 0;
}

void buf_done(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	b->err = 0;
	if (b->data)
		b->data[0] = 0;
}

static int buf_grow(struct buf *b, size_t extra)
{
	size_t need, ncap;
	char *p;

	if (b->err)
		return b->err;
	if (extra > b->max || b->len > b->max - extra)
		return b->err = -E2BIG;
	need = b->len + extra + 1;
	if (need <= b->cap)
		return 0;
	ncap = b->cap ? b->cap : 64;
	while (ncap < need)
		ncap *= 2;
	if (ncap > b->max + 1)
		ncap = b->max + 1;
	p = realloc(b->data, ncap);
	if (!p)
		return b->err = -ENOMEM;
	b->data = p;
	b->cap = ncap;
	return 0;
}

int buf_add(struct buf *b, const void *p, size_t n)
{
	int r = buf_grow(b, n);
	if (r < 0)
		return r;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = 0;
	return 0;
}

int buf_adds(struct buf *b, const char *s)
{
	return buf_add(b, s, strlen(s));
}

int buf_addc(struct buf *b, char c)
{
	return buf_add(b, &c, 1);
}

int buf_vaddf(struct buf *b, const char *fmt, va_list ap)
{
	va_list cp;
	int n, r;

	va_copy(cp, ap);
	n = vsnprintf(NULL, 0, fmt, cp);
	va_end(cp);
	if (n < 0)
		return b->err = -EINVAL;
	r = buf_grow(b, (size_t)n);
	if (r < 0)
		return r;
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return 0;
}

int buf_addf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int r;
	va_start(ap, fmt);
	r = buf_vaddf(b, fmt, ap);
	va_end(ap);
	return r;
}

const char *buf_str(const struct buf *b)
{
	return b->data ? b->data : "";
}

char *buf_detach(struct buf *b)
{
	char *p = b->data ? b->data : xstrdup("");
	b->data = NULL;
	b->len = b->cap = 0;
	return p;
}

int buf_add_quoted(struct buf *b, const char *s)
{
	int r = buf_addc(b, '"');
	for (; r == 0 && *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			r = buf_addf(b, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			r = buf_addf(b, "\\x%02x", c);
		else
			r = buf_addc(b, (char)c);
	}
	return r ? r : buf_addc(b, '"');
}

struct slice slice_from(const char *s)
{
	return (struct slice){ s, s ? strlen(s) : 0 };
}

bool slice_eq(struct slice a, const char *s)
{
	size_t n = strlen(s);
	return a.n == n && memcmp(a.p, s, n) == 0;
}

bool slice_starts(struct slice a, const char *prefix)
{
	size_t n = strlen(prefix);
	return a.n >= n && memcmp(a.p, prefix, n) == 0;
}

struct slice slice_trim(struct slice a)
{
	while (a.n && (a.p[0] == ' ' || a.p[0] == '\t' || a.p[0] == '\r' || a.p[0] == '\n')) {
		a.p++;
		a.n--;
	}
	while (a.n && (a.p[a.n - 1] == ' ' || a.p[a.n - 1] == '\t' || a.p[a.n - 1] == '\r' ||
		       a.p[a.n - 1] == '\n'))
		a.n--;
	return a;
}

static void die_oom(void)
{
	fputs("cairn: error: out of memory\n", stderr);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		die_oom();
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		die_oom();
	return p;
}

void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		die_oom();
	return p;
}

char *xstrdup(const char *s)
{
	char *p = strdup(s);
	if (!p)
		die_oom();
	return p;
}

char *xstrndup(const char *s, size_t n)
{
	char *p = strndup(s, n);
	if (!p)
		die_oom();
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;
	int r;
	va_start(ap, fmt);
	r = vasprintf(&p, fmt, ap);
	va_end(ap);
	if (r < 0)
		die_oom();
	return p;
}

bool str_starts(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool str_ends(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

size_t str_edit_distance(const char *a, const char *b, size_t cap)
{
	size_t n = strlen(a), m = strlen(b), i, j;
	size_t *row;

	if (n > 64 || m > 64)
		return cap;
	row = xcalloc(m + 1, sizeof(*row));
	for (j = 0; j <= m; j++)
		row[j] = j;
	for (i = 1; i <= n; i++) {
		size_t prev = row[0];
		row[0] = i;
		for (j = 1; j <= m; j++) {
			size_t cur = row[j];
			size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
			size_t best = prev + cost;
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			prev = cur;
		}
	}
	i = row[m];
	free(row);
	return i < cap ? i : cap;
}

const char *str_nearest(const char *s, const char *const names[])
{
	size_t len = strlen(s), cap = len / 3 > 2 ? len / 3 + 1 : 3, best = cap;
	const char *found = NULL;

	for (size_t i = 0; names[i]; i++) {
		size_t d = str_edit_distance(s, names[i], cap);
		if (d < best) {
			best = d;
			found = names[i];
		}
	}
	return found;
}

void strv_init(struct strv *s)
{
	s->v = NULL;
	s->n = s->cap = 0;
}

void strv_done(struct strv *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	strv_init(s);
}

void strv_push_owned(struct strv *s, char *str)
{
	if (s->n + 2 > s->cap) {
		s->cap = s->cap ? s->cap * 2 : 8;
		s->v = xrealloc(s->v, s->cap * sizeof(*s->v));
	}
	s->v[s->n++] = str;
	s->v[s->n] = NULL;
}

void strv_push(struct strv *s, const char *str)
{
	strv_push_owned(s, xstrdup(str));
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void strv_sort(struct strv *s)
{
	if (s->n > 1)
		qsort(s->v, s->n, sizeof(*s->v), cmp_str);
}
