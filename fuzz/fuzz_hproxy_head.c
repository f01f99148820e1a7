/* fuzz_hproxy_head: the reverse proxy's request-head parser/rewriter on arbitrary bytes: no
 * crash, a head length within the input and the limit, and a rewritten head with CRLF line
 * ends and no obs-fold that parses again to the same request (method, framing). */
#include "proxy/proxy.h"

#include <http_parser.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf out, again;
	struct hproxy_req_info info, info2;
	size_t max = 4096;

	buf_init(&out, max + 1024);
	buf_init(&again, 2 * max + 2048);
	int r = hproxy_parse_head((const char *)data, size, max, "192.0.2.1", &out, &info);
	if (r > 0) {
		if ((size_t)r > size || (size_t)r > max || out.len == 0)
			abort();
		/* what goes upstream is unambiguous: CRLF line ends, no obs-fold */
		for (size_t i = 0; i < out.len; i++)
			if (out.data[i] == '\n' && (i == 0 || out.data[i - 1] != '\r' ||
			    (i + 1 < out.len && (out.data[i + 1] == ' ' || out.data[i + 1] == '\t'))))
				abort();
		/* what goes upstream is itself one valid head of the same request */
		int r2 = hproxy_parse_head(out.data, out.len, 2 * max + 1024, NULL, &again, &info2);
		/* -431 again only when the added X-Forwarded-* fields pass the field count limit */
		if (r2 != -431 && (r2 != (int)out.len || info2.method != info.method ||
		    info2.chunked != info.chunked || info2.content_length != info.content_length ||
		    info2.upgrade != info.upgrade))
			abort();
	} else if (r < 0) {
		if ((r != -400 && r != -431) || out.len != 0)
			abort();
	}
	buf_done(&out);
	buf_done(&again);
	return 0;
}
