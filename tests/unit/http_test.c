/* Unit tests for proxy/http.c, the HTTP/1.1 observer: status classes and latency per label,
 * pipelining, chunked bodies, HEAD, Upgrade, bytes that are not HTTP, and the module on a real
 * engine connection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "proxy/proxy.h"

#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct fixture {
	struct proxy_http *h;
	struct proxy_protocol p;
	void *c;
};

static void open_conn(struct fixture *f, const char *label)
{
	f->h = proxy_http_new();
	proxy_http_protocol(f->h, &f->p);
	f->c = f->p.conn_open(f->p.mod, label);
	assert_non_null(f->c);
}

static void feed(struct fixture *f, enum proxy_dir d, const char *s)
{
	assert_int_equal(f->p.on_bytes(f->c, d, s, strlen(s)), 0);
}

static void done(struct fixture *f)
{
	f->p.conn_close(f->c);
	proxy_http_free(f->h);
}

static void test_status_classes_pipelined(void **state)
{
	struct fixture f;
	struct proxy_http_stats s;
	(void)state;
	open_conn(&f, "rel-1");
	feed(&f, PROXY_UPSTREAM, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"
				 "POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
	feed(&f, PROXY_DOWNSTREAM, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
				   "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
	feed(&f, PROXY_DOWNSTREAM, "HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n"
				   "3\r\nabc\r\n0\r\n\r\n");
	assert_int_equal(proxy_http_stats(f.h, "rel-1", &s), 0);
	assert_int_equal(s.requests, 3);
	assert_int_equal(s.status[2], 1);
	assert_int_equal(s.status[4], 1);
	assert_int_equal(s.status[5], 1);
	assert_int_equal(s.parse_errors, 0);
	assert_true(proxy_http_percentile_us(&s, 99) > 0);
	assert_int_equal(proxy_http_stats(f.h, "other", &s), -1);
	done(&f);
}

static void test_head_interim_and_upgrade(void **state)
{
	struct fixture f;
	struct proxy_http_stats s;
	(void)state;
	open_conn(&f, "r");
	feed(&f, PROXY_UPSTREAM, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
	/* the HEAD answer announces a body it does not send */
	feed(&f, PROXY_DOWNSTREAM, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
				   "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 301 Moved\r\nContent-Length: 0\r\n\r\n");
	assert_int_equal(proxy_http_stats(f.h, "r", &s), 0);
	assert_int_equal(s.requests, 2);
	assert_int_equal(s.status[2], 1);
	assert_int_equal(s.status[3], 1);
	assert_int_equal(s.status[1], 0);
	feed(&f, PROXY_UPSTREAM, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
	feed(&f, PROXY_DOWNSTREAM, "HTTP/1.1 101 Switching\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello");
	feed(&f, PROXY_UPSTREAM, "\x81\x85garbage that is not HTTP");
	assert_int_equal(proxy_http_stats(f.h, "r", &s), 0);
	assert_int_equal(s.status[1], 1);
	assert_int_equal(s.parse_errors, 0);
	done(&f);
}

static void test_refused_upgrade_stays_http(void **state)
{
	struct fixture f;
	struct proxy_http_stats s;
	(void)state;
	open_conn(&f, "r");
	feed(&f, PROXY_UPSTREAM, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
	feed(&f, PROXY_DOWNSTREAM, "HTTP/1.1 400 No\r\nContent-Length: 0\r\n\r\n");
	feed(&f, PROXY_UPSTREAM, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
	feed(&f, PROXY_DOWNSTREAM, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	assert_int_equal(proxy_http_stats(f.h, "r", &s), 0);
	assert_int_equal(s.status[4], 1);
	assert_int_equal(s.status[2], 1);
	assert_int_equal(s.parse_errors, 0);
	done(&f);
}

static void test_not_http_stops_observing(void **state)
{
	struct fixture f;
	struct proxy_http_stats s;
	(void)state;
	open_conn(&f, "r");
	feed(&f, PROXY_UPSTREAM, "\x16\x03\x01 TLS hello, not HTTP\r\n\r\n");
	feed(&f, PROXY_UPSTREAM, "GET / HTTP/1.1\r\n\r\n");
	assert_int_equal(proxy_http_stats(f.h, "r", &s), 0);
	assert_int_equal(s.parse_errors, 1);
	assert_int_equal(s.requests, 0);
	done(&f);
}

/* A one-shot HTTP upstream on a real engine proxy labelled "rel-7". */
static void test_on_engine(void **state)
{
	struct proxy_engine *eng;
	struct err e;
	struct net_addr a;
	size_t n;
	char up[NET_ADDR_STRLEN], listen[NET_ADDR_STRLEN], buf[256];
	(void)state;
	assert_int_equal(net_resolve_tcp("127.0.0.1:0", true, &a, 1, &n, &e), 0);
	int lfd = net_listen_on(&a, false, 8, &e);
	net_local_addr_str(lfd, up, sizeof up);
	assert_int_equal(proxy_engine_new(NULL, &eng, &e), 0);
	struct proxy_http *h = proxy_http_new();
	struct proxy_protocol p;
	proxy_http_protocol(h, &p);
	struct proxy_upstream u = { up, "rel-7" };
	int64_t id = proxy_engine_add(eng, "127.0.0.1:0", &u, 1, true, listen, &e);
	assert_int_equal(proxy_engine_set_protocol(eng, id, &p), 0);
	int c = net_dial_tcp(listen, 2000, &e);
	struct pollfd pf = { .fd = lfd, .events = POLLIN };
	assert_int_equal(poll(&pf, 1, 2000), 1);
	int s = accept(lfd, NULL, NULL);
	const char *req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	const char *resp = "HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy";
	assert_int_equal(send(c, req, strlen(req), 0), (ssize_t)strlen(req));
	assert_int_equal(recv(s, buf, strlen(req), MSG_WAITALL), (ssize_t)strlen(req));
	assert_int_equal(send(s, resp, strlen(resp), 0), (ssize_t)strlen(resp));
	assert_int_equal(recv(c, buf, strlen(resp), MSG_WAITALL), (ssize_t)strlen(resp));
	assert_memory_equal(buf, resp, strlen(resp)); /* bytes unchanged */
	struct proxy_http_stats st;
	assert_int_equal(proxy_http_stats(h, "rel-7", &st), 0);
	assert_int_equal(st.status[5], 1);
	close(c);
	close(s);
	close(lfd);
	proxy_engine_free(eng);
	proxy_http_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status_classes_pipelined),
		cmocka_unit_test(test_head_interim_and_upgrade),
		cmocka_unit_test(test_refused_upgrade_stays_http),
		cmocka_unit_test(test_not_http_stops_observing),
		cmocka_unit_test(test_on_engine),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
