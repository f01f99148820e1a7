/* Unit tests for proxy/: address parsing (base/net.c), the toxic stages on a bare link, and the
 * engine itself over loopback — round-robin, skipping a refusing upstream, atomic upstream
 * switch with drain, per-label counters, two loop threads, connection limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "proxy/proxy-internal.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MS 1000000LL

static void test_split_hostport(void **state)
{
	char h[64], p[16];
	(void)state;
	assert_int_equal(net_split_hostport("localhost:80", h, sizeof h, p, sizeof p), 0);
	assert_string_equal(h, "localhost");
	assert_string_equal(p, "80");
	assert_int_equal(net_split_hostport("[::1]:8474", h, sizeof h, p, sizeof p), 0);
	assert_string_equal(h, "::1");
	assert_int_equal(net_split_hostport(":0", h, sizeof h, p, sizeof p), 0);
	assert_string_equal(h, "");
	assert_int_equal(net_split_hostport("::1:80", h, sizeof h, p, sizeof p), -EINVAL);
	assert_int_equal(net_split_hostport("host", h, sizeof h, p, sizeof p), -EINVAL);
	assert_int_equal(net_split_hostport("host:", h, sizeof h, p, sizeof p), -EINVAL);
	assert_int_equal(net_split_hostport("[::1]80", h, sizeof h, p, sizeof p), -EINVAL);
	assert_int_equal(net_split_hostport("http://x:80", h, sizeof h, p, sizeof p), -EINVAL);
}

/* ---- stages on a bare link ---- */

static struct loop lp0;

static struct link *mklink(const struct proxy_toxic *chain, size_t n)
{
	struct link *l = calloc(1, sizeof *l);
	bool cl = false;
	lp0.rng = 42;
	proxy__stages_build(&lp0, l, chain, n, 0, &cl);
	assert_false(cl);
	return l;
}

static void freelink(struct link *l)
{
	proxy__evq_clear(&l->q);
	free(l->stages);
	free(l);
}

static void run(struct link *l, const char *data, size_t n, int64_t t)
{
	proxy__toxics_run(&lp0, l, proxy__ev_new(n ? EV_DATA : EV_EOF, data, n, t), t);
}

static void test_latency_fifo_and_stacking(void **state)
{
	struct proxy_toxic c[2] = { { .name = "a", .type = TOXIC_LATENCY, .toxicity = 1, .a = { 10 } },
				    { .name = "b", .type = TOXIC_LATENCY, .toxicity = 1, .a = { 5 } } };
	(void)state;
	struct link *l = mklink(c, 2);
	run(l, "x", 1, 0);
	run(l, "y", 1, 1 * MS);
	assert_int_equal(l->q.head->t, 15 * MS);
	assert_int_equal(l->q.head->next->t, 16 * MS);
	freelink(l);
}

/* Attributes the engine's API takes as any int64 saturate: a huge delay holds the bytes (it used
 * to wrap to a time in the past, UBSan: signed overflow), a negative one is none. */
static void test_huge_and_negative_attributes_saturate(void **state)
{
	const int64_t huge = (int64_t)1 << 62;
	struct proxy_toxic c[] = {
		{ .name = "l", .type = TOXIC_LATENCY, .toxicity = 1, .a = { huge, huge } },
		{ .name = "s", .type = TOXIC_SLOW_CLOSE, .toxicity = 1, .a = { huge } },
		{ .name = "r", .type = TOXIC_RESET_PEER, .toxicity = 1, .a = { huge } },
		{ .name = "c", .type = TOXIC_SLICER, .toxicity = 1, .a = { huge, INT64_MIN, huge } },
		{ .name = "b", .type = TOXIC_BANDWIDTH, .toxicity = 1, .a = { INT64_MAX } },
		{ .name = "t", .type = TOXIC_TIMEOUT, .toxicity = 1, .a = { huge } },
		{ .name = "n", .type = TOXIC_LATENCY, .toxicity = 1, .a = { -5, -7 } },
	};
	(void)state;
	for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
		struct link *l = mklink(&c[i], 1);
		run(l, "x", 1, 1000);
		run(l, NULL, 0, 2000);
		if (i == 5) { /* timeout: the data is dropped, the deadline is far */
			assert_true(proxy__idle_deadline(l) > ((int64_t)1 << 62));
		} else if (i == 6) {
			assert_int_equal(l->q.head->t, 1000);
		} else if (i == 4) { /* a huge rate: no delay */
			assert_int_equal(l->q.head->t, 1000);
		} else { /* the EOF waits the huge delay (slicer: after the piece) */
			assert_true(l->q.tail->t > ((int64_t)1 << 62));
		}
		freelink(l);
	}
}

static void test_bandwidth_splits_by_100ms(void **state)
{
	struct proxy_toxic c = { .name = "bw", .type = TOXIC_BANDWIDTH, .toxicity = 1, .a = { 1 } };
	char data[250];
	(void)state;
	memset(data, 'x', sizeof data);
	struct link *l = mklink(&c, 1); /* 1 KB/s: pieces of 100 B every 100 ms */
	run(l, data, sizeof data, 0);
	struct ev *e = l->q.head;
	assert_int_equal(e->len, 100);
	assert_int_equal(e->t, 100 * MS);
	assert_int_equal(e->next->len, 100);
	assert_int_equal(e->next->t, 200 * MS);
	assert_int_equal(e->next->next->len, 50);
	assert_int_equal(e->next->next->t, 250 * MS);
	freelink(l);
}

static void test_slicer_sizes(void **state)
{
	struct proxy_toxic c = { .name = "s", .type = TOXIC_SLICER, .toxicity = 1, .a = { 10, 3, 1000 } };
	char data[1000];
	size_t sum = 0, pieces = 0;
	(void)state;
	memset(data, 'x', sizeof data);
	struct link *l = mklink(&c, 1);
	run(l, data, sizeof data, 0);
	for (struct ev *e = l->q.head; e; e = e->next, pieces++) {
		sum += e->len;
		if (e->next)
			assert_true(e->len >= 7 && e->len < 13);
		assert_int_equal(e->t, (int64_t)pieces * 1000 * 1000); /* 1000 us apart */
	}
	assert_int_equal(sum, 1000);
	freelink(l);
}

static void test_limit_data_truncates_and_closes(void **state)
{
	struct proxy_toxic c = { .name = "l", .type = TOXIC_LIMIT_DATA, .toxicity = 1, .a = { 5 } };
	(void)state;
	struct link *l = mklink(&c, 1);
	run(l, "abc", 3, 0);
	run(l, "defg", 4, 0);
	struct ev *e = l->q.head;
	assert_int_equal(e->len, 3);
	assert_int_equal(e->next->len, 2);
	assert_memory_equal(e->next->data, "de", 2);
	assert_int_equal(e->next->next->kind, EV_CLOSE);
	/* the count survives an update of the same toxic */
	bool cl = false;
	c.a[0] = 10;
	proxy__stages_build(&lp0, l, &c, 1, 0, &cl);
	assert_int_equal(l->stages[0].count, 5);
	freelink(l);
}

static void test_timeout_and_reset(void **state)
{
	struct proxy_toxic c = { .name = "t", .type = TOXIC_TIMEOUT, .toxicity = 1, .a = { 100 } };
	struct proxy_toxic r = { .name = "r", .type = TOXIC_RESET_PEER, .toxicity = 1, .a = { 7 } };
	(void)state;
	struct link *l = mklink(&c, 1);
	assert_int_equal(proxy__idle_deadline(l), 100 * MS);
	run(l, "abc", 3, 50 * MS);
	assert_null(l->q.head); /* dropped */
	assert_int_equal(proxy__idle_deadline(l), 150 * MS);
	bool cl = false;
	proxy__stages_build(&lp0, l, NULL, 0, 0, &cl);
	assert_true(cl); /* removing a timeout closes the connection */
	freelink(l);
	l = mklink(&r, 1);
	run(l, "abc", 3, 1 * MS);
	assert_int_equal(l->q.head->kind, EV_CLOSE);
	assert_int_equal(l->q.head->t, 8 * MS);
	freelink(l);
}

static void test_toxicity_zero_is_inactive_and_stall_heals(void **state)
{
	struct proxy_toxic c = { .name = "z", .type = TOXIC_LATENCY, .toxicity = 0, .a = { 10 } };
	struct proxy_toxic bw = { .name = "bw", .type = TOXIC_BANDWIDTH, .toxicity = 1, .a = { 0 } };
	(void)state;
	struct link *l = mklink(&c, 1);
	assert_false(l->any_active);
	freelink(l);
	l = mklink(&bw, 1);
	run(l, "abc", 3, 0);
	assert_int_equal(l->q.head->t, TIME_INF);
	bool cl = false;
	proxy__stages_build(&lp0, l, NULL, 0, 5, &cl);
	assert_int_equal(l->q.head->t, 5);
	freelink(l);
}

/* ---- the engine over loopback ---- */

struct upstream {
	int lfd;
	char addr[NET_ADDR_STRLEN];
};

static void up_open(struct upstream *u)
{
	struct net_addr a;
	size_t n;
	struct err e;
	assert_int_equal(net_resolve_tcp("127.0.0.1:0", true, &a, 1, &n, &e), 0);
	u->lfd = net_listen_on(&a, false, 64, &e);
	assert_true(u->lfd >= 0);
	net_local_addr_str(u->lfd, u->addr, sizeof u->addr);
}

/* Accepts one connection within 2 s, or returns -1. */
static int up_accept(struct upstream *u)
{
	struct pollfd p = { .fd = u->lfd, .events = POLLIN };
	if (poll(&p, 1, 2000) != 1)
		return -1;
	return accept(u->lfd, NULL, NULL);
}

static int dial(const char *addr)
{
	struct err e;
	int fd = net_dial_tcp(addr, 2000, &e);
	assert_true(fd >= 0);
	struct timeval tv = { 2, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	return fd;
}

static void roundtrip(int client, int server, const char *msg)
{
	char buf[64];
	size_t n = strlen(msg);
	assert_int_equal(send(client, msg, n, 0), (ssize_t)n);
	assert_int_equal(recv(server, buf, n, MSG_WAITALL), (ssize_t)n);
	assert_int_equal(send(server, msg, n, 0), (ssize_t)n);
	assert_int_equal(recv(client, buf, n, MSG_WAITALL), (ssize_t)n);
	assert_memory_equal(buf, msg, n);
}

static void engine_switch(int threads)
{
	struct proxy_engine_opts o = { .threads = threads, .drain_timeout_ms = 300 };
	struct proxy_engine *eng;
	struct upstream a, b, dead;
	struct err e;
	char listen[NET_ADDR_STRLEN];

	up_open(&a);
	up_open(&b);
	up_open(&dead);
	close(dead.lfd); /* refuses connections */
	assert_int_equal(proxy_engine_new(&o, &eng, &e), 0);
	struct proxy_upstream ups[2] = { { dead.addr, "rel-dead" }, { a.addr, "rel-a" } };
	int64_t id = proxy_engine_add(eng, "127.0.0.1:0", ups, 2, true, listen, &e);
	assert_true(id > 0);

	/* the refusing upstream is skipped for every connection */
	int c1 = dial(listen), s1 = up_accept(&a);
	assert_true(s1 >= 0);
	roundtrip(c1, s1, "one");
	int c2 = dial(listen), s2 = up_accept(&a);
	assert_true(s2 >= 0);
	roundtrip(c2, s2, "two");

	/* switch: new connections go to b, old ones finish on a */
	struct proxy_upstream nb = { b.addr, "rel-b" };
	assert_int_equal(proxy_engine_set_upstreams(eng, id, &nb, 1, &e), 0);
	int c3 = dial(listen), s3 = up_accept(&b);
	assert_true(s3 >= 0);
	roundtrip(c3, s3, "three");
	roundtrip(c1, s1, "still on a");

	struct proxy_stats st;
	assert_int_equal(proxy_engine_stats(eng, id, &st), 0);
	assert_int_equal(st.conns_total, 3);
	assert_int_equal(st.conns_active, 3);
	bool seen_a = false, seen_dead = false;
	for (size_t i = 0; i < st.n_labels; i++) {
		if (!strcmp(st.labels[i].label, "rel-a")) {
			seen_a = true;
			assert_int_equal(st.labels[i].conns_total, 2);
			assert_true(st.labels[i].bytes_up >= 3 + 3 + 10);
		}
		if (!strcmp(st.labels[i].label, "rel-dead")) {
			seen_dead = true;
			/* round-robin starts there in each loop; the next turn skips it */
			assert_true(st.labels[i].connect_failures >= 1);
		}
	}
	assert_true(seen_a && seen_dead);

	/* the drain deadline closes the old set's connections, not the new one's */
	char ch;
	assert_int_equal(recv(c1, &ch, 1, 0), 0);
	assert_int_equal(recv(c2, &ch, 1, 0), 0);
	roundtrip(c3, s3, "alive");

	/* disable refuses; remove closes */
	assert_int_equal(proxy_engine_disable(eng, id), 0);
	assert_int_equal(recv(c3, &ch, 1, 0), 0);
	assert_true(net_dial_tcp(listen, 500, &e) < 0);
	assert_int_equal(proxy_engine_enable(eng, id, listen, listen, &e), 0);
	int c4 = dial(listen), s4 = up_accept(&b);
	roundtrip(c4, s4, "back");
	assert_int_equal(proxy_engine_remove(eng, id), 0);
	assert_int_equal(recv(c4, &ch, 1, 0), 0);

	int fds[] = { c1, c2, c3, c4, s1, s2, s3, s4, a.lfd, b.lfd };
	for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
		close(fds[i]);
	proxy_engine_free(eng);
}

static void test_engine_switch_one_loop(void **state)
{
	(void)state;
	engine_switch(1);
}

static void test_engine_switch_two_loops(void **state)
{
	(void)state;
	engine_switch(2);
}

static void test_engine_connection_limit(void **state)
{
	struct proxy_engine_opts o = { .threads = 1, .max_conns = 2 };
	struct proxy_engine *eng;
	struct upstream a;
	struct err e;
	char listen[NET_ADDR_STRLEN], ch;
	(void)state;
	up_open(&a);
	assert_int_equal(proxy_engine_new(&o, &eng, &e), 0);
	struct proxy_upstream u = { a.addr, NULL };
	int64_t id = proxy_engine_add(eng, "127.0.0.1:0", &u, 1, true, listen, &e);
	int c1 = dial(listen), s1 = up_accept(&a), c2 = dial(listen), s2 = up_accept(&a);
	int c3 = dial(listen);
	assert_int_equal(recv(c3, &ch, 1, 0), 0); /* over the limit: accepted and closed */
	roundtrip(c1, s1, "ok");
	struct proxy_stats st;
	proxy_engine_stats(eng, id, &st);
	assert_int_equal(st.conns_refused_limit, 1);
	int fds[] = { c1, c2, c3, s1, s2, a.lfd };
	for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
		close(fds[i]);
	proxy_engine_free(eng);
}

static void test_engine_bind_error(void **state)
{
	struct proxy_engine *eng;
	struct upstream a;
	struct err e;
	char listen[NET_ADDR_STRLEN];
	(void)state;
	up_open(&a);
	assert_int_equal(proxy_engine_new(NULL, &eng, &e), 0);
	struct proxy_upstream u = { a.addr, NULL };
	assert_true(proxy_engine_add(eng, a.addr, &u, 1, true, listen, &e) < 0);
	assert_non_null(strstr(e.msg, "address already in use"));
	assert_true(proxy_engine_add(eng, "nonsense", &u, 1, true, listen, &e) < 0);
	close(a.lfd);
	proxy_engine_free(eng);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split_hostport),
		cmocka_unit_test(test_latency_fifo_and_stacking),
		cmocka_unit_test(test_huge_and_negative_attributes_saturate),
		cmocka_unit_test(test_bandwidth_splits_by_100ms),
		cmocka_unit_test(test_slicer_sizes),
		cmocka_unit_test(test_limit_data_truncates_and_closes),
		cmocka_unit_test(test_timeout_and_reset),
		cmocka_unit_test(test_toxicity_zero_is_inactive_and_stall_heals),
		cmocka_unit_test(test_engine_switch_one_loop),
		cmocka_unit_test(test_engine_switch_two_loops),
		cmocka_unit_test(test_engine_connection_limit),
		cmocka_unit_test(test_engine_bind_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
