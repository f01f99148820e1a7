/* fuzz_agent_objects: the body of the agent's POST /v1/objects/missing — parsed by the shared
 * objstore_parse_digests (the controller's missing-list parser too) — on arbitrary bytes must
 * never crash or leak; what it accepts holds its documented bounds (at most
 * OBJSTORE_DIGESTS_MAX digests, each 64 lowercase hex digits); a refusal says why, with the
 * code the agent maps to 400 or 413. */
#include "release/release.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct objstore_digests l;
	struct err e = {0};

	if (objstore_parse_digests((const char *)data, size, &l, &e) == 0) {
		if (l.n > OBJSTORE_DIGESTS_MAX)
			abort();
		for (size_t i = 0; i < l.n; i++)
			if (strlen(l.v[i]) != HASH_HEX_LEN || !hash_is_hex(l.v[i], HASH_HEX_LEN))
				abort();
		objstore_digests_done(&l);
	} else if (!e.msg[0] || (e.code != CAIRN_EINPUT && e.code != E2BIG && e.code != ENOMEM)) {
		abort();
	}
	return 0;
}
