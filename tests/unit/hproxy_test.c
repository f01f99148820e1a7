/* Unit tests for the HTTP reverse proxy's face (proxy/hproxy.c) on real loopback sockets: the
 * emergency stop (503 for new and keep-alive requests, requests in flight cut, serving again),
 * the empty set, switching labels, and the counters (totals, window, labels). The upstream is a
 * tiny threaded HTTP/1.1 server in this file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "proxy/proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* ---- the upstream: "ok" for every request, nothing for /hang until the peer closes ---- */

static pthread_mutex_t hang_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hang_cv = PTHREAD_COND_INITIALIZER;
static int hangs;

static void *serve_conn(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char b[8192];
	size_t n = 0;
	for (;;) {
		ssize_t r = recv(fd, b + n, sizeof b - n - 1, 0);
		if (r <= 0)
			break;
		n += (size_t)r;
		b[n] = '\0';
		char *end;
		while ((end = strstr(b, "\r\n\r\n"))) {
			if (!strncmp(b, "GET /hang", 9)) {
				pthread_mutex_lock(&hang_mu);
				hangs++;
				pthread_cond_broadcast(&hang_cv);
				pthread_mutex_unlock(&hang_mu);
				n = 0; /* no answer: the next recv sees the close */
				b[0] = '\0';
				break;
			}
			const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
			if (send(fd, ok, strlen(ok), MSG_NOSIGNAL) < 0)
				goto out;
			size_t used = (size_t)(end + 4 - b);
			memmove(b, b + used, n - used + 1);
			n -= used;
		}
	}
out:
	close(fd);
	return NULL;
}

/* Waits (5 s at most) until the upstream holds a /hang request. */
static void wait_hang(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 5;
	pthread_mutex_lock(&hang_mu);
	while (!hangs && pthread_cond_timedwait(&hang_cv, &hang_mu, &ts) == 0)
		;
	assert_true(hangs > 0);
	pthread_mutex_unlock(&hang_mu);
}

static void *serve(void *arg)
{
	int l = (int)(intptr_t)arg;
	for (;;) {
		int fd = accept(l, NULL, NULL);
		if (fd < 0)
			return NULL;
		pthread_t t;
		pthread_create(&t, NULL, serve_conn, (void *)(intptr_t)fd);
		pthread_detach(t);
	}
}

static int upstream(char addr[NET_ADDR_STRLEN])
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof a;
	int l = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(l, 64), 0);
	getsockname(l, (struct sockaddr *)&a, &al);
	snprintf(addr, NET_ADDR_STRLEN, "127.0.0.1:%d", ntohs(a.sin_port));
	pthread_t t;
	pthread_create(&t, NULL, serve, (void *)(intptr_t)l);
	pthread_detach(t);
	return l;
}

/* ---- a client ---- */

static int dial(const char *addr)
{
	struct err e;
	int fd = net_dial_tcp(addr, 5000, &e);
	assert_true(fd >= 0);
	struct timeval tv = { 5, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	return fd;
}

/* Sends a GET and reads one response (Content-Length framed) into out; returns the status, or
 * 0 when the connection closed first. */
static int get(int fd, const char *path, char *out, size_t cap)
{
	char req[256];
	size_t n = 0;
	snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path);
	if (send(fd, req, strlen(req), MSG_NOSIGNAL) < 0)
		return 0;
	for (;;) {
		ssize_t r = recv(fd, out + n, cap - n - 1, 0);
		if (r <= 0)
			return 0;
		n += (size_t)r;
		out[n] = '\0';
		char *end = strstr(out, "\r\n\r\n");
		const char *cl = strstr(out, "Content-Length: ");
		if (end && cl && n >= (size_t)(end + 4 - out) + (size_t)atoi(cl + 16))
			return atoi(out + 9);
	}
}

static struct hproxy *start(char addr[NET_ADDR_STRLEN], const char *up, const char *label)
{
	struct hproxy_opts o = { .threads = 2, .drain_timeout_ms = 2000 };
	struct hproxy *h;
	struct err e;
	assert_int_equal(hproxy_new(&o, "127.0.0.1:0", addr, &h, &e), 0);
	if (up) {
		struct proxy_upstream u = { up, label };
		assert_int_equal(hproxy_set_upstreams(h, &u, 1, &e), 0);
	}
	return h;
}

static void test_emergency_stop(void **st)
{
	(void)st;
	char up[NET_ADDR_STRLEN], addr[NET_ADDR_STRLEN], b[4096];
	int l = upstream(up);
	struct hproxy *h = start(addr, up, "v1");
	int fd = dial(addr);
	assert_int_equal(get(fd, "/", b, sizeof b), 200);

	int hang = dial(addr);
	assert_true(send(hang, "GET /hang HTTP/1.1\r\n\r\n", 22, 0) == 22);
	wait_hang(); /* the request is in flight */

	hproxy_set_stopped(h, true);
	assert_int_equal(recv(hang, b, sizeof b, 0), 0); /* in flight: cut */
	assert_int_equal(get(fd, "/", b, sizeof b), 503); /* keep-alive: 503 and close */
	assert_non_null(strstr(b, "Connection: close"));
	assert_non_null(strstr(b, "{\"error\":{\"code\":\"unavailable\""));
	assert_int_equal(recv(fd, b, sizeof b, 0), 0);
	close(fd);
	fd = dial(addr); /* new clients are answered, not refused */
	assert_int_equal(get(fd, "/", b, sizeof b), 503);
	close(fd);

	hproxy_set_stopped(h, false);
	fd = dial(addr);
	assert_int_equal(get(fd, "/", b, sizeof b), 200);
	close(fd);
	close(hang);
	hproxy_free(h);
	shutdown(l, SHUT_RDWR);
	close(l);
}

static void test_no_upstream_and_labels(void **st)
{
	(void)st;
	char up[NET_ADDR_STRLEN], addr[NET_ADDR_STRLEN], b[4096];
	struct proxy_http_stats s;
	char labels[8][PROXY_TOXIC_NAME_MAX];
	struct err e;
	int l = upstream(up);
	struct hproxy *h = start(addr, NULL, NULL);
	int fd = dial(addr);
	assert_int_equal(get(fd, "/", b, sizeof b), 503);
	close(fd);
	assert_int_equal(hproxy_labels(h, labels, 8), 0);

	struct proxy_upstream u1 = { up, "v1" }, u2 = { up, "v2" };
	assert_int_equal(hproxy_set_upstreams(h, &u1, 1, &e), 0);
	fd = dial(addr);
	for (int i = 0; i < 3; i++)
		assert_int_equal(get(fd, "/", b, sizeof b), 200);
	assert_int_equal(hproxy_set_upstreams(h, &u2, 1, &e), 0);
	for (int i = 0; i < 2; i++) /* the same connection moves with the switch */
		assert_int_equal(get(fd, "/", b, sizeof b), 200);
	close(fd);

	assert_int_equal(hproxy_stats(h, "v1", 0, &s), 0);
	assert_int_equal(s.requests, 3);
	assert_int_equal(s.status[2], 3);
	assert_string_equal(s.label, "v1");
	uint64_t in_hist = 0;
	for (int i = 0; i < PROXY_HTTP_BUCKETS; i++)
		in_hist += s.hist[i];
	assert_int_equal(in_hist, 3);
	assert_int_equal(hproxy_stats(h, "v2", 5000, &s), 0);
	assert_int_equal(s.requests, 2);
	assert_int_equal(hproxy_stats(h, "v3", 0, &s), -1);
	size_t n = hproxy_labels(h, labels, 8);
	assert_int_equal(n, 2);
	assert_true((!strcmp(labels[0], "v1") && !strcmp(labels[1], "v2")) ||
		    (!strcmp(labels[0], "v2") && !strcmp(labels[1], "v1")));
	hproxy_free(h);
	shutdown(l, SHUT_RDWR);
	close(l);
}

static void test_bind_error(void **st)
{
	(void)st;
	char addr[NET_ADDR_STRLEN], addr2[NET_ADDR_STRLEN];
	struct hproxy *h = start(addr, NULL, NULL), *h2 = NULL;
	struct hproxy_opts o = { 0 };
	struct err e;
	/* the port is taken (SO_REUSEPORT only shares it between sockets of one user that all
	 * ask for it; a plain listener in the way is an error) */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof a;
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(fd, 1), 0);
	getsockname(fd, (struct sockaddr *)&a, &al);
	char taken[64];
	snprintf(taken, sizeof taken, "127.0.0.1:%d", ntohs(a.sin_port));
	assert_true(hproxy_new(&o, taken, addr2, &h2, &e) < 0);
	assert_non_null(strstr(e.msg, "address already in use"));
	close(fd);
	hproxy_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_emergency_stop),
		cmocka_unit_test(test_no_upstream_and_labels),
		cmocka_unit_test(test_bind_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
