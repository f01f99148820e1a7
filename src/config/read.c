/* config read: typed readers over the YAML tree — strings, numbers, durations, percentages,
 * booleans, enums, argv lists and string maps — and the messages for everything that can be
 * wrong with a value: each error names the key path, quotes the value and says what to write. */
#include "config/config-internal.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LIST_MAX 1024 /* entries in one argv, exclude list, env or headers map */

int config__err(struct cfg_parse *p, const struct cnode *at, const char *fmt, ...)
{
	char msg[ERR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return err_set_at(p->e, CAIRN_EINPUT, p->file, at->line, at->col, "%s", msg);
}

const char *config__quote(const char *s, char *out)
{
	size_t o = 0, i = 0;

	out[o++] = '"';
	while (s[i] && i < CONFIG__QUOTE_MAX) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			o += (size_t)snprintf(out + o, 5, "\\x%02x", c);
		} else {
			out[o++] = (char)c;
		}
		i++;
	}
	if (s[i]) {
		/* do not end inside a UTF-8 sequence */
		while (o > 1 && ((unsigned char)out[o - 1] & 0xc0) == 0x80)
			o--;
		if (o > 1 && ((unsigned char)out[o - 1] & 0xc0) == 0xc0)
			o--;
		memcpy(out + o, "\xe2\x80\xa6", 3); /* … */
		o += 3;
	}
	out[o++] = '"';
	out[o] = '\0';
	return out;
}

static const char *describe(const struct cnode *n, char *q)
{
	if (n->kind == CNODE_MAP)
		return "a mapping";
	if (n->kind == CNODE_SEQ)
		return "a list";
	if (config__is_null(n))
		return "nothing";
	return config__quote(n->text, q);
}

int config__type_err(struct cfg_parse *p, const struct cnode *n, const char *path, const char *what)
{
	char q[CONFIG__QUOTE_BUF];
	return config__err(p, n, "%s must be %s; found %s", path, what, describe(n, q));
}

const char *config__nearest(const char *s, const char *const names[])
{
	return str_nearest(s, names);
}

void config__path(char *out, const char *parent, const char *key)
{
	if (parent && parent[0])
		snprintf(out, CONFIG__PATH_MAX, "%s.%s", parent, key);
	else
		snprintf(out, CONFIG__PATH_MAX, "%s", key);
}

void config__path_index(char *out, const char *parent, size_t i)
{
	snprintf(out, CONFIG__PATH_MAX, "%s[%zu]", parent, i);
}

bool config__is_null(const struct cnode *n)
{
	static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};

	if (n->kind != CNODE_SCALAR || !n->plain)
		return false;
	for (size_t i = 0; i < ARRAY_SIZE(nulls); i++)
		if (!strcmp(n->text, nulls[i]))
			return true;
	return false;
}

static int unknown_key(struct cfg_parse *p, const struct cnode *key, const char *path,
		       const char *const names[])
{
	char q[CONFIG__QUOTE_BUF], known[ERR_MSG_MAX / 2];
	const char *near = config__nearest(key->text, names);
	size_t o = 0;

	if (near)
		return config__err(p, key, "unknown key %s%s%s; did you mean \"%s\"?",
				   config__quote(key->text, q), path[0] ? " in " : "", path, near);
	known[0] = '\0';
	for (size_t i = 0; names[i] && o < sizeof(known); i++)
		o +=
		    (size_t)snprintf(known + o, sizeof(known) - o, "%s%s", i ? ", " : "", names[i]);
	return config__err(p, key, "unknown key %s%s%s; the keys allowed here are: %s",
			   config__quote(key->text, q), path[0] ? " in " : "", path, known);
}

static int check_key_node(struct cfg_parse *p, const struct cnode *key, const char *path)
{
	if (key->kind != CNODE_SCALAR || config__is_null(key))
		return config__err(p, key, "%s%skeys must be plain words (like command:), not %s",
				   path, path[0] ? ": " : "",
				   key->kind == CNODE_SCALAR ? "empty"
				   : key->kind == CNODE_MAP  ? "a mapping"
							     : "a list");
	return 0;
}

int config__fields(struct cfg_parse *p, const struct cnode *map, const char *path,
		   const char *const names[], const struct cnode *vals[])
{
	const struct cnode *keys[32] = {NULL}; /* the key node of each vals[i] */
	size_t count = 0;

	while (names[count])
		vals[count++] = NULL;
	if (!map || config__is_null(map))
		return 0;
	if (map->kind != CNODE_MAP)
		return config__type_err(p, map, path, "a mapping of keys (key: value lines)");
	for (const struct cnode *k = map->first; k && k->next; k = k->next->next) {
		size_t i;
		int r = check_key_node(p, k, path);
		if (r < 0)
			return r;
		for (i = 0; i < count && strcmp(k->text, names[i]); i++)
			;
		if (i == count)
			return unknown_key(p, k, path, names);
		if (vals[i]) {
			char q[CONFIG__QUOTE_BUF];
			return config__err(p, k, "duplicate key %s%s%s (first at line %d)",
					   config__quote(k->text, q), path[0] ? " in " : "", path,
					   keys[i] ? keys[i]->line : vals[i]->line);
		}
		vals[i] = k->next;
		if (i < ARRAY_SIZE(keys))
			keys[i] = k;
	}
	return 0;
}

int config__missing(struct cfg_parse *p, const struct cnode *at, const char *path, const char *key,
		    const char *example)
{
	return config__err(p, at, "missing required key \"%s\"%s%s%s%s", key, path[0] ? " in " : "",
			   path, example ? "; e.g. " : "", example ? example : "");
}

/* ---- scalars ------------------------------------------------------------------------------- */

static int want_scalar(struct cfg_parse *p, const struct cnode *n, const char *path,
		       const char *what)
{
	if (n->kind != CNODE_SCALAR)
		return config__type_err(p, n, path, what);
	if (config__is_null(n))
		return config__err(p, n, "%s has no value; write %s, or remove the key", path,
				   what);
	return 0;
}

int config__str(struct cfg_parse *p, const struct cnode *n, const char *path, char **out)
{
	int r = want_scalar(p, n, path, "a string");
	char *s;

	if (r < 0)
		return r;
	s = strdup(n->text);
	if (!s)
		return err_set(p->e, ENOMEM, "out of memory");
	*out = s;
	return 0;
}

int config__set_str(struct cfg_parse *p, char **dst, const char *s)
{
	char *c = strdup(s);
	if (!c)
		return err_set(p->e, ENOMEM, "out of memory");
	free(*dst);
	*dst = c;
	return 0;
}

bool config__is_http_path(const char *s)
{
	if (s[0] != '/')
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || *s == 0x7f)
			return false;
	return true;
}

bool config__is_uint(const char *s)
{
	size_t i;
	for (i = 0; s[i]; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return i > 0;
}

bool config__is_decimal(const char *s)
{
	size_t digits = 0, dots = 0;
	for (; *s; s++) {
		if (*s == '.')
			dots++;
		else if (*s >= '0' && *s <= '9')
			digits++;
		else
			return false;
	}
	return digits > 0 && dots <= 1;
}

int config__int(struct cfg_parse *p, const struct cnode *n, const char *path, long min, long max,
		int *out)
{
	char q[CONFIG__QUOTE_BUF];
	int r = want_scalar(p, n, path, "a whole number");
	long v;

	if (r < 0)
		return r;
	if (!config__is_uint(n->text + (n->text[0] == '-')) || n->len > 18)
		return config__err(p, n, "%s: %s is not a whole number", path,
				   config__quote(n->text, q));
	v = strtol(n->text, NULL, 10);
	if (v < min || v > max) {
		if (max >= INT_MAX)
			return config__err(p, n, "%s: %ld is too small; it must be at least %ld",
					   path, v, min);
		return config__err(p, n, "%s: %ld is out of range; it must be between %ld and %ld",
				   path, v, min, max);
	}
	*out = (int)v;
	return 0;
}

int config__duration(struct cfg_parse *p, const struct cnode *n, const char *path, int64_t *out)
{
	char q[CONFIG__QUOTE_BUF];
	int r = want_scalar(p, n, path, "a duration, e.g. 10s or 500ms");
	int64_t ms;

	if (r < 0)
		return r;
	config__quote(n->text, q);
	if (config__is_decimal(n->text) && strcmp(n->text, "0"))
		return config__err(
		    p, n, "%s: %s is not a duration; write it with a unit, e.g. %ss or 500ms", path,
		    q, n->len < 12 ? n->text : "10");
	if (strspn(n->text, "0123456789.msdh") != n->len)
		r = -EINVAL;
	else
		r = time_parse_duration_ms(n->text, &ms);
	if (r == -ERANGE)
		return config__err(p, n, "%s: %s is too long a duration", path, q);
	if (r < 0)
		return config__err(p, n,
				   "%s: %s is not a duration; write a number with a unit "
				   "(ms, s, m, h, d), e.g. 10s, 500ms or 1m30s",
				   path, q);
	*out = ms;
	return 0;
}

int config_parse_percent(const char *s, double *out)
{
	char num[32];
	size_t n = strlen(s);
	bool pct = n > 0 && s[n - 1] == '%';
	double v;

	if (pct)
		n--;
	if (n == 0 || n >= sizeof(num))
		return -EINVAL;
	memcpy(num, s, n);
	num[n] = '\0';
	if (!config__is_decimal(num))
		return -EINVAL;
	v = strtod(num, NULL);
	if (pct)
		v /= 100.0;
	if (!isfinite(v) || v < 0 || v > 1)
		return -ERANGE;
	*out = v;
	return 0;
}

int config__percent(struct cfg_parse *p, const struct cnode *n, const char *path, double *out)
{
	char q[CONFIG__QUOTE_BUF];
	int r = want_scalar(p, n, path, "a percentage, e.g. 1% or 0.5%");
	double v;

	if (r < 0)
		return r;
	r = config_parse_percent(n->text, &v);
	if (r == -ERANGE)
		return config__err(
		    p, n, "%s: %s is out of range; it must be between 0%% and 100%%%s", path,
		    config__quote(n->text, q),
		    strchr(n->text, '%') ? "" : " (a bare number is a fraction: 0.01 = 1%)");
	if (r < 0)
		return config__err(p, n, "%s: %s is not a percentage; write e.g. 1%% or 0.5%%",
				   path, config__quote(n->text, q));
	*out = v;
	return 0;
}

int config__number(struct cfg_parse *p, const struct cnode *n, const char *path, double *out)
{
	char q[CONFIG__QUOTE_BUF];
	int r = want_scalar(p, n, path, "a number, e.g. 2.0");
	double v;

	if (r < 0)
		return r;
	if (!config__is_decimal(n->text) || n->len > 24)
		return config__err(p, n, "%s: %s is not a number; write e.g. 2 or 1.5", path,
				   config__quote(n->text, q));
	v = strtod(n->text, NULL);
	if (!isfinite(v))
		return config__err(p, n, "%s: %s is too large", path, config__quote(n->text, q));
	*out = v;
	return 0;
}

int config__bool(struct cfg_parse *p, const struct cnode *n, const char *path, bool *out)
{
	static const char *const yes[] = {"true", "True", "TRUE"}, *const no[] = {"false", "False",
										  "FALSE"};
	char q[CONFIG__QUOTE_BUF];
	int r = want_scalar(p, n, path, "true or false");

	if (r < 0)
		return r;
	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (!strcmp(n->text, yes[i])) {
			*out = true;
			return 0;
		}
		if (!strcmp(n->text, no[i])) {
			*out = false;
			return 0;
		}
	}
	return config__err(p, n, "%s: %s is not a boolean; write true or false", path,
			   config__quote(n->text, q));
}

int config__enum(struct cfg_parse *p, const struct cnode *n, const char *path,
		 const char *const names[], int *out)
{
	char q[CONFIG__QUOTE_BUF], list[ERR_MSG_MAX / 2];
	const char *near;
	size_t o = 0;
	int r = want_scalar(p, n, path, "one of the listed words");

	if (r < 0)
		return r;
	for (int i = 0; names[i]; i++) {
		if (!strcmp(n->text, names[i])) {
			*out = i;
			return 0;
		}
	}
	list[0] = '\0';
	for (size_t i = 0; names[i] && o < sizeof(list); i++)
		o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s", i ? ", " : "", names[i]);
	near = config__nearest(n->text, names);
	return config__err(p, n, "%s: %s is not one of %s%s%s%s", path, config__quote(n->text, q),
			   list, near ? "; did you mean \"" : "", near ? near : "",
			   near ? "\"?" : "");
}

/* ---- lists and maps ------------------------------------------------------------------------ */

/* Allocates an argv-shaped strv for n strings (NULL-terminated). */
static int strv_alloc(struct cfg_parse *p, size_t n, struct strv *out)
{
	out->v = calloc(n + 1, sizeof(*out->v));
	if (!out->v)
		return err_set(p->e, ENOMEM, "out of memory");
	out->n = 0;
	out->cap = n + 1;
	return 0;
}

static int strings(struct cfg_parse *p, const struct cnode *n, const char *path, bool nonempty,
		   const char *what, struct strv *out)
{
	char item[CONFIG__PATH_MAX];
	struct strv v;
	size_t i = 0;
	int r;

	if (n->kind != CNODE_SEQ) {
		if (n->kind == CNODE_SCALAR && strchr(n->text, ' '))
			return config__err(
			    p, n,
			    "%s must be %s; found a single string. Commands never run "
			    "through a shell: write each word as an item, e.g. %s",
			    path, what, "[\"python3\", \"app.py\"]");
		return config__type_err(p, n, path, what);
	}
	if (n->n > LIST_MAX)
		return config__err(p, n, "%s has %zu items; at most %d are allowed", path, n->n,
				   LIST_MAX);
	r = strv_alloc(p, n->n, &v);
	if (r < 0)
		return r;
	for (const struct cnode *c = n->first; c; c = c->next, i++) {
		config__path_index(item, path, i);
		r = want_scalar(p, c, item, "a string");
		if (r == 0 && nonempty && c->len == 0)
			r = config__err(p, c, "%s is empty; remove it or write a value", item);
		if (r == 0 && !(v.v[v.n] = strdup(c->text)))
			r = err_set(p->e, ENOMEM, "out of memory");
		if (r < 0) {
			strv_done(&v);
			return r;
		}
		v.n++;
	}
	*out = v;
	return 0;
}

int config__argv(struct cfg_parse *p, const struct cnode *n, const char *path, bool required,
		 const char *example, struct strv *out)
{
	char what[CONFIG__PATH_MAX + 64];
	struct strv v;
	int r;

	snprintf(what, sizeof(what), "a list of strings (argv), e.g. %s", example);
	if (config__is_null(n)) {
		if (required)
			return config__err(p, n, "%s has no value; write %s", path, what);
		strv_init(out);
		return 0;
	}
	r = strings(p, n, path, false, what, &v);
	if (r < 0)
		return r;
	if (required && v.n == 0) {
		strv_done(&v);
		return config__err(p, n, "%s is empty; it needs the program to run, e.g. %s", path,
				   example);
	}
	if (v.n > 0 && v.v[0][0] == '\0') {
		strv_done(&v);
		return config__err(p, n->first, "%s[0] is empty; it must name the program to run",
				   path);
	}
	*out = v;
	return 0;
}

int config__list(struct cfg_parse *p, const struct cnode *n, const char *path, struct strv *out)
{
	if (config__is_null(n)) {
		strv_init(out);
		return 0;
	}
	return strings(p, n, path, true, "a list of strings, e.g. [\".git\", \"*.log\"]", out);
}

void config__kv_free(struct config_kv *kv, size_t n)
{
	for (size_t i = 0; kv && i < n; i++) {
		free(kv[i].key);
		free(kv[i].value);
	}
	free(kv);
}

struct pair {
	const struct cnode *k, *v;
};

static int cmp_pair(const void *a, const void *b, void *arg)
{
	int (*cmp)(const char *, const char *) = *(int (**)(const char *, const char *))arg;
	const struct pair *x = a, *y = b;
	int c = cmp(x->k->text, y->k->text);

	if (c)
		return c;
	if (x->k->line != y->k->line)
		return x->k->line < y->k->line ? -1 : 1;
	return x->k->col < y->k->col ? -1 : x->k->col > y->k->col;
}

static int check_pairs(struct cfg_parse *p, const struct cnode *n, const char *path,
		       config__key_check check_key, bool single_line, struct pair *pairs)
{
	char item[CONFIG__PATH_MAX], q[CONFIG__QUOTE_BUF];
	size_t i = 0;
	int r;

	for (const struct cnode *k = n->first; k && k->next; k = k->next->next, i++) {
		const char *why;
		r = check_key_node(p, k, path);
		if (r < 0)
			return r;
		why = check_key(k->text);
		if (why)
			return config__err(p, k, "%s: %s %s", path, config__quote(k->text, q), why);
		config__path(item, path, k->text);
		r = want_scalar(p, k->next, item, "a string (quote it to keep it as written)");
		if (r < 0)
			return r;
		if (single_line && strpbrk(k->next->text, "\r\n"))
			return config__err(p, k->next, "%s must be one line (no line breaks)",
					   item);
		pairs[i] = (struct pair){k, k->next};
	}
	return 0;
}

int config__strmap(struct cfg_parse *p, const struct cnode *n, const char *path,
		   config__key_check check_key, bool single_line,
		   int (*cmp)(const char *, const char *), struct config_kv **out, size_t *out_n)
{
	struct pair *pairs = NULL;
	struct config_kv *kv = NULL;
	const struct pair *dup = NULL;
	size_t count = n->n / 2, i;
	int r;

	if (config__is_null(n)) {
		*out = NULL;
		*out_n = 0;
		return 0;
	}
	if (n->kind != CNODE_MAP)
		return config__type_err(p, n, path, "a mapping of NAME: value lines");
	if (count > LIST_MAX)
		return config__err(p, n, "%s has %zu entries; at most %d are allowed", path, count,
				   LIST_MAX);
	pairs = calloc(count ? count : 1, sizeof(*pairs));
	kv = calloc(count ? count : 1, sizeof(*kv));
	if (!pairs || !kv) {
		r = err_set(p->e, ENOMEM, "out of memory");
		goto fail;
	}
	r = check_pairs(p, n, path, check_key, single_line, pairs);
	if (r < 0)
		goto fail;
	qsort_r(pairs, count, sizeof(*pairs), cmp_pair, &cmp);
	/* report the duplicate that comes first in the file */
	for (i = 1; i < count; i++) {
		const struct cnode *k = pairs[i].k;
		if (cmp(pairs[i - 1].k->text, k->text))
			continue;
		if (!dup || k->line < dup->k->line ||
		    (k->line == dup->k->line && k->col < dup->k->col))
			dup = &pairs[i];
	}
	if (dup) {
		char q[CONFIG__QUOTE_BUF];
		const struct pair *first = dup - 1;
		while (first > pairs && !cmp((first - 1)->k->text, dup->k->text))
			first--;
		r = config__err(p, dup->k, "duplicate key %s in %s (first at line %d)",
				config__quote(dup->k->text, q), path, first->k->line);
		goto fail;
	}
	for (i = 0; i < count; i++) {
		kv[i].key = strdup(pairs[i].k->text);
		kv[i].value = strdup(pairs[i].v->text);
		if (!kv[i].key || !kv[i].value) {
			r = err_set(p->e, ENOMEM, "out of memory");
			config__kv_free(kv, i + 1);
			kv = NULL;
			goto fail;
		}
	}
	free(pairs);
	*out = count ? kv : NULL;
	if (!count)
		free(kv);
	*out_n = count;
	return 0;
fail:
	free(pairs);
	free(kv);
	return r;
}
