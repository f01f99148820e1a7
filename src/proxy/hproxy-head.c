/* hproxy head: parses one HTTP/1.1 request head with libhttp-parser and writes the head to send
 * upstream — X-Forwarded-* added, hop-by-hop headers (and those Connection names) dropped,
 * Connection replaced — plus the JSON answers the proxy makes itself. A head the upstream
 * could frame differently from the parser is refused (400), never forwarded: bare LF, obs-fold,
 * a header name that is not a token (`Transfer-Encoding : chunked`), two Host fields, and a
 * Connection that names a framing header. Pure functions of their input: no loop, no sockets,
 * no allocation besides the output buffer. */
#include "proxy/hproxy-internal.h"

#include <limits.h>
#include <string.h>
#include <strings.h>

struct hdr {
	struct slice name, value;
};

struct head_ctx {
	const char *base;
	struct hdr h[HP_HEADERS_MAX];
	size_t n;
	bool too_many, complete, in_value;
};

static int on_field(http_parser *p, const char *at, size_t n)
{
	struct head_ctx *c = p->data;
	if (c->in_value || c->n == 0 || c->h[c->n - 1].name.p + c->h[c->n - 1].name.n != at) {
		if (c->n == HP_HEADERS_MAX) {
			c->too_many = true;
			return 1;
		}
		c->h[c->n++] = (struct hdr){ { at, n }, { at + n, 0 } };
	} else {
		c->h[c->n - 1].name.n += n;
	}
	c->in_value = false;
	return 0;
}

static int on_value(http_parser *p, const char *at, size_t n)
{
	struct head_ctx *c = p->data;
	if (c->n == 0)
		return 1;
	struct slice *v = &c->h[c->n - 1].value;
	if (!c->in_value)
		*v = (struct slice){ at, n };
	else
		v->n = (size_t)(at + n - v->p);
	c->in_value = true;
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	struct head_ctx *c = p->data;
	c->complete = true;
	return 0;
}

static const http_parser_settings head_settings = {
	.on_header_field = on_field,
	.on_header_value = on_value,
	.on_headers_complete = on_headers_complete,
};

static bool name_is(struct slice s, const char *name)
{
	return s.n == strlen(name) && !strncasecmp(s.p, name, s.n);
}

/* Does a comma-separated header value hold the token tok (case-insensitive)? */
static bool has_token_n(struct slice v, struct slice tok)
{
	size_t tn = tok.n, i = 0;
	while (i < v.n) {
		while (i < v.n && (v.p[i] == ' ' || v.p[i] == '\t' || v.p[i] == ','))
			i++;
		size_t s = i;
		while (i < v.n && v.p[i] != ',')
			i++;
		size_t e = i;
		while (e > s && (v.p[e - 1] == ' ' || v.p[e - 1] == '\t'))
			e--;
		if (e - s == tn && !strncasecmp(v.p + s, tok.p, tn))
			return true;
	}
	return false;
}

static bool has_token(struct slice v, const char *tok)
{
	return has_token_n(v, (struct slice){ tok, strlen(tok) });
}

/* RFC 9110 5.6.2 tchar: what a header name is made of (the parser also lets SP through). */
static bool is_token(struct slice s)
{
	if (!s.n)
		return false;
	for (size_t i = 0; i < s.n; i++) {
		unsigned char c = (unsigned char)s.p[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c && strchr("!#$%&'*+-.^_`|~", c))))
			return false;
	}
	return true;
}

/* Is header name nm listed in a Connection value (RFC 9110 7.6.1: hop-by-hop by declaration)? */
static bool named_in_connection(const struct hdr *h, size_t n, struct slice nm)
{
	for (size_t i = 0; i < n; i++)
		if (name_is(h[i].name, "connection") && has_token_n(h[i].value, nm))
			return true;
	return false;
}

/* Headers meant for one hop only: never forwarded (Connection is replaced; Upgrade kept for an
 * upgrade; Transfer-Encoding kept because the body goes on as it came). */
static bool hop_by_hop(struct slice nm)
{
	return name_is(nm, "connection") || name_is(nm, "keep-alive") ||
	       name_is(nm, "proxy-connection") || name_is(nm, "te");
}

/* End of the head (just past its empty line) in p[0..n) from `from`, or 0. */
static size_t head_end(const char *p, size_t n, size_t from)
{
	for (size_t i = from; i < n; i++) {
		const char *q = memchr(p + i, '\n', n - i);
		if (!q)
			return 0;
		i = (size_t)(q - p);
		if (i + 1 < n && p[i + 1] == '\n')
			return i + 2;
		if (i + 2 < n && p[i + 1] == '\r' && p[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

int hproxy_parse_head(const char *p, size_t n, size_t max_header_bytes, const char *client_ip,
		      struct buf *out, struct hproxy_req_info *info)
{
	struct head_ctx ctx;
	http_parser hp;
	size_t skip = 0, end, rl_end, term;

	while (skip < n && (p[skip] == '\r' || p[skip] == '\n'))
		skip++; /* empty lines before a request line are ignored (RFC 9112 2.2) */
	if (skip == n)
		return skip > max_header_bytes ? -431 : 0;
	end = head_end(p, n, skip);
	if (!end)
		return n >= max_header_bytes ? -431 : 0;
	if (end > max_header_bytes)
		return -431;
	/* a CR must end a line (the parser would read a bare one as the end of the head: another
	 * end than the one found above); no other control byte belongs in a head (RFC 9110 5.5),
	 * and the parser lets some through at the start of a value. Lines end in CRLF: a bare LF
	 * and an obs-fold (a line that starts with SP or HTAB) are read differently by different
	 * servers, so both are refused (RFC 9112 2.2, 5.2) rather than passed on. */
	for (size_t i = skip; i < end; i++) {
		unsigned char ch = (unsigned char)p[i];
		if (ch >= 0x20 && ch != 0x7f)
			continue;
		if (ch == '\r' ? i + 1 == end || p[i + 1] != '\n' : ch != '\n' && ch != '\t')
			return -400;
		if (ch == '\n' && (i == skip || p[i - 1] != '\r'))
			return -400;
		if (ch == '\n' && i + 1 < end && (p[i + 1] == ' ' || p[i + 1] == '\t'))
			return -400;
	}
	ctx.base = p;
	ctx.n = 0;
	ctx.too_many = ctx.complete = ctx.in_value = false;
	http_parser_init(&hp, HTTP_REQUEST);
	hp.data = &ctx;
	size_t done = http_parser_execute(&hp, &head_settings, p + skip, end - skip);
	if (ctx.too_many)
		return -431;
	if (!ctx.complete || HTTP_PARSER_ERRNO(&hp) != HPE_OK || done != end - skip)
		return -400;
	if (hp.method == HTTP_CONNECT)
		return -400; /* a reverse proxy does not tunnel to arbitrary hosts */

	term = p[end - 2] == '\n' ? 1 : 2; /* the empty line: "\n" or "\r\n" */
	rl_end = ctx.n ? (size_t)(ctx.h[0].name.p - p) : end - term;

	bool upgrade = hp.upgrade != 0, expect = false, has_proto = false;
	struct slice host = { NULL, 0 };
	size_t n_xff = 0;
	bool drop[HP_HEADERS_MAX];
	for (size_t i = 0; i < ctx.n; i++) {
		struct slice nm = ctx.h[i].name;
		/* "Transfer-Encoding : chunked" is no Transfer-Encoding to the parser, but may be one
		 * to the upstream (RFC 9112 5.1: no whitespace before the colon) */
		if (!is_token(nm))
			return -400;
		drop[i] = hop_by_hop(nm) || (name_is(nm, "upgrade") && !upgrade) ||
			  (named_in_connection(ctx.h, ctx.n, nm) && !(upgrade && name_is(nm, "upgrade")));
		/* a framing header declared hop-by-hop: dropping it would change how the upstream
		 * reads the body, keeping it would ignore the client */
		if (drop[i] && (name_is(nm, "content-length") || name_is(nm, "transfer-encoding") ||
				name_is(nm, "host")))
			return -400;
		if (drop[i])
			continue;
		if (name_is(nm, "expect") && has_token(ctx.h[i].value, "100-continue"))
			expect = true;
		else if (name_is(nm, "host") && host.p)
			return -400; /* RFC 9112 3.2: more than one Host */
		else if (name_is(nm, "host"))
			host = slice_trim(ctx.h[i].value);
		else if (name_is(nm, "x-forwarded-proto"))
			has_proto = true;
		else if (name_is(nm, "x-forwarded-for"))
			n_xff++;
	}

	size_t len0 = out->len;
	buf_add(out, p + skip, rl_end - skip);
	bool had_fwd_host = false;
	for (size_t i = 0; i < ctx.n; i++) {
		struct slice nm = ctx.h[i].name;
		const char *s = nm.p;
		const char *e = i + 1 < ctx.n ? ctx.h[i + 1].name.p : p + end - term;
		if (drop[i])
			continue;
		if (name_is(nm, "x-forwarded-for") && client_ip)
			continue; /* merged below */
		if (name_is(nm, "x-forwarded-host"))
			had_fwd_host = true;
		buf_add(out, s, (size_t)(e - s));
	}
	if (client_ip) {
		buf_adds(out, "X-Forwarded-For: ");
		bool first = true;
		for (size_t i = 0; i < ctx.n && n_xff; i++) {
			if (drop[i] || !name_is(ctx.h[i].name, "x-forwarded-for"))
				continue;
			struct slice v = slice_trim(ctx.h[i].value);
			if (!v.n)
				continue;
			if (!first)
				buf_adds(out, ", ");
			buf_add(out, v.p, v.n);
			first = false;
		}
		if (!first)
			buf_adds(out, ", ");
		buf_adds(out, client_ip);
		buf_adds(out, "\r\n");
		if (!has_proto)
			buf_adds(out, "X-Forwarded-Proto: http\r\n");
		if (!had_fwd_host && host.n) {
			buf_adds(out, "X-Forwarded-Host: ");
			buf_add(out, host.p, host.n);
			buf_adds(out, "\r\n");
		}
	}
	buf_adds(out, upgrade ? "Connection: upgrade\r\n\r\n" : "Connection: keep-alive\r\n\r\n");
	if (out->err) {
		out->len = len0;
		if (out->data)
			out->data[len0] = '\0';
		return -431;
	}

	info->method = (int)hp.method;
	info->chunked = (hp.flags & F_CHUNKED) != 0;
	info->content_length =
		!info->chunked && hp.content_length != ULLONG_MAX ? (int64_t)hp.content_length : -1;
	info->keep_alive = http_should_keep_alive(&hp) != 0;
	info->upgrade = upgrade;
	info->expect_continue = expect;
	return (int)end;
}

static const char *reason(int status, const char **code)
{
	switch (status) {
	case 400: *code = "bad_request"; return "Bad Request";
	case 408: *code = "request_timeout"; return "Request Timeout";
	case 413: *code = "body_too_large"; return "Content Too Large";
	case 431: *code = "head_too_large"; return "Request Header Fields Too Large";
	case 502: *code = "bad_gateway"; return "Bad Gateway";
	case 503: *code = "unavailable"; return "Service Unavailable";
	case 504: *code = "gateway_timeout"; return "Gateway Timeout";
	default: *code = "error"; return "Error";
	}
}

void hproxy__answer(struct buf *out, int status, const char *message)
{
	const char *code, *why = reason(status, &code);
	char body[HP_ERR_MAX / 2];
	int bn = snprintf(body, sizeof body, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}\n",
			  code, message);
	if (bn < 0 || (size_t)bn >= sizeof body)
		bn = 0;
	buf_reset(out);
	buf_addf(out,
		 "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
		 "Connection: close\r\nCache-Control: no-store\r\n\r\n%.*s",
		 status, why, bn, bn, body);
}
