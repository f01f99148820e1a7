/* fuzz_api_body: the controller's request-body parsers on arbitrary bytes (deploy, rollback
 * and emergency-stop bodies) must never crash or leak; what it accepts is bounded, NUL-free, and parses to the
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
	char reason[STORE_REASON_MAX], by[STORE_OWNER_MAX];
	struct err e;
	if (api_parse_stop_body((const char *)data, size, reason, by, &e) == 0 &&
	    (strlen(reason) >= sizeof(reason) || strlen(by) >= sizeof(by))) {
		fprintf(stderr, "fuzz_api_body: accepted stop body out of bounds\n");
		abort();
	}
	return 0;
}
