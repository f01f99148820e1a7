/* fuzz_api_objects: the controller's object-upload body parsers on arbitrary bytes — the
 * missing-list request {"digests":[hex…]} (objstore_parse_digests, shared with the agent) and
 * the release registration {"id","tag"} — must never crash or leak; what they accept is
 * bounded, lowercase hex, and parses the same twice. */
#include "controller/controller.h"
#include "release/release.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_digests(const char *p, size_t n)
{
	struct objstore_digests a, b;
	struct err e;
	if (objstore_parse_digests(p, n, &a, &e) < 0)
		return;
	if (a.n > OBJSTORE_DIGESTS_MAX) {
		fprintf(stderr, "fuzz_api_objects: %zu digests accepted\n", a.n);
		abort();
	}
	for (size_t i = 0; i < a.n; i++)
		if (strlen(a.v[i]) != HASH_HEX_LEN || !api_digest_ok(a.v[i], HASH_HEX_LEN)) {
			fprintf(stderr, "fuzz_api_objects: accepted a digest that is not hex\n");
			abort();
		}
	if (objstore_parse_digests(p, n, &b, &e) < 0 || a.n != b.n ||
	    (a.n && memcmp(a.v, b.v, a.n * sizeof(*a.v)))) {
		fprintf(stderr, "fuzz_api_objects: digests parse is not stable\n");
		abort();
	}
	objstore_digests_done(&a);
	objstore_digests_done(&b);
}

static void check_release(const char *p, size_t n)
{
	struct api_release_body r;
	struct err e;
	if (api_parse_release_body(p, n, &r, &e) < 0)
		return;
	size_t tn = strlen(r.tag);
	if (!api_digest_ok(r.hex, strlen(r.hex)) || tn > STORE_TAG_MAX || strpbrk(r.tag, "/: ")) {
		fprintf(stderr, "fuzz_api_objects: accepted release body out of bounds\n");
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_digests((const char *)data, size);
	check_release((const char *)data, size);
	return 0;
}
