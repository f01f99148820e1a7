/* fuzz_api_body: the controller's request-body parser on arbitrary bytes (deploy and rollback
 * bodies) must never crash or leak; what it accepts is bounded, NUL-free, and parses to the
 * same fingerprint every time. */
#include "controller/controller.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	for (int rollback = 0; rollback < 2; rollback++) {
		struct api_deploy_body a, b;
		struct err e;
		if (api_parse_deploy_body((const char *)data, size, rollback, &a, &e) < 0)
			continue;
		if (strlen(a.release) > API_REF_MAX || strlen(a.fingerprint) != HASH_HEX_LEN) {
			fprintf(stderr, "fuzz_api_body: accepted body out of bounds\n");
			abort();
		}
		if (api_parse_deploy_body((const char *)data, size, rollback, &b, &e) < 0 ||
		    strcmp(a.fingerprint, b.fingerprint)) {
			fprintf(stderr, "fuzz_api_body: fingerprint is not stable\n");
			abort();
		}
	}
	return 0;
}
