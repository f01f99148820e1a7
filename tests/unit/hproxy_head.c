/* Unit tests for hproxy_parse_head (proxy/hproxy-head.c): complete and partial heads, body bytes
 * after the head, X-Forwarded-* and Connection rewriting, Upgrade, Expect, Content-Length and
 * chunked, and the refusals (400, 431). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "proxy/proxy.h"

#include <http_parser.h>
#include <stdlib.h>
#include <string.h>

static int parse(const char *s, size_t max, const char *ip, struct buf *out,
		 struct hproxy_req_info *info)
{
	buf_reset(out);
	return hproxy_parse_head(s, strlen(s), max, ip, out, info);
}

static void test_simple_get(void **st)
{
	(void)st;
	struct buf b;
	struct hproxy_req_info in;
	const char *req = "GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";
	buf_init(&b, 1 << 16);
	assert_int_equal(parse(req, 65536, "10.0.0.1", &b, &in), (int)strlen(req));
	assert_string_equal(buf_str(&b),
			    "GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n"
			    "X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: http\r\n"
			    "X-Forwarded-Host: example.com\r\nConnection: keep-alive\r\n\r\n");
	assert_int_equal(in.method, HTTP_GET);
	assert_int_equal(in.content_length, -1);
	assert_false(in.chunked);
	assert_true(in.keep_alive);
	assert_false(in.upgrade);
	assert_false(in.expect_continue);
	buf_done(&b);
}

static void test_partial_and_body_after(void **st)
{
	(void)st;
	struct buf b;
	struct hproxy_req_info in;
	const char *head = "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n";
	char full[256];
	buf_init(&b, 1 << 16);
	for (size_t i = 0; i < strlen(head); i++) /* every prefix: more bytes needed */
		assert_int_equal(hproxy_parse_head(head, i, 65536, "1.2.3.4", &b, &in), 0);
	assert_int_equal(b.len, 0);
	snprintf(full, sizeof full, "%shelloGET / HTTP/1.1\r\n\r\n", head);
	assert_int_equal(parse(full, 65536, "1.2.3.4", &b, &in), (int)strlen(head));
	assert_int_equal(in.method, HTTP_POST);
	assert_int_equal(in.content_length, 5);
	buf_done(&b);
}

static void test_xff_append_and_hop_by_hop(void **st)
{
	(void)st;
	struct buf b;
	struct hproxy_req_info in;
	const char *req = "GET / HTTP/1.1\r\nHost: h:8080\r\nX-Forwarded-For: 1.1.1.1\r\n"
			  "Connection: close\r\nKeep-Alive: timeout=5\r\nProxy-Connection: x\r\n"
			  "X-Forwarded-Proto: https\r\nX-Forwarded-Host: orig\r\n\r\n";
	buf_init(&b, 1 << 16);
	assert_int_equal(parse(req, 65536, "2.2.2.2", &b, &in), (int)strlen(req));
	assert_string_equal(buf_str(&b), "GET / HTTP/1.1\r\nHost: h:8080\r\n"
					 "X-Forwarded-Proto: https\r\nX-Forwarded-Host: orig\r\n"
					 "X-Forwarded-For: 1.1.1.1, 2.2.2.2\r\n"
					 "Connection: keep-alive\r\n\r\n");
	assert_false(in.keep_alive); /* the client asked to close */
	buf_done(&b);
}

static void test_no_forwarded(void **st)
{
	(void)st;
	struct buf b;
	struct hproxy_req_info in;
	const char *req = "GET / HTTP/1.0\r\nX-Forwarded-For: 9.9.9.9\r\n\r\n";
	buf_init(&b, 1 << 16);
	assert_int_equal(parse(req, 65536, NULL, &b, &in), (int)strlen(req));
	assert_string_equal(buf_str(&b), "GET / HTTP/1.0\r\nX-Forwarded-For: 9.9.9.9\r\n"
					 "Connection: keep-alive\r\n\r\n");
	assert_false(in.keep_alive); /* HTTP/1.0 without keep-alive */
	buf_done(&b);
}

static void test_upgrade_expect_chunked(void **st)
{
	(void)st;
	struct buf b;
	struct hproxy_req_info in;
	const char *ws = "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
			 "Connection: Upgrade\r\nSec-WebSocket-Key: x\r\n\r\n";
	const char *ch = "PUT /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
			 "Expect: 100-continue\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
	const char *noup = "GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n";
	buf_init(&b, 1 << 16);
	assert_int_equal(parse(ws, 65536, NULL, &b, &in), (int)strlen(ws));
	assert_true(in.upgrade);
	assert_non_null(strstr(buf_str(&b), "Upgrade: websocket\r\n"));
	assert_non_null(strstr(buf_str(&b), "\r\nConnection: upgrade\r\n\r\n"));
	assert_int_equal(parse(ch, 65536, NULL, &b, &in),
			 (int)(strstr(ch, "\r\n\r\n") - ch) + 4);
	assert_true(in.chunked);
	assert_true(in.expect_continue);
	assert_int_equal(in.content_length, -1);
	assert_int_equal(in.method, HTTP_PUT);
	/* Upgrade without Connection: upgrade is only an offer: dropped, keep-alive */
	assert_int_equal(parse(noup, 65536, NULL, &b, &in), (int)strlen(noup));
	assert_false(in.upgrade);
	assert_null(strstr(buf_str(&b), "Upgrade"));
	buf_done(&b);
}

static void test_refusals(void **st)
{
	(void)st;
	struct buf b;
	struct hproxy_req_info in;
	char *big = malloc(70000);
	buf_init(&b, 1 << 20);
	assert_int_equal(parse("GARBAGE\r\n\r\n", 65536, NULL, &b, &in), -400);
	assert_int_equal(parse("GET / HTTP/1.1\r\nBad Header\r\n\r\n", 65536, NULL, &b, &in), -400);
	assert_int_equal(parse("GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked"
			       "\r\n\r\n", 65536, NULL, &b, &in), -400);
	/* a bare CR would end the head early for the parser: refused */
	assert_int_equal(parse("GET / HTTP/1.1\r\nA: b\r\n\r5\r\n\r\n", 65536, NULL, &b, &in), -400);
	assert_int_equal(parse("CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n", 65536, NULL, &b, &in),
			 -400);
	/* over the limit: with the end (complete head too long) and without (still coming) */
	strcpy(big, "GET / HTTP/1.1\r\nX-Big: ");
	memset(big + strlen(big), 'a', 2000);
	big[24 + 2000] = '\0';
	strcat(big, "\r\n\r\n");
	assert_int_equal(parse(big, 1024, NULL, &b, &in), -431);
	big[1500] = '\0';
	assert_int_equal(parse(big, 1024, NULL, &b, &in), -431);
	assert_int_equal(parse(big, 65536, NULL, &b, &in), 0);
	assert_int_equal(b.len, 0);
	/* too many header fields */
	strcpy(big, "GET / HTTP/1.1\r\n");
	for (int i = 0; i < 200; i++)
		strcat(big, "A: b\r\n");
	strcat(big, "\r\n");
	assert_int_equal(parse(big, 65536, NULL, &b, &in), -431);
	free(big);
	buf_done(&b);
}

static void test_leading_crlf_and_bare_lf(void **st)
{
	(void)st;
	struct buf b;
	struct hproxy_req_info in;
	const char *req = "\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
	buf_init(&b, 1 << 16);
	assert_int_equal(parse(req, 65536, "::1", &b, &in), (int)strlen(req));
	assert_true(str_starts(buf_str(&b), "GET / HTTP/1.1\r\nHost: a\r\n"));
	assert_non_null(strstr(buf_str(&b), "X-Forwarded-For: ::1\r\n"));
	/* a bare LF ends a line for some servers and not for others: refused, not forwarded */
	assert_int_equal(parse("GET / HTTP/1.1\nHost: a\n\n", 65536, NULL, &b, &in), -400);
	assert_int_equal(parse("GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n", 65536, NULL, &b, &in),
			 -400);
	assert_int_equal(parse("GET / HTTP/1.1\r\nHost: a\r\n\n", 65536, NULL, &b, &in), -400);
	buf_done(&b);
}

/* Issue 9 item 13: heads the parser reads one way and an upstream may read another. */
static void test_framing_ambiguity_refused(void **st)
{
	(void)st;
	struct buf b;
	struct hproxy_req_info in;
	static const char *const bad[] = {
		/* whitespace before the colon: no Transfer-Encoding for the parser */
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length\t: 5\r\n\r\n",
		/* obs-fold */
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip,\r\n chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\t2\r\n\r\n",
		/* two Host fields (RFC 9112 3.2) */
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		/* a framing header declared hop-by-hop */
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: content-length\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
		"Connection: keep-alive, Transfer-Encoding\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: host\r\n\r\n",
		NULL,
	};
	buf_init(&b, 1 << 16);
	for (size_t i = 0; bad[i]; i++) {
		print_message("head %zu\n", i);
		assert_int_equal(parse(bad[i], 65536, "1.2.3.4", &b, &in), -400);
		assert_int_equal(b.len, 0);
	}
	buf_done(&b);
}

static void test_connection_named_and_hop_by_hop_dropped(void **st)
{
	(void)st;
	struct buf b;
	struct hproxy_req_info in;
	const char *req = "GET / HTTP/1.1\r\nHost: a\r\nX-Secret: s\r\nTE: trailers\r\n"
			  "X-Forwarded-For: 6.6.6.6\r\nConnection: close, X-Secret, x-forwarded-for\r\n"
			  "Keep-Alive: 5\r\nX-Kept: k\r\n\r\n";
	buf_init(&b, 1 << 16);
	assert_int_equal(parse(req, 65536, "1.2.3.4", &b, &in), (int)strlen(req));
	assert_string_equal(buf_str(&b), "GET / HTTP/1.1\r\nHost: a\r\nX-Kept: k\r\n"
					 "X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: http\r\n"
					 "X-Forwarded-Host: a\r\nConnection: keep-alive\r\n\r\n");
	assert_false(in.keep_alive);
	/* however long the name */
	const char *lng = "GET / HTTP/1.1\r\nHost: a\r\n"
			  "X-0123456789012345678901234567890123456789012345678901234567890123456789: s\r\n"
			  "Connection: X-0123456789012345678901234567890123456789012345678901234567890123456789"
			  "\r\n\r\n";
	assert_int_equal(parse(lng, 65536, NULL, &b, &in), (int)strlen(lng));
	assert_string_equal(buf_str(&b), "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n");
	buf_done(&b);
}

static void test_output_limit(void **st)
{
	(void)st;
	struct buf b;
	struct hproxy_req_info in;
	const char *req = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
	buf_init(&b, 20); /* the rewritten head does not fit */
	assert_int_equal(parse(req, 65536, "1.1.1.1", &b, &in), -431);
	assert_int_equal(b.len, 0);
	buf_done(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple_get),
		cmocka_unit_test(test_partial_and_body_after),
		cmocka_unit_test(test_xff_append_and_hop_by_hop),
		cmocka_unit_test(test_no_forwarded),
		cmocka_unit_test(test_upgrade_expect_chunked),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_leading_crlf_and_bare_lf),
		cmocka_unit_test(test_framing_ambiguity_refused),
		cmocka_unit_test(test_connection_named_and_hop_by_hop_dropped),
		cmocka_unit_test(test_output_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
