/* fuzz_api_head_scan: the controller's request-head follower (conns.c feeds it every client's
 * bytes before evhttp parses them) on arbitrary bytes, fed in pieces whose sizes come from the
 * input: no crash, it never uses more than it was given, what it keeps is within its bounds,
 * and feeding in pieces gives the same answer as feeding at once. */
#include "controller/controller.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char tok[] = "0123456789abcdef0123456789abcdef";
	struct api_head_scan a, b;
	if (size < 1)
		return 0;
	size_t step = 1 + data[0] % 17;
	const char *p = (const char *)data + 1;
	size_t n = size - 1, used = 0;
	api_head_scan_reset(&a);
	api_head_scan_reset(&b);
	size_t whole = api_head_scan(&a, p, n, tok);
	for (size_t i = 0; i < n && !b.done; i += step) {
		size_t k = n - i < step ? n - i : step;
		size_t u = api_head_scan(&b, p + i, k, tok);
		if (u > k)
			abort();
		used += u;
	}
	if (whole > n || a.done != b.done || a.auth_ok != b.auth_ok || (a.done && whole != used) ||
	    a.line_n > API_HEAD_LINE_KEEP || a.reqline_n > API_HEAD_REQLINE_KEEP ||
	    a.reqline_n != b.reqline_n || memcmp(a.reqline, b.reqline, a.reqline_n))
		abort();
	return 0;
}
