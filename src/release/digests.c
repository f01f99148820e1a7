/* digests: the one parser of a list of object digests, {"digests":[hex…]} — the body of
 * POST /v1/objects/missing on the agent's API and on the controller's alike. Pure: outside
 * bytes in, a bounded array out or a clear error; no I/O, no HTTP (the callers map
 * E2BIG to 413 and CAIRN_EINPUT to 400). Fuzzed by fuzz_agent_objects and fuzz_api_objects. */
#include "release/release.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

int objstore_parse_digests(const char *p, size_t n, struct objstore_digests *out, struct err *e)
{
	struct objstore_digests d = {NULL, 0};
	json_error_t je;
	json_t *root, *arr, *v;
	const char *k;
	size_t i;
	int r = 0;

	if (n > OBJSTORE_DIGESTS_BODY_MAX)
		return err_set(e, E2BIG, "body is larger than %zu bytes",
			       (size_t)OBJSTORE_DIGESTS_BODY_MAX);
	if (!(root = json_loadb(p, n, JSON_REJECT_DUPLICATES, &je)))
		return err_set(e, CAIRN_EINPUT, "body is not JSON: %s (line %d, column %d)",
			       je.text, je.line, je.column);
	if (!json_is_object(root)) {
		r = err_set(e, CAIRN_EINPUT, "body must be a JSON object {\"digests\":[…]}");
		goto fail;
	}
	json_object_foreach(root, k, v)
	{
		if (strcmp(k, "digests")) {
			r = err_set(e, CAIRN_EINPUT,
				    "body: unknown key \"%.64s\"; expected \"digests\"", k);
			goto fail;
		}
	}
	arr = json_object_get(root, "digests");
	if (!json_is_array(arr)) {
		r = err_set(e, CAIRN_EINPUT,
			    "body: \"digests\" must be an array of object digests (SHA-256, 64 "
			    "lowercase hex characters)");
		goto fail;
	}
	if (json_array_size(arr) > OBJSTORE_DIGESTS_MAX) {
		r = err_set(e, E2BIG, "body: %zu digests; ask about at most %d per request",
			    json_array_size(arr), OBJSTORE_DIGESTS_MAX);
		goto fail;
	}
	if (json_array_size(arr) && !(d.v = calloc(json_array_size(arr), sizeof(*d.v)))) {
		r = err_set(e, ENOMEM, "out of memory");
		goto fail;
	}
	json_array_foreach(arr, i, v)
	{
		const char *s = json_string_value(v);
		if (!s || json_string_length(v) != HASH_HEX_LEN || !hash_is_hex(s, HASH_HEX_LEN)) {
			r = err_set(e, CAIRN_EINPUT,
				    "body: digests[%zu] is not an object digest (SHA-256, 64 "
				    "lowercase hex characters)",
				    i);
			goto fail;
		}
		memcpy(d.v[d.n++], s, HASH_HEX_LEN + 1);
	}
	*out = d;
	d.v = NULL;
fail:
	free(d.v);
	json_decref(root);
	return r;
}

void objstore_digests_done(struct objstore_digests *d)
{
	free(d->v);
	d->v = NULL;
	d->n = 0;
}
