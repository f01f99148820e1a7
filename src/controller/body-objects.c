/* controller/body-objects: parsing of the release registration body {"id","tag"} (the
 * missing-list body {"digests":[hex…]} is objstore_parse_digests, shared with the agent).
 * Pure functions over outside bytes with bounds; they never crash on any input
 * (fuzz/fuzz_api_objects.c). */
#include "controller/controller.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

bool api_digest_ok(const char *s, size_t n)
{
	return n == HASH_HEX_LEN && hash_is_hex(s, n);
}

static int load_object(const char *p, size_t n, size_t max, json_t **out, struct err *e)
{
	json_error_t je;
	json_t *root;
	if (n > max)
		return err_set(e, E2BIG, "body is larger than %zu bytes", max);
	if (!(root = json_loadb(p, n, JSON_REJECT_DUPLICATES, &je)))
		return err_set(e, CAIRN_EINPUT, "body is not JSON: %s (line %d, column %d)",
			       je.text, je.line, je.column);
	if (!json_is_object(root)) {
		json_decref(root);
		return err_set(e, CAIRN_EINPUT, "body must be a JSON object");
	}
	*out = root;
	return 0;
}

static int only_keys(json_t *root, const char *const *keys, size_t n_keys, const char *expected,
		     struct err *e)
{
	const char *k;
	json_t *v;
	json_object_foreach(root, k, v)
	{
		bool known = false;
		for (size_t i = 0; i < n_keys; i++)
			known |= !strcmp(k, keys[i]);
		if (!known)
			return err_set(e, CAIRN_EINPUT, "body: unknown key \"%.64s\"; expected %s",
				       k, expected);
	}
	return 0;
}

int api_parse_release_body(const char *p, size_t n, struct api_release_body *out, struct err *e)
{
	static const char *const keys[] = {"id", "tag"};
	struct api_release_body b;
	json_t *root = NULL, *v;
	int r;

	memset(&b, 0, sizeof(b));
	if ((r = load_object(p, n, API_BODY_MAX, &root, e)) < 0)
		return r;
	if ((r = only_keys(root, keys, ARRAY_SIZE(keys), "\"id\", \"tag\"", e)) < 0)
		goto fail;
	v = json_object_get(root, "id");
	const char *id = json_string_value(v);
	size_t idn = id ? json_string_length(v) : 0;
	if (id && idn > 7 && !strncmp(id, "sha256:", 7)) {
		id += 7;
		idn -= 7;
	}
	if (!id || !api_digest_ok(id, idn)) {
		r = err_set(
		    e, CAIRN_EINPUT,
		    "body: \"id\" must be the release id (sha256:HEX, the manifest's digest)");
		goto fail;
	}
	memcpy(b.hex, id, HASH_HEX_LEN);
	if ((v = json_object_get(root, "tag")) && !json_is_null(v)) {
		const char *t = json_string_value(v);
		if (!t) {
			r = err_set(e, CAIRN_EINPUT, "body: \"tag\" must be a string or null");
			goto fail;
		}
		if ((r = name_tag_check(t, json_string_length(v), e)) < 0) {
			err_prefix(e, "body: \"tag\"");
			goto fail;
		}
		memcpy(b.tag, t, json_string_length(v) + 1);
	}
	*out = b;
fail:
	json_decref(root);
	return r;
}
