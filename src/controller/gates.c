/* controller gates: the bake's verdict on a new release's live traffic — error rate, absolute
 * p99 and p99 relative to the release it replaces — from counters the host's proxy keeps. Pure
 * (no I/O, no clock), so every edge is a unit test. A gate that has too little traffic to judge
 * says so; it never passes silently. */
#include "controller/controller.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

double gate_percentile_ms(const uint64_t hist[GATE_BUCKETS], double p)
{
	uint64_t total = 0, seen = 0;
	for (int i = 0; i < GATE_BUCKETS; i++)
		total += hist[i];
	if (!total)
		return 0;
	uint64_t want = (uint64_t)ceil(p / 100.0 * (double)total);
	if (want == 0)
		want = 1;
	for (int i = 0; i < GATE_BUCKETS; i++) {
		seen += hist[i];
		if (seen >= want)
			return pow(2.0, i / 4.0) / 1000.0;
	}
	return pow(2.0, (GATE_BUCKETS - 1) / 4.0) / 1000.0;
}

#include <stdarg.h>

void gate_add_latency(struct gate_traffic *t, int64_t latency_ms, bool error)
{
	double us = latency_ms > 0 ? (double)latency_ms * 1000.0 : 1.0;
	int i = (int)ceil(4.0 * log2(us));
	t->hist[i < 0 ? 0 : i >= GATE_BUCKETS ? GATE_BUCKETS - 1 : i]++;
	t->requests++;
	t->errors += error;
}

__attribute__((format(printf, 4, 5))) static void say(char *why, size_t n, size_t *at,
						      const char *fmt, ...)
{
	va_list ap;
	if (*at >= n)
		return;
	va_start(ap, fmt);
	int k = vsnprintf(why + *at, n - *at, fmt, ap);
	va_end(ap);
	if (k > 0)
		*at += (size_t)k;
}

enum gate_verdict gate_judge(const struct gate_traffic *nt, const struct gate_traffic *base,
			     const struct gate_limits *lim, bool final, char *why, size_t why_n)
{
	uint64_t min = lim->min_requests > 0 ? (uint64_t)lim->min_requests : 1;
	double rate = nt->requests ? (double)nt->errors / (double)nt->requests : 0;
	double p99 = gate_percentile_ms(nt->hist, 99);
	uint64_t base_n = base ? base->requests : 0;
	double base_p99 = base ? gate_percentile_ms(base->hist, 99) : 0;
	size_t at = 0;

	why[0] = '\0';
	/* the error gate: as soon as enough requests are seen, even mid-bake */
	if (nt->requests >= min && rate > lim->max_error_rate) {
		say(why, why_n, &at, "error gate: %llu of %llu requests answered 5xx (%.1f%%, limit %.1f%%)",
		    (unsigned long long)nt->errors, (unsigned long long)nt->requests, rate * 100,
		    lim->max_error_rate * 100);
		return GATE_FAIL;
	}
	/* latency gates: early only with plenty of samples (a p99 of a few is the maximum) */
	bool lat_ready = nt->requests >= (final ? min : 5 * min);
	if (lat_ready && lim->max_p99_ms > 0 && p99 > (double)lim->max_p99_ms) {
		say(why, why_n, &at, "latency gate: p99 %.1f ms over %llu requests, limit %lld ms", p99,
		    (unsigned long long)nt->requests, (long long)lim->max_p99_ms);
		return GATE_FAIL;
	}
	if (lat_ready && lim->max_p99_ratio > 0 && base_n >= min && base_p99 > 0 &&
	    p99 > lim->max_p99_ratio * base_p99) {
		say(why, why_n, &at,
		    "latency gate: p99 %.1f ms is %.1f× the previous release's %.1f ms (limit %.1f×)",
		    p99, p99 / base_p99, base_p99, lim->max_p99_ratio);
		return GATE_FAIL;
	}
	if (!final)
		return GATE_WAIT;
	if (nt->requests < min) {
		say(why, why_n, &at,
		    "too little traffic: %llu requests reached the new release during the bake, the "
		    "gates judge %llu or more; not judged",
		    (unsigned long long)nt->requests, (unsigned long long)min);
		return GATE_TOO_LITTLE;
	}
	if (lim->max_p99_ratio > 0 && base && base_n < min) {
		say(why, why_n, &at,
		    "too little traffic on the previous release (%llu requests, %llu needed) to compare "
		    "p99; the ratio gate is not judged",
		    (unsigned long long)base_n, (unsigned long long)min);
		return GATE_TOO_LITTLE;
	}
	say(why, why_n, &at, "passed: %llu requests, %.2f%% 5xx, p99 %.1f ms%s",
	    (unsigned long long)nt->requests, rate * 100, p99,
	    lim->max_p99_ratio > 0 && !base ? " (no previous release: the ratio gate does not apply)"
					    : "");
	return GATE_PASS;
}
