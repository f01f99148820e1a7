/* gates_test: the bake's verdicts — every gate at, just over and under its limit, early versus
 * final judgement, too little traffic on either side, and the percentile of a histogram. */
#include "controller/controller.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

/* The bucket holding latencies up to `ms` milliseconds (bucket i: up to 2^(i/4) us). */
static int bucket_of_ms(double ms)
{
	return (int)ceil(4.0 * log2(ms * 1000.0));
}

static struct gate_traffic traffic(uint64_t n, uint64_t errors, double ms)
{
	struct gate_traffic t;
	memset(&t, 0, sizeof(t));
	t.requests = n;
	t.errors = errors;
	t.hist[bucket_of_ms(ms)] = n;
	return t;
}

static const struct gate_limits lim = {.max_error_rate = 0.01, .max_p99_ms = 500,
				       .max_p99_ratio = 2.0, .min_requests = 20};

static void test_percentile(void **st)
{
	(void)st;
	struct gate_traffic t;
	memset(&t, 0, sizeof(t));
	assert_true(gate_percentile_ms(t.hist, 99) == 0);
	t.hist[bucket_of_ms(1)] = 99;
	t.hist[bucket_of_ms(100)] = 1;
	/* a bucket's upper bound: at most 2^(1/4) (19 %) above the value */
	assert_true(gate_percentile_ms(t.hist, 50) >= 1.0 && gate_percentile_ms(t.hist, 50) < 1.19);
	assert_true(gate_percentile_ms(t.hist, 99) < 1.19);
	assert_true(gate_percentile_ms(t.hist, 99.9) >= 100 && gate_percentile_ms(t.hist, 99.9) < 119);
}

static void test_error_gate(void **st)
{
	(void)st;
	char why[256];
	struct gate_traffic base = traffic(1000, 0, 5);
	struct gate_traffic nt = traffic(100, 1, 5); /* exactly 1%: passes */
	assert_int_equal(gate_judge(&nt, &base, &lim, true, why, sizeof(why)), GATE_PASS);
	assert_non_null(strstr(why, "passed: 100 requests"));
	nt = traffic(100, 2, 5); /* 2%: fails, and early too */
	assert_int_equal(gate_judge(&nt, &base, &lim, false, why, sizeof(why)), GATE_FAIL);
	assert_non_null(strstr(why, "error gate: 2 of 100 requests answered 5xx (2.0%, limit 1.0%)"));
	nt = traffic(19, 19, 5); /* under min_requests: not judged early, too little at the end */
	assert_int_equal(gate_judge(&nt, &base, &lim, false, why, sizeof(why)), GATE_WAIT);
	assert_int_equal(gate_judge(&nt, &base, &lim, true, why, sizeof(why)), GATE_TOO_LITTLE);
	assert_non_null(strstr(why, "too little traffic: 19 requests"));
	nt = traffic(20, 20, 5);
	assert_int_equal(gate_judge(&nt, &base, &lim, false, why, sizeof(why)), GATE_FAIL);
}

static void test_p99_gates(void **st)
{
	(void)st;
	char why[256];
	struct gate_traffic base = traffic(1000, 0, 10);
	struct gate_traffic nt = traffic(60, 0, 600); /* over max_p99, but 60 < 5 × 20: wait */
	assert_int_equal(gate_judge(&nt, &base, &lim, false, why, sizeof(why)), GATE_WAIT);
	assert_int_equal(gate_judge(&nt, &base, &lim, true, why, sizeof(why)), GATE_FAIL);
	assert_non_null(strstr(why, "latency gate: p99"));
	assert_non_null(strstr(why, "limit 500 ms"));
	nt = traffic(100, 0, 600); /* plenty of samples: fails early */
	assert_int_equal(gate_judge(&nt, &base, &lim, false, why, sizeof(why)), GATE_FAIL);
	nt = traffic(100, 0, 50); /* 5x the previous 10 ms, under the absolute bound */
	assert_int_equal(gate_judge(&nt, &base, &lim, true, why, sizeof(why)), GATE_FAIL);
	assert_non_null(strstr(why, "the previous release's"));
	assert_non_null(strstr(why, "limit 2.0×"));
	nt = traffic(100, 0, 15); /* 1.5x: passes */
	assert_int_equal(gate_judge(&nt, &base, &lim, true, why, sizeof(why)), GATE_PASS);
}

static void test_ratio_needs_a_baseline(void **st)
{
	(void)st;
	char why[256];
	struct gate_traffic nt = traffic(100, 0, 50);
	struct gate_traffic base = traffic(5, 0, 1);
	assert_int_equal(gate_judge(&nt, &base, &lim, true, why, sizeof(why)), GATE_TOO_LITTLE);
	assert_non_null(strstr(why, "previous release (5 requests, 20 needed)"));
	/* no previous release at all: nothing to compare, the ratio gate does not apply */
	assert_int_equal(gate_judge(&nt, NULL, &lim, true, why, sizeof(why)), GATE_PASS);
	assert_non_null(strstr(why, "no previous release"));
	struct gate_limits no_ratio = lim;
	no_ratio.max_p99_ratio = 0;
	assert_int_equal(gate_judge(&nt, NULL, &no_ratio, true, why, sizeof(why)), GATE_PASS);
}

/* the bake's own requests land in the bucket the proxy would have used */
static void test_add_latency(void **st)
{
	(void)st;
	struct gate_traffic t = {0};
	gate_add_latency(&t, 800, false);
	gate_add_latency(&t, 2, true);
	assert_int_equal(t.requests, 2);
	assert_int_equal(t.errors, 1);
	double p99 = gate_percentile_ms(t.hist, 99), p50 = gate_percentile_ms(t.hist, 50);
	assert_true(p99 >= 800 && p99 < 800 * 1.19); /* a bucket is 2^(1/4) wide */
	assert_true(p50 >= 2 && p50 < 2 * 1.19);
	gate_add_latency(&t, 0, false); /* 0 ms: the first bucket, not a negative index */
	gate_add_latency(&t, 1000000000, false); /* past the top: the last bucket */
	assert_int_equal(t.hist[0] + t.hist[GATE_BUCKETS - 1], 2);
}

static void test_short_buffer(void **st)
{
	(void)st;
	char why[8];
	struct gate_traffic nt = traffic(100, 50, 5);
	assert_int_equal(gate_judge(&nt, NULL, &lim, true, why, sizeof(why)), GATE_FAIL);
	assert_int_equal(strlen(why), 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_percentile),
	    cmocka_unit_test(test_error_gate),
	    cmocka_unit_test(test_p99_gates),
	    cmocka_unit_test(test_ratio_needs_a_baseline),
	    cmocka_unit_test(test_short_buffer),
	    cmocka_unit_test(test_add_latency),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
