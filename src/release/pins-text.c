/* pins-text: text helpers shared by the pins scanners — logical lines (continuations joined,
 * with a map back to FILE:LINE:COL), shell-like word splitting for install commands, and
 * small predicates. Everything is bounded by the input it is given. */
#include "release/release-internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

bool pins__is_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char)s[i]))
			return false;
	return n > 0;
}

char *pins__py_name(const char *s, size_t n)
{
	char *out = xmalloc(n + 1), *o = out;
	bool sep = false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '-' || c == '_' || c == '.') {
			sep = true;
			continue;
		}
		if (sep && o > out)
			*o++ = '-';
		sep = false;
		*o++ = (char)tolower((unsigned char)c);
	}
	*o = 0;
	return out;
}

/* ---- logical lines ---------------------------------------------------------------------- */

void pins__reader_init(struct pins__reader *rd, const char *data, size_t n)
{
	rd->p = data;
	rd->end = data + n;
	rd->line = 1;
	rd->esc = '\\';
}

void pins__lline_init(struct pins__lline *ll)
{
	memset(ll, 0, sizeof(*ll));
	buf_init(&ll->text, PINS_FILE_MAX + 1);
}

void pins__lline_done(struct pins__lline *ll)
{
	buf_done(&ll->text);
	free(ll->segs);
	memset(ll, 0, sizeof(*ll));
}

static void add_seg(struct pins__lline *ll, int line, int col)
{
	if (ll->nseg == ll->capseg) {
		ll->capseg = ll->capseg ? ll->capseg * 2 : 4;
		ll->segs = xrealloc(ll->segs, ll->capseg * sizeof(*ll->segs));
	}
	ll->segs[ll->nseg++] = (struct pins__seg){ ll->text.len, line, col };
}

static bool blank_or_comment(const char *s, size_t n, bool *comment)
{
	size_t i = 0;
	while (i < n && (s[i] == ' ' || s[i] == '\t'))
		i++;
	*comment = i < n && s[i] == '#';
	return i == n || *comment;
}

/* Length of a Ruby line without its comment and trailing blanks. */
static size_t ruby_code_len(const char *s, size_t n)
{
	char q = 0;
	size_t i;
	for (i = 0; i < n; i++) {
		if (q) {
			if (s[i] == '\\')
				i++;
			else if (s[i] == q)
				q = 0;
		} else if (s[i] == '\'' || s[i] == '"') {
			q = s[i];
		} else if (s[i] == '#') {
			break;
		}
	}
	if (i > n)
		i = n;
	while (i && (s[i - 1] == ' ' || s[i - 1] == '\t'))
		i--;
	return i;
}

bool pins__next_lline(struct pins__reader *rd, struct pins__lline *ll, enum pins__lmode mode)
{
	buf_reset(&ll->text);
	ll->nseg = 0;
	if (rd->p >= rd->end)
		return false;
	ll->line = rd->line;
	for (;;) {
		const char *s = rd->p;
		const char *nl = memchr(s, '\n', (size_t)(rd->end - s));
		const char *e = nl ? nl : rd->end;
		int lineno = rd->line++;
		size_t len = (size_t)(e - s);
		bool cont = false, comment;

		rd->p = nl ? nl + 1 : rd->end;
		if (len && s[len - 1] == '\r')
			len--;
		bool skip = blank_or_comment(s, len, &comment);
		if (mode == PINS_LINES_DOCKER && ll->nseg > 0 && skip) {
			/* blank and comment lines inside a continued instruction are dropped */
			if (rd->p >= rd->end)
				return true;
			continue;
		}
		if (mode == PINS_LINES_DOCKER && !comment) {
			size_t t = len;
			while (t && (s[t - 1] == ' ' || s[t - 1] == '\t'))
				t--;
			if (t && s[t - 1] == rd->esc) {
				cont = true;
				len = t - 1;
			}
		} else if (mode == PINS_LINES_RUBY) {
			size_t t = ruby_code_len(s, len);
			if (t && s[t - 1] == '\\') {
				cont = true;
				len = t - 1;
			} else if (t && s[t - 1] == ',') {
				cont = true;
				len = t;
			}
		} else if (!(mode == PINS_LINES_PIP && comment)) {
			if (len && s[len - 1] == '\\') {
				cont = true;
				len--;
			}
		}
		if (ll->nseg == 0)
			ll->line = lineno;
		add_seg(ll, lineno, 1);
		buf_add(&ll->text, s, len);
		if (!cont || rd->p >= rd->end)
			return true;
	}
}

void pins__lline_pos(const struct pins__lline *ll, size_t off, int *out_line, int *out_col)
{
	size_t k = 0;
	for (size_t i = 0; i < ll->nseg; i++)
		if (ll->segs[i].off <= off)
			k = i;
	if (ll->nseg == 0) {
		*out_line = ll->line;
		*out_col = 1;
		return;
	}
	*out_line = ll->segs[k].line;
	*out_col = ll->segs[k].col + (int)(off - ll->segs[k].off);
}

/* ---- shell words ------------------------------------------------------------------------ */

void pins__words_done(struct pins__words *w)
{
	for (size_t i = 0; i < w->n; i++)
		free(w->v[i].s);
	free(w->v);
	memset(w, 0, sizeof(*w));
}

static void push_word(struct pins__words *w, struct buf *cur, size_t off, bool sep, bool dyn)
{
	if (w->n == w->cap) {
		w->cap = w->cap ? w->cap * 2 : 16;
		w->v = xrealloc(w->v, w->cap * sizeof(*w->v));
	}
	w->v[w->n++] = (struct pins__word){ buf_detach(cur), off, sep, dyn };
}

/* Copies a balanced $( ) / ${ } / ` ` expansion starting at s[i] into cur; returns the index
 * after it. */
static size_t take_expansion(const char *s, size_t n, size_t i, struct buf *cur)
{
	char open, close;
	int depth = 0;
	if (s[i] == '`') {
		size_t j = i + 1;
		while (j < n && s[j] != '`')
			j++;
		j = j < n ? j + 1 : n;
		buf_add(cur, s + i, j - i);
		return j;
	}
	open = s[i + 1]; /* the caller checked i + 1 < n */
	close = open == '(' ? ')' : '}';
	size_t j = i + 1;
	for (; j < n; j++) {
		if (s[j] == open)
			depth++;
		else if (s[j] == close && --depth == 0) {
			j++;
			break;
		}
	}
	buf_add(cur, s + i, j - i);
	return j;
}

struct wsplit {
	struct pins__words *out;
	struct buf cur;
	size_t base, off;
	bool in_word, dyn, drop_next;
};

static void end_word(struct wsplit *ws)
{
	if (ws->in_word && !ws->drop_next)
		push_word(ws->out, &ws->cur, ws->base + ws->off, false, ws->dyn);
	else if (ws->in_word)
		ws->drop_next = false;
	buf_reset(&ws->cur);
	ws->in_word = ws->dyn = false;
}

void pins__words_split(const char *s, size_t n, size_t base, struct pins__words *out)
{
	struct wsplit ws = { .out = out, .base = base };
	size_t i = 0;

	buf_init(&ws.cur, n + 1);
	while (i < n) {
		char c = s[i];
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			end_word(&ws);
			if (c == '\n') {
				buf_reset(&ws.cur);
				push_word(out, &ws.cur, ws.base + i, true, false);
			}
			i++;
			continue;
		}
		if (!ws.in_word && c == '#') { /* comment to the end of the line */
			while (i < n && s[i] != '\n')
				i++;
			continue;
		}
		if (c == '&' && i + 1 < n && s[i + 1] == '>') {
			i++; /* &> is a redirection, not a separator */
			continue;
		}
		if (c == ';' || c == '&' || c == '|' || c == '(' || c == ')') {
			end_word(&ws);
			size_t k = i + 1 < n && s[i + 1] == c ? 2 : 1;
			buf_reset(&ws.cur);
			push_word(out, &ws.cur, ws.base + i, true, false);
			ws.drop_next = false;
			i += k;
			continue;
		}
		if (c == '<' || c == '>') {
			/* redirection: drop a pending file-descriptor number and the target */
			bool digits = ws.in_word && ws.cur.len > 0;
			for (size_t k = 0; digits && k < ws.cur.len; k++)
				digits = isdigit((unsigned char)ws.cur.data[k]);
			if (digits) {
				buf_reset(&ws.cur);
				ws.in_word = ws.dyn = false;
			} else {
				end_word(&ws);
			}
			while (i < n && (s[i] == '<' || s[i] == '>'))
				i++;
			if (i < n && s[i] == '&') { /* >&2, <&-: no target word */
				i++;
				if (i < n && s[i] == '-')
					i++;
				while (i < n && isdigit((unsigned char)s[i]))
					i++;
				continue;
			}
			if (i < n && s[i] == '|')
				i++;
			ws.drop_next = true;
			continue;
		}
		if (!ws.in_word) {
			ws.in_word = true;
			ws.off = (c == '\'' || c == '"') ? i + 1 : i;
		}
		if (c == '\'') {
			size_t j = i + 1;
			while (j < n && s[j] != '\'')
				j++;
			buf_add(&ws.cur, s + i + 1, j - i - 1);
			i = j < n ? j + 1 : n;
		} else if (c == '"') {
			size_t j = i + 1;
			while (j < n && s[j] != '"') {
				if (s[j] == '\\' && j + 1 < n &&
				    strchr("\"\\$`", s[j + 1])) {
					j++;
				} else if (s[j] == '$' || s[j] == '`') {
					ws.dyn = true;
				}
				buf_addc(&ws.cur, s[j]);
				j++;
			}
			i = j < n ? j + 1 : n;
		} else if (c == '\\') {
			if (i + 1 < n)
				buf_addc(&ws.cur, s[i + 1]);
			i += 2;
		} else if ((c == '$' && i + 1 < n && (s[i + 1] == '(' || s[i + 1] == '{')) ||
			   c == '`') {
			ws.dyn = true;
			i = take_expansion(s, n, i, &ws.cur);
		} else {
			if (c == '$')
				ws.dyn = true;
			buf_addc(&ws.cur, c);
			i++;
		}
	}
	end_word(&ws);
	buf_done(&ws.cur);
}
