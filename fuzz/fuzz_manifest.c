/* fuzz_manifest: manifest_parse on arbitrary bytes must never crash or leak; whatever it
 * accepts must serialise, parse again, and serialise to the same canonical bytes. */
#include "release/release.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct manifest *m = NULL, *m2 = NULL;
	struct buf b, b2;
	struct err e;

	if (manifest_parse((const char *)data, size, &m, &e) < 0)
		return 0;
	buf_init(&b, MANIFEST_MAX_BYTES);
	buf_init(&b2, MANIFEST_MAX_BYTES);
	if (manifest_serialize(m, &b) < 0) {
		fprintf(stderr, "fuzz_manifest: a parsed manifest does not serialise\n");
		abort();
	}
	if (manifest_parse(b.data, b.len, &m2, &e) < 0) {
		fprintf(stderr, "fuzz_manifest: serialised manifest does not parse: %s\n%s\n",
			e.msg, buf_str(&b));
		abort();
	}
	if (manifest_serialize(m2, &b2) < 0 || b.len != b2.len || memcmp(b.data, b2.data, b.len)) {
		fprintf(stderr, "fuzz_manifest: serialisation is not stable\n");
		abort();
	}
	buf_done(&b);
	buf_done(&b2);
	manifest_free(m);
	manifest_free(m2);
	return 0;
}
