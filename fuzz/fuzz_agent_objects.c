/* fuzz_agent_objects: the body of the agent's POST /v1/objects/missing on arbitrary bytes must
 * never crash or leak; what it accepts holds its documented bounds (at most AGENT_DIGESTS_MAX
 * digests, each 64 lowercase hex digits). */
#include "agent/agent-internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct digest_list l;
	struct err e = {0};

	if (agent_parse_digests((const char *)data, size, &l, &e) == 0) {
		if (l.n > AGENT_DIGESTS_MAX)
			abort();
		for (size_t i = 0; i < l.n; i++)
			if (strlen(l.hex[i]) != HASH_HEX_LEN ||
			    !hash_is_hex(l.hex[i], HASH_HEX_LEN))
				abort();
		digest_list_done(&l);
	} else if (!e.msg[0]) {
		abort();
	}
	return 0;
}
