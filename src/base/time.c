/* time: clocks, duration parsing ("250ms", "10s", "5m") and human formatting. */
#include "base/base.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t clock_ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t time_now_ns(void)
{
	return clock_ns(CLOCK_REALTIME);
}

int64_t time_mono_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

int time_parse_duration_ms(const char *s, int64_t *out_ms)
{
	static const struct {
		const char *unit;
		double ms;
	} units[] = { { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 }, { "d", 86400000 } };
	double total = 0;
	const char *p = s;

	if (!s || !*s)
		return -EINVAL;
	if (!strcmp(s, "0")) {
		*out_ms = 0;
		return 0;
	}
	/* One or more NUMBER UNIT groups: "1m30s". */
	while (*p) {
		char *end;
		double v;
		size_t i, best = ARRAY_SIZE(units);
		if (!(*p >= '0' && *p <= '9') && *p != '.')
			return -EINVAL;
		errno = 0;
		v = strtod(p, &end);
		if (errno || end == p || v < 0 || !isfinite(v))
			return -EINVAL;
		p = end;
		for (i = 0; i < ARRAY_SIZE(units); i++) {
			size_t n = strlen(units[i].unit);
			if (!strncmp(p, units[i].unit, n) && !(p[n] >= 'a' && p[n] <= 'z')) {
				best = i;
				p += n;
				break;
			}
		}
		if (best == ARRAY_SIZE(units))
			return -EINVAL;
		total += v * units[best].ms;
		if (total > 1e15)
			return -ERANGE;
	}
	*out_ms = (int64_t)llround(total);
	return 0;
}

void time_fmt_duration(int64_t ms, char *out, size_t n)
{
	if (ms < 0)
		ms = 0;
	if (ms < 1000)
		snprintf(out, n, "%lldms", (long long)ms);
	else if (ms < 60000)
		snprintf(out, n, "%.1fs", (double)ms / 1000.0);
	else if (ms < 3600000)
		snprintf(out, n, "%lldm%llds", (long long)(ms / 60000), (long long)(ms / 1000 % 60));
	else if (ms < 86400000)
		snprintf(out, n, "%lldh%lldm", (long long)(ms / 3600000), (long long)(ms / 60000 % 60));
	else
		snprintf(out, n, "%lldd", (long long)(ms / 86400000));
}

void time_fmt_rfc3339(int64_t unix_s, char *out, size_t n)
{
	time_t t = (time_t)unix_s;
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void time_deadline_ms(int64_t ms, struct timespec *out)
{
	int64_t t = time_now_ns() + ms * 1000000;
	out->tv_sec = (time_t)(t / 1000000000);
	out->tv_nsec = (long)(t % 1000000000);
}
