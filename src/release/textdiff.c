/* textdiff: line diffs for `cairn diff` — Myers' O((N+M)D) algorithm over lines, rendered as
 * unified hunks. Bounded: past TEXTDIFF_MAX_D edits it reports the files as too different to
 * show instead of using quadratic memory. */
#include "release/release-internal.h"

#include <stdlib.h>
#include <string.h>

#define TEXTDIFF_MAX_D 2000

struct line {
	const char *p;
	size_t n;
	uint64_t h;
};

static size_t split_lines(const char *s, size_t n, struct line **out)
{
	size_t cap = 64, cnt = 0;
	struct line *v = xmalloc(cap * sizeof(*v));
	const char *end = s + n;
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		size_t len = nl ? (size_t)(nl - s) + 1 : (size_t)(end - s);
		uint64_t h = 1469598103934665603ULL;
		for (size_t i = 0; i < len; i++)
			h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
		if (cnt == cap)
			v = xrealloc(v, (cap *= 2) * sizeof(*v));
		v[cnt++] = (struct line){ s, len, h };
		s += len;
	}
	*out = v;
	return cnt;
}

static bool line_eq(const struct line *a, const struct line *b)
{
	return a->h == b->h && a->n == b->n && memcmp(a->p, b->p, a->n) == 0;
}

enum op { OP_EQ, OP_DEL, OP_INS };

/* Edit script from a to b, in order; returns its length or -1 when D exceeds the bound. */
static long myers(const struct line *a, long n, const struct line *b, long m, char **out_ops)
{
	long max = n + m, off, d, k, found = -1;
	long *v, **trace;
	char *ops;
	long len = 0;

	if (max == 0) {
		*out_ops = xmalloc(1);
		return 0;
	}
	off = max + 1;
	v = xcalloc((size_t)(2 * max + 3), sizeof(long));
	trace = xcalloc(TEXTDIFF_MAX_D + 1, sizeof(long *));
	for (d = 0; d <= max && d <= TEXTDIFF_MAX_D; d++) {
		for (k = -d; k <= d; k += 2) {
			long x, y;
			if (k == -d || (k != d && v[off + k - 1] < v[off + k + 1]))
				x = v[off + k + 1];
			else
				x = v[off + k - 1] + 1;
			y = x - k;
			while (x < n && y < m && line_eq(&a[x], &b[y]))
				x++, y++;
			v[off + k] = x;
			if (x >= n && y >= m)
				found = d;
			if (found >= 0)
				break;
		}
		trace[d] = xmalloc((size_t)(2 * max + 3) * sizeof(long));
		memcpy(trace[d], v, (size_t)(2 * max + 3) * sizeof(long));
		if (found >= 0)
			break;
	}
	if (found < 0) {
		for (d = 0; d <= TEXTDIFF_MAX_D; d++)
			free(trace[d]);
		free(trace);
		free(v);
		return -1;
	}
	/* backtrack from (n, m) */
	ops = xmalloc((size_t)(n + m + 1));
	{
		long x = n, y = m;
		for (d = found; d >= 0; d--) {
			long *vd = trace[d];
			long prev_k, prev_x, prev_y;
			k = x - y;
			if (d == 0) {
				while (x > 0 && y > 0)
					ops[len++] = OP_EQ, x--, y--;
				break;
			}
			long *vp = trace[d - 1];
			if (k == -d || (k != d && vp[off + k - 1] < vp[off + k + 1]))
				prev_k = k + 1;
			else
				prev_k = k - 1;
			prev_x = vp[off + prev_k];
			prev_y = prev_x - prev_k;
			while (x > prev_x && y > prev_y)
				ops[len++] = OP_EQ, x--, y--;
			if (x == prev_x)
				ops[len++] = OP_INS, y--;
			else
				ops[len++] = OP_DEL, x--;
			(void)vd;
		}
	}
	for (long i = 0; i < len / 2; i++) {
		char t = ops[i];
		ops[i] = ops[len - 1 - i];
		ops[len - 1 - i] = t;
	}
	for (d = 0; d <= found; d++)
		free(trace[d]);
	free(trace);
	free(v);
	*out_ops = ops;
	return len;
}

static void emit_line(struct buf *out, char sign, const struct line *l)
{
	buf_addc(out, sign);
	buf_add(out, l->p, l->n);
	if (!l->n || l->p[l->n - 1] != '\n')
		buf_adds(out, "\n\\ No newline at end of file\n");
}

int textdiff_unified(const char *a, size_t an, const char *b, size_t bn, int context,
		     struct buf *out)
{
	struct line *la, *lb;
	long n = (long)split_lines(a, an, &la), m = (long)split_lines(b, bn, &lb);
	char *ops = NULL;
	long len = myers(la, n, lb, m, &ops);
	int r = 0;

	if (len < 0) {
		r = -1;
		goto done;
	}
	/* walk the script, cutting hunks around changes */
	for (long i = 0, ai = 0, bi = 0; i < len;) {
		long j, start, end, hs_a, hs_b, ca = 0, cb = 0, x, y;
		if (ops[i] == OP_EQ) {
			i++, ai++, bi++;
			continue;
		}
		/* a change at i: extend the hunk while the next change is within 2*context */
		start = i;
		end = i;
		for (j = i; j < len; j++) {
			if (ops[j] != OP_EQ) {
				end = j;
				continue;
			}
			if (j - end > 2 * context)
				break;
		}
		/* lines of context before */
		long pre = start - (start > context ? context : start);
		long back = start - pre;
		/* find the first EQ run before start (the ops right before a change are EQ) */
		hs_a = ai - back;
		hs_b = bi - back;
		long stop = end + 1 + context < len ? end + 1 + context : len;
		/* context after must be EQ ops only */
		for (long t = end + 1; t < stop; t++)
			if (ops[t] != OP_EQ) {
				stop = t;
				break;
			}
		for (long t = start - back; t < stop; t++) {
			if (ops[t] != OP_INS)
				ca++;
			if (ops[t] != OP_DEL)
				cb++;
		}
		buf_addf(out, "@@ -%ld,%ld +%ld,%ld @@\n", ca ? hs_a + 1 : hs_a, ca, cb ? hs_b + 1 : hs_b, cb);
		x = hs_a;
		y = hs_b;
		for (long t = start - back; t < stop; t++) {
			if (ops[t] == OP_EQ)
				emit_line(out, ' ', &la[x++]), y++;
			else if (ops[t] == OP_DEL)
				emit_line(out, '-', &la[x++]);
			else
				emit_line(out, '+', &lb[y++]);
		}
		ai = x;
		bi = y;
		i = stop;
	}
done:
	free(ops);
	free(la);
	free(lb);
	return r;
}

bool textdiff_is_binary(const char *p, size_t n)
{
	return memchr(p, 0, n < 8000 ? n : 8000) != NULL;
}
