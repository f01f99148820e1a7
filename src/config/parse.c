/* config parse: cairn.yml bytes → a small tree of nodes that remember their 1-based line and
 * column, built from libfyaml's event stream. libfyaml never prints: its diagnostics are
 * collected and turned into one FILE:LINE:COL error. Knows nothing of the schema. */
#include "config/config-internal.h"

#include <errno.h>
#include <libfyaml.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_CHUNK (64 * 1024)
#define NODES_MAX   65536 /* a real cairn.yml has a few hundred nodes */

struct config__chunk {
	struct config__chunk *next;
	size_t used, cap;
	max_align_t data[];
};

static void *arena_alloc(struct cfg_parse *p, size_t n)
{
	struct config__chunk *c = p->chunks;
	void *r;

	n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
	if (!c || c->cap - c->used < n) {
		size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
		c = malloc(sizeof(*c) + cap);
		if (!c)
			return NULL;
		c->next = p->chunks;
		c->used = 0;
		c->cap = cap;
		p->chunks = c;
	}
	r = (char *)c->data + c->used;
	c->used += n;
	return r;
}

void config__parse_done(struct cfg_parse *p)
{
	while (p->chunks) {
		struct config__chunk *next = p->chunks->next;
		free(p->chunks);
		p->chunks = next;
	}
}

/* ---- input checks ---------------------------------------------------------------------- */

/* Length of the UTF-8 sequence at s (1..4), or 0 if it is not well-formed. */
static size_t utf8_len(const unsigned char *s, size_t avail)
{
	size_t n, i;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (avail < n)
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return n;
}

/* NUL bytes, control characters and broken UTF-8 are refused before libfyaml sees the text,
 * with the position of the first bad byte (columns count characters, as editors do). */
static int check_bytes(struct cfg_parse *p, const char *text, size_t len)
{
	const unsigned char *s = (const unsigned char *)text;
	int line = 1, col = 1;
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i];
		size_t n = utf8_len(s + i, len - i);
		if (c == 0)
			return err_set_at(
			    p->e, CAIRN_EINPUT, p->file, line, col,
			    "contains a NUL byte; cairn.yml must be a UTF-8 text file");
		if (!n)
			return err_set_at(p->e, CAIRN_EINPUT, p->file, line, col,
					  "byte 0x%02x is not valid UTF-8; save the file as UTF-8",
					  c);
		if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f)
			return err_set_at(p->e, CAIRN_EINPUT, p->file, line, col,
					  "control character 0x%02x is not allowed in YAML text",
					  c);
		if (c == '\n')
			line++, col = 1;
		else
			col++;
		i += n;
	}
	return 0;
}

/* ---- libfyaml diagnostics ---------------------------------------------------------------- */

static void diag_silent(struct fy_diag *diag, void *user, const char *buf, size_t len)
{
	UNUSED(diag);
	UNUSED(user);
	UNUSED(buf);
	UNUSED(len);
}

static const struct {
	const char *needle, *hint;
} syntax_hints[] = {
    {"tab", "indent with spaces"},
    {"without closing quote", "is a closing quote missing?"},
    {"wrongly indented", "is a closing quote missing, or a continued line not indented?"},
    {"escape", "see the YAML escapes: \\n \\t \\\\ \\\" \\xXX \\uXXXX"},
    {"closing bracket", "is a closing ']' missing?"},
    {"closing brace", "is a closing '}' missing?"},
    {"indent", "keys of one mapping must start in the same column"},
    {"same line", "put a nested mapping on its own, more indented lines"},
};

/* Byte offset of 1-based line:col (columns count characters), and of the character before
 * it in *out_prev. The text is valid UTF-8 by now. */
static size_t offset_of(const char *text, size_t len, int line, int col, size_t *out_prev)
{
	size_t i = 0, prev = len;

	for (int l = 1; l < line && i < len; i++)
		if (text[i] == '\n')
			l++;
	for (int c = 1; c < col && i < len && text[i] != '\n'; c++) {
		size_t n = utf8_len((const unsigned char *)text + i, len - i);
		prev = i;
		i += n ? n : 1;
	}
	*out_prev = prev;
	return i;
}

/* ---- events → tree ------------------------------------------------------------------------ */

struct builder {
	struct cfg_parse *p;
	const char *text; /* the source, for single-quoted scalars */
	size_t len;
	struct cnode *stack[CONFIG__DEPTH_MAX];
	int depth;
	size_t nodes;
	int line, col; /* where the last event ended: the position of an empty scalar */
	int docs;
	struct cnode *root;
};

/* The first error libfyaml collected, as FILE:LINE:COL; `lline`/`lcol` if it gave none. */
static int syntax_error(const struct builder *b, struct fy_diag *diag, const char *text, size_t len)
{
	struct cfg_parse *p = b->p;
	int lline = b->line, lcol = b->col;
	struct fy_diag_error *de;
	void *it = NULL;
	const char *hint = NULL;
	int line, col;
	size_t at, prev;

	while ((de = fy_diag_errors_iterate(diag, &it)))
		if (de->type >= FYET_ERROR)
			break;
	if (!de || !de->msg)
		return err_set_at(p->e, CAIRN_EINPUT, p->file, lline, lcol,
				  "YAML syntax error; check the indentation and quotes here");
	for (size_t i = 0; i < ARRAY_SIZE(syntax_hints) && !hint; i++)
		if (strstr(de->msg, syntax_hints[i].needle))
			hint = syntax_hints[i].hint;
	line = de->line > 0 ? de->line : lline;
	col = de->column > 0 ? de->column : lcol;
	at = offset_of(text, len, line, col, &prev);
	/* libfyaml points inside an unclosed quote; point at the quote itself */
	if (strstr(de->msg, "quoted") && prev < len && (text[prev] == '"' || text[prev] == '\''))
		col--;
	/* an unclosed [ or { is found where the text ends, or at the next line that is less
	 * indented ("wrongly indented flow sequence"); point at the opening one */
	while (at < len && strchr(" \t\r\n", text[at]))
		at++;
	bool flow_cut = strstr(de->msg, "wrongly indented flow") != NULL;
	for (int i = b->depth - 1; (at == len || flow_cut) && i >= 0; i--) {
		if (b->stack[i]->flow) {
			return err_set_at(p->e, CAIRN_EINPUT, p->file, b->stack[i]->line,
					  b->stack[i]->col,
					  "YAML syntax error: this '%c' is never closed; is a '%c' "
					  "missing?",
					  b->stack[i]->kind == CNODE_SEQ ? '[' : '{',
					  b->stack[i]->kind == CNODE_SEQ ? ']' : '}');
		}
	}
	return err_set_at(p->e, CAIRN_EINPUT, p->file, line, col, "YAML syntax error: %s%s%s",
			  de->msg, hint ? "; " : "", hint ? hint : "");
}

static int node_new(struct builder *b, enum cnode_kind kind, struct fy_event *ev,
		    struct cnode **out)
{
	const struct fy_mark *m = fy_event_start_mark(ev);
	struct cnode *n;

	if (++b->nodes > NODES_MAX)
		return err_set_at(b->p->e, CAIRN_EINPUT, b->p->file, b->line, b->col,
				  "too many YAML values (more than %d); is this the right file?",
				  NODES_MAX);
	n = arena_alloc(b->p, sizeof(*n));
	if (!n)
		return err_set(b->p->e, ENOMEM, "out of memory reading %s", b->p->file);
	memset(n, 0, sizeof(*n));
	n->kind = kind;
	if (m && m->line >= 0 && m->column >= 0) {
		n->line = m->line + 1;
		n->col = m->column + 1;
	} else {
		n->line = b->line;
		n->col = b->col;
	}
	*out = n;
	return 0;
}

static void attach(struct builder *b, struct cnode *n)
{
	struct cnode *parent;

	if (b->depth == 0) {
		b->root = n;
		return;
	}
	parent = b->stack[b->depth - 1];
	if (parent->last)
		parent->last->next = n;
	else
		parent->first = n;
	parent->last = n;
	parent->n++;
}

/* The value of a single-quoted scalar from its source bytes [start, end) (between the quotes):
 * '' is a quote; a line break with the blanks around it folds to a space, n > 1 breaks to n-1
 * newlines. libfyaml 0.7.12 gets consecutive '' wrong and leaks memory on many of them, so
 * cairn does this itself. out needs end - start bytes; returns the length written. */
static size_t unquote_single(const char *s, size_t start, size_t end, char *out)
{
	size_t i = start, n = 0;

	while (i < end) {
		char c = s[i];
		if (c == '\'' && i + 1 < end && s[i + 1] == '\'') {
			out[n++] = '\'';
			i += 2;
		} else if (c == ' ' || c == '\t') {
			size_t j = i;
			while (j < end && (s[j] == ' ' || s[j] == '\t'))
				j++;
			if (j == end || (s[j] != '\n' && s[j] != '\r')) {
				memcpy(out + n, s + i,
				       j - i); /* blanks before a break are dropped */
				n += j - i;
			}
			i = j;
		} else if (c == '\n' || c == '\r') {
			size_t breaks = 0;
			for (; i < end && strchr(" \t\r\n", s[i]); i++) {
				if (s[i] == '\r' && i + 1 < end && s[i + 1] == '\n')
					i++;
				if (s[i] == '\n' || s[i] == '\r')
					breaks++;
			}
			if (breaks == 1)
				out[n++] = ' ';
			for (; breaks > 1; breaks--)
				out[n++] = '\n';
		} else {
			out[n++] = c;
			i++;
		}
	}
	return n;
}

static int on_scalar(struct builder *b, struct fy_event *ev)
{
	struct fy_token *tok = ev->scalar.value;
	enum fy_scalar_style style = tok ? fy_token_scalar_style(tok) : FYSS_PLAIN;
	const struct fy_mark *sm = tok ? fy_token_start_mark(tok) : NULL;
	const struct fy_mark *em = tok ? fy_token_end_mark(tok) : NULL;
	size_t len = 0;
	const char *t = "";
	struct cnode *n;
	char *copy = NULL; /* set when the value is already in the arena */
	int r = node_new(b, CNODE_SCALAR, ev, &n);

	if (r < 0)
		return r;
	if (style == FYSS_SINGLE_QUOTED && sm && em && sm->input_pos > 0 &&
	    em->input_pos < b->len && sm->input_pos <= em->input_pos &&
	    b->text[sm->input_pos - 1] == '\'' && b->text[em->input_pos] == '\'') {
		copy = arena_alloc(b->p, em->input_pos - sm->input_pos + 1);
		if (!copy)
			return err_set(b->p->e, ENOMEM, "out of memory reading %s", b->p->file);
		len = unquote_single(b->text, sm->input_pos, em->input_pos, copy);
		copy[len] = '\0';
		t = copy;
	} else if (tok) {
		t = fy_token_get_text(tok, &len);
	}
	/* libfyaml marks a quoted scalar after its opening quote; point at the quote */
	if ((style == FYSS_SINGLE_QUOTED || style == FYSS_DOUBLE_QUOTED) && n->col > 1)
		n->col--;
	if (!t)
		t = "", len = 0;
	if (memchr(t, 0, len))
		return config__err(b->p, n, "a value holds a NUL character (\\0); remove it");
	for (size_t i = 0, k; i < len; i += k)
		if (!(k = utf8_len((const unsigned char *)t + i, len - i)))
			return config__err(b->p, n,
					   "a value is not valid UTF-8 after its escapes "
					   "are applied; write the text itself");
	if (!copy) {
		copy = arena_alloc(b->p, len + 1);
		if (!copy)
			return err_set(b->p->e, ENOMEM, "out of memory reading %s", b->p->file);
		memcpy(copy, t, len);
		copy[len] = '\0';
	}
	n->text = copy;
	n->len = len;
	n->plain = style == FYSS_PLAIN && !ev->scalar.tag;
	attach(b, n);
	return 0;
}

static int on_start(struct builder *b, struct fy_event *ev, enum cnode_kind kind)
{
	struct cnode *n;
	int r = node_new(b, kind, ev, &n);

	if (r < 0)
		return r;
	if (b->depth == CONFIG__DEPTH_MAX)
		return config__err(b->p, n, "nested too deeply (more than %d levels)",
				   CONFIG__DEPTH_MAX);
	n->flow = fy_event_get_node_style(ev) == FYNS_FLOW;
	attach(b, n);
	b->stack[b->depth++] = n;
	return 0;
}

static int on_event(struct builder *b, struct fy_event *ev)
{
	const struct fy_mark *m = fy_event_start_mark(ev);

	switch (ev->type) {
	case FYET_DOCUMENT_START:
		if (++b->docs > 1)
			return err_set_at(
			    b->p->e, CAIRN_EINPUT, b->p->file,
			    m && m->line >= 0 ? m->line + 1 : b->line,
			    m && m->column >= 0 ? m->column + 1 : b->col,
			    "a second YAML document ('---'); cairn.yml holds exactly one");
		return 0;
	case FYET_MAPPING_START:
		return on_start(b, ev, CNODE_MAP);
	case FYET_SEQUENCE_START:
		return on_start(b, ev, CNODE_SEQ);
	case FYET_MAPPING_END:
	case FYET_SEQUENCE_END:
		if (b->depth > 0)
			b->depth--;
		return 0;
	case FYET_SCALAR:
		return on_scalar(b, ev);
	case FYET_ALIAS: {
		struct cnode *n;
		int r = node_new(b, CNODE_SCALAR, ev, &n);
		if (r < 0)
			return r;
		if (n->col > 1) /* marked after the '*' */
			n->col--;
		return config__err(b->p, n,
				   "YAML aliases (*name) are not supported in cairn.yml; "
				   "write the value out");
	}
	default:
		return 0;
	}
}

int config__parse_yaml(struct cfg_parse *p, const char *text, size_t len, struct cnode **out_root)
{
	struct fy_diag_cfg dcfg;
	struct fy_parse_cfg pcfg;
	struct fy_diag *diag = NULL;
	struct fy_parser *fyp = NULL;
	struct fy_event *ev;
	struct builder b;
	int r = check_bytes(p, text, len);

	if (r < 0)
		return r;
	memset(&b, 0, sizeof(b));
	b.p = p;
	b.text = text;
	b.len = len;
	b.line = b.col = 1;

	fy_diag_cfg_default(&dcfg);
	dcfg.fp = NULL;
	dcfg.output_fn = diag_silent;
	dcfg.colorize = false;
	diag = fy_diag_create(&dcfg);
	if (!diag)
		return err_set(p->e, ENOMEM, "out of memory reading %s", p->file);
	fy_diag_set_collect_errors(diag, true);
	memset(&pcfg, 0, sizeof(pcfg));
	pcfg.flags = FYPCF_QUIET | FYPCF_DEFAULT_VERSION_1_2 | FYPCF_JSON_NONE;
	pcfg.diag = diag;
	fyp = fy_parser_create(&pcfg);
	if (!fyp || fy_parser_set_string(fyp, text, len) != 0) {
		r = err_set(p->e, ENOMEM, "out of memory reading %s", p->file);
		goto fail;
	}
	while ((ev = fy_parser_parse(fyp))) {
		const struct fy_mark *end = fy_event_end_mark(ev);
		r = on_event(&b, ev);
		if (end && end->line >= 0 && end->column >= 0) {
			b.line = end->line + 1;
			b.col = end->column + 1;
		}
		fy_parser_event_free(fyp, ev);
		if (r < 0)
			goto fail;
	}
	if (fy_parser_get_stream_error(fyp)) {
		r = syntax_error(&b, diag, text, len);
		goto fail;
	}
	if (!b.root || config__is_null(b.root)) {
		r = err_set_at(p->e, CAIRN_EINPUT, p->file, 1, 1,
			       "the file is empty; it needs at least app, run.command and listen "
			       "(run 'cairn init' to write a commented starter)");
		goto fail;
	}
	fy_parser_destroy(fyp);
	fy_diag_destroy(diag);
	*out_root = b.root;
	return 0;
fail:
	if (fyp)
		fy_parser_destroy(fyp);
	fy_diag_destroy(diag);
	return r;
}
