/* fault json: decoding the Toxiproxy API's request bodies as Go's encoding/json would, and
 * writing strings and float32 values the way Go does. No engine calls: the fuzz target runs
 * these on arbitrary bytes. */
#include "proxy/fault-internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int fault__json_load(const char *body, size_t n, json_t **out, struct err *e)
{
	json_error_t je;
	size_t i = 0;

	while (i < n && (body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == '\r'))
		i++;
	if (i == n)
		return err_set(e, CAIRN_EINPUT, "bad request body: EOF");
	json_t *j = json_loadb(body + i, n - i, JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK |
						   JSON_ALLOW_NUL, &je);
	if (!j)
		return err_set(e, CAIRN_EINPUT, "bad request body: %s", je.text);
	*out = j;
	return 0;
}

static const char *kind_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "object";
	case JSON_ARRAY:
		return "array";
	case JSON_STRING:
		return "string";
	case JSON_INTEGER:
	case JSON_REAL:
		return "number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "bool";
	default:
		return "null";
	}
}

/* Go matches keys exactly first, then case-insensitively; null counts as absent. */
static json_t *jget(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	if (!v) {
		const char *k;
		json_t *x;
		json_object_foreach(o, k, x) {
			if (!strcasecmp(k, key)) {
				v = x;
				break;
			}
		}
	}
	return v && !json_is_null(v) ? v : NULL;
}

static int type_err(struct err *e, const json_t *v, const char *field, const char *gotype)
{
	return err_set(e, CAIRN_EINPUT,
		       "bad request body: json: cannot unmarshal %s into Go struct field %s of type %s",
		       kind_name(v), field, gotype);
}

static int get_str(json_t *o, const char *key, const char *field, const char **out, struct err *e)
{
	json_t *v = jget(o, key);
	*out = NULL;
	if (!v)
		return 0;
	if (!json_is_string(v))
		return type_err(e, v, field, "string");
	*out = json_string_value(v);
	return 0;
}

int fault__proxy_in(json_t *j, struct fault_proxy_in *out, struct err *e)
{
	struct fault_proxy_in in = { .enabled = -1 };
	if (!json_is_object(j))
		return err_set(e, CAIRN_EINPUT,
			       "bad request body: json: cannot unmarshal %s into Go value of type proxy.Proxy",
			       kind_name(j));
	int r = get_str(j, "name", "Proxy.name", &in.name, e);
	if (r == 0)
		r = get_str(j, "listen", "Proxy.listen", &in.listen, e);
	if (r == 0)
		r = get_str(j, "upstream", "Proxy.upstream", &in.upstream, e);
	if (r < 0)
		return r;
	json_t *v = jget(j, "enabled");
	if (v) {
		if (!json_is_boolean(v))
			return type_err(e, v, "Proxy.enabled", "bool");
		in.enabled = json_is_true(v);
	}
	*out = in;
	return 0;
}

int fault__toxic_in(json_t *j, struct fault_toxic_in *out, struct err *e)
{
	struct fault_toxic_in in = { 0 };
	if (!json_is_object(j))
		return err_set(e, CAIRN_EINPUT,
			       "bad request body: json: cannot unmarshal %s into Go value of type toxics.ToxicWrapper",
			       kind_name(j));
	int r = get_str(j, "type", "ToxicWrapper.type", &in.type, e);
	if (r == 0)
		r = get_str(j, "name", "ToxicWrapper.name", &in.name, e);
	if (r == 0)
		r = get_str(j, "stream", "ToxicWrapper.stream", &in.stream, e);
	if (r < 0)
		return r;
	json_t *v = jget(j, "toxicity");
	if (v) {
		if (!json_is_number(v))
			return type_err(e, v, "ToxicWrapper.toxicity", "float32");
		double d = json_number_value(v);
		if (!isfinite(d) || fabs(d) > 3.4028234663852886e38)
			return err_set(e, CAIRN_EINPUT,
				       "bad request body: json: cannot unmarshal number into Go struct field ToxicWrapper.toxicity of type float32");
		in.has_toxicity = true;
		in.toxicity = (float)d;
	}
	v = jget(j, "attributes");
	if (v && !json_is_object(v))
		return err_set(e, CAIRN_EINPUT,
			       "bad request body: json: cannot unmarshal %s into Go struct field .attributes of type toxics.Toxic",
			       kind_name(v));
	in.attributes = v;
	*out = in;
	return 0;
}

/* "latency, jitter" (or "none") for messages. */
static void attr_list(enum proxy_toxic_type t, char *out, size_t n)
{
	const char *const *names = proxy_toxic_attr_names(t);
	size_t o = 0;
	out[0] = 0;
	for (size_t i = 0; names[i] && o < n; i++)
		o += (size_t)snprintf(out + o, n - o, "%s%s", i ? ", " : "", names[i]);
	if (!names[0])
		snprintf(out, n, "none");
}

/* Attributes in cairn's words: every key must be an attribute of the type (Toxiproxy ignores
 * the others, so a typo silently does nothing), every value a whole number in the attribute's
 * range (Toxiproxy takes any int64, negative ones included, and overflows on large ones). */
int fault__attrs_in(json_t *attrs, enum proxy_toxic_type t, int64_t a[3], struct err *e)
{
	const char *const *names = proxy_toxic_attr_names(t), *tn = proxy_toxic_type_name(t), *k;
	int64_t tmp[3] = { a[0], a[1], a[2] };
	char list[128];
	json_t *v;
	if (!attrs)
		return 0;
	attr_list(t, list, sizeof list);
	json_object_foreach(attrs, k, v) {
		size_t i;
		for (i = 0; names[i] && strcasecmp(k, names[i]); i++)
			;
		if (!names[i]) {
			const char *near = names[0] ? str_nearest(k, names) : NULL;
			if (!names[0])
				return err_set(e, CAIRN_EINPUT,
					       "bad request body: a %s toxic has no attributes; remove \"%.64s\"",
					       tn, k);
			return err_set(e, CAIRN_EINPUT,
				       "bad request body: a %s toxic has no attribute \"%.64s\"%s%s%s (its attributes: %s)",
				       tn, k, near ? "; did you mean \"" : "", near ? near : "",
				       near ? "\"?" : "", list);
		}
		if (json_is_null(v))
			continue; /* null is absent, as everywhere in the API */
		const char *unit = proxy_toxic_attr_unit(t, i);
		int64_t max = proxy_toxic_attr_max(t, i);
		if (!json_is_integer(v)) {
			char got[96];
			if (json_is_string(v))
				snprintf(got, sizeof got, "the text \"%.64s\"", json_string_value(v));
			else if (json_is_real(v))
				snprintf(got, sizeof got, "%g", json_real_value(v));
			else
				snprintf(got, sizeof got, "a%s %s", json_is_object(v) || json_is_array(v) ? "n" : "",
					 kind_name(v));
			return err_set(e, CAIRN_EINPUT,
				       "bad request body: attribute %s of a %s toxic must be a whole number of %s from 0 to %lld, not %s",
				       names[i], tn, unit, (long long)max, got);
		}
		json_int_t x = json_integer_value(v);
		if (x < 0 || x > max)
			return err_set(e, CAIRN_EINPUT,
				       "bad request body: attribute %s of a %s toxic is %lld; it must be from 0 to %lld %s",
				       names[i], tn, (long long)x, (long long)max, unit);
		tmp[i] = x;
	}
	memcpy(a, tmp, sizeof tmp);
	return 0;
}

int fault__stream_parse(const char *s, enum proxy_dir *out)
{
	if (!strcasecmp(s, "upstream"))
		*out = PROXY_UPSTREAM;
	else if (!strcasecmp(s, "downstream"))
		*out = PROXY_DOWNSTREAM;
	else
		return -1;
	return 0;
}

/* Length of a valid UTF-8 sequence at s, or 0. */
static size_t utf8_len(const unsigned char *s, size_t left)
{
	size_t n = s[0] < 0x80 ? 1 : (s[0] >> 5) == 6 ? 2 : (s[0] >> 4) == 14 ? 3
						  : (s[0] >> 3) == 30 ? 4 : 0;
	if (n == 0 || n > left)
		return 0;
	for (size_t i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	if ((n == 2 && s[0] < 0xc2) || (n == 3 && s[0] == 0xe0 && s[1] < 0xa0) ||
	    (n == 3 && s[0] == 0xed && s[1] >= 0xa0) || (n == 4 && s[0] > 0xf4) ||
	    (n == 4 && s[0] == 0xf0 && s[1] < 0x90) || (n == 4 && s[0] == 0xf4 && s[1] >= 0x90))
		return 0;
	return n;
}

void fault__json_str(struct buf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t left = strlen(s);
	buf_addc(b, '"');
	while (left) {
		unsigned char c = *p;
		if (c == '"' || c == '\\') {
			buf_addc(b, '\\');
			buf_addc(b, (char)c);
		} else if (c == '\n') {
			buf_adds(b, "\\n");
		} else if (c == '\r') {
			buf_adds(b, "\\r");
		} else if (c == '\t') {
			buf_adds(b, "\\t");
		} else if (c < 0x20 || c == '<' || c == '>' || c == '&') {
			buf_addf(b, "\\u00%02x", c);
		} else if (c < 0x80) {
			buf_addc(b, (char)c);
		} else {
			size_t k = utf8_len(p, left);
			if (!k) {
				buf_adds(b, "\\ufffd");
				p++;
				left--;
				continue;
			}
			if (k == 3 && p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9))
				buf_addf(b, "\\u202%c", p[2] == 0xa8 ? '8' : '9');
			else
				buf_add(b, p, k);
			p += k;
			left -= k;
			continue;
		}
		p++;
		left--;
	}
	buf_addc(b, '"');
}

void fault__json_float32(struct buf *b, float f)
{
	char tmp[64];
	if (!isfinite(f)) {
		buf_adds(b, "0");
		return;
	}
	/* the shortest text that reads back as the same float32, as strconv does */
	for (int prec = 1; prec <= 9; prec++) {
		snprintf(tmp, sizeof tmp, "%.*g", prec, (double)f);
		if (strtof(tmp, NULL) == f)
			break;
	}
	double a = fabs((double)f);
	if (strchr(tmp, 'e') && a >= 1e-6 && a < 1e21) /* Go uses 'f' in this range */
		snprintf(tmp, sizeof tmp, "%.*f", a < 1 ? 9 : 0, (double)f);
	buf_adds(b, tmp);
}

void fault__put_toxic(struct buf *b, const struct ftoxic *t)
{
	const char *const *names = proxy_toxic_attr_names(t->t.type);
	buf_adds(b, "{\"attributes\":{");
	for (size_t i = 0; names[i]; i++)
		buf_addf(b, "%s\"%s\":%lld", i ? "," : "", names[i], (long long)t->t.a[i]);
	buf_adds(b, "},\"name\":");
	fault__json_str(b, t->t.name);
	buf_addf(b, ",\"type\":\"%s\",\"stream\":", proxy_toxic_type_name(t->t.type));
	fault__json_str(b, t->stream);
	buf_adds(b, ",\"toxicity\":");
	fault__json_float32(b, t->t.toxicity);
	buf_addc(b, '}');
}

void fault__put_toxics(struct buf *b, const struct fproxy *p)
{
	bool first = true;
	buf_addc(b, '[');
	for (int d = 0; d < 2; d++) /* the upstream chain first, then downstream */
		for (size_t i = 0; i < p->n_tox[d]; i++) {
			if (!first)
				buf_addc(b, ',');
			first = false;
			fault__put_toxic(b, &p->tox[d][i]);
		}
	buf_addc(b, ']');
}

void fault__put_proxy(struct buf *b, const struct fproxy *p)
{
	buf_adds(b, "{\"name\":");
	fault__json_str(b, p->name);
	buf_adds(b, ",\"listen\":");
	fault__json_str(b, p->listen);
	buf_adds(b, ",\"upstream\":");
	fault__json_str(b, p->upstream);
	buf_addf(b, ",\"enabled\":%s,\"toxics\":", p->enabled ? "true" : "false");
	fault__put_toxics(b, p);
	buf_addc(b, '}');
}

int fault__parse_any(const char *body, size_t n, struct err *e)
{
	json_t *j = NULL;
	int r = fault__json_load(body, n, &j, e);
	if (r < 0)
		return r;
	struct fault_proxy_in p;
	struct fault_toxic_in t;
	int rp = fault__proxy_in(j, &p, e);
	int rt = fault__toxic_in(j, &t, e);
	if (rt == 0 && t.attributes)
		for (int k = 0; k < TOXIC__COUNT; k++) {
			int64_t a[3] = { 0, 0, 0 };
			fault__attrs_in(t.attributes, (enum proxy_toxic_type)k, a, e);
		}
	if (rt == 0 && t.stream) {
		enum proxy_dir d;
		fault__stream_parse(t.stream, &d);
	}
	if (json_is_array(j)) {
		size_t i;
		json_t *v;
		json_array_foreach(j, i, v)
			fault__proxy_in(v, &p, e);
	}
	struct buf b;
	buf_init(&b, 1 << 20);
	if (rp == 0 && p.name)
		fault__json_str(&b, p.name);
	if (rt == 0 && t.has_toxicity)
		fault__json_float32(&b, t.toxicity);
	buf_done(&b);
	json_decref(j);
	return rp < 0 && rt < 0 ? rp : 0;
}
