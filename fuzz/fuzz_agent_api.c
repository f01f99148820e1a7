/* fuzz_agent_api: the agent API's request-body parsers on arbitrary bytes must never crash or
 * leak; what they accept must hold their documented bounds. The first byte picks the parser
 * (start, probe, timeout, proxy, check, the query of an object part), the rest is the body. */
#include "agent/agent-internal.h"
#include "release/release.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct err e;
	const char *body;
	size_t n;

	if (size < 1)
		return 0;
	body = (const char *)data + 1;
	n = size - 1;
	switch (data[0] % 6) {
	case 0: {
		struct start_req r;
		if (agent_parse_start(body, n, &r, &e) == 0) {
			if (r.count < 1 || r.count > AGENT_MAX_COUNT || strlen(r.release) != HASH_ID_LEN ||
			    json_object_size(r.env) > AGENT_MAX_ENV || r.stop_signal <= 0 ||
			    r.n_reserved > AGENT_MAX_RESERVED)
				abort();
			for (size_t i = 0; i < r.n_reserved; i++)
				if (r.reserved[i] < 1 || r.reserved[i] > 65535)
					abort();
			start_req_done(&r);
		} else if (!e.msg[0]) {
			abort();
		}
		break;
	}
	case 1: {
		struct probe_req p;
		if (agent_parse_probe(body, n, &p, &e) == 0) {
			if (p.timeout_ms < 1 || p.timeout_ms > 60000 || (p.http && p.http[0] != '/'))
				abort();
			free(p.http);
		}
		break;
	}
	case 3: {
		struct proxy_req p;
		if (agent_parse_proxy(body, n, &p, &e) == 0) {
			if (!p.listen[0] || !json_is_array(p.upstreams) ||
			    json_array_size(p.upstreams) > AGENT_PROXY_UPS_MAX)
				abort();
			proxy_req_done(&p);
		} else if (!e.msg[0]) {
			abort();
		}
		break;
	}
	case 5: {
		char *q = strndup(body, n);
		int64_t off, sz;
		int r = q ? objstore_parse_part_query(q, &off, &sz, &e) : 0;
		if (r == 1 && (off < 0 || sz < 1 || off >= sz || sz > OBJSTORE_PART_TOTAL_MAX))
			abort();
		if (r == 0 && (off != -1 || sz != -1))
			abort();
		if (r < 0 && !e.msg[0])
			abort();
		free(q);
		break;
	}
	case 4: {
		struct check_req c;
		if (agent_parse_check(body, n, &c, &e) == 0) {
			if (!c.method || !c.path || c.path[0] != '/' || c.timeout_ms < 1 ||
			    c.expect_status < 100 || c.expect_status > 599)
				abort();
			check_req_done(&c);
		} else if (!e.msg[0]) {
			abort();
		}
		break;
	}
	default: {
		int64_t t;
		if (agent_parse_timeout(body, n, 2000, &t, &e) == 0 && t < 0)
			abort();
		break;
	}
	}
	return 0;
}
