/* load: reading stored releases back — the manifest by id (digest checked) and verify, which
 * re-hashes every object a release refers to and names each one that is missing or corrupt. */
#include "release/release-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int release_id_hex(const char *id, const char **out_hex, struct err *e)
{
	const char *hex = str_starts(id, "sha256:") ? id + 7 : id;
	if (strlen(hex) != HASH_HEX_LEN || !hash_is_hex(hex, HASH_HEX_LEN))
		return err_set(e, CAIRN_EINPUT, "'%s' is not a release id (sha256:<64 hex>)", id);
	*out_hex = hex;
	return 0;
}

int release_load(const struct objstore *os, const char *id, struct manifest **out, struct err *e)
{
	struct buf b;
	const char *hex;
	int r;

	if ((r = release_id_hex(id, &hex, e)) < 0)
		return r;
	buf_init(&b, MANIFEST_MAX_BYTES);
	r = objstore_read(os, hex, &b, e);
	if (r == 0)
		r = manifest_parse(buf_str(&b), b.len, out, e);
	if (r < 0)
		err_prefix(e, "release sha256:%.12s", hex);
	buf_done(&b);
	return r;
}

int release_verify(const struct objstore *os, const char *id, release_verify_cb cb, void *ctx,
		   struct err *e)
{
	struct manifest *m = NULL;
	size_t bad = 0, checked = 0;
	int r;

	if ((r = release_load(os, id, &m, e)) < 0) {
		if (cb)
			cb(ctx, "(manifest)", e->msg);
		return r;
	}
	for (size_t i = 0; i < m->n_entries; i++) {
		const struct manifest_entry *en = &m->entries[i];
		struct err oe;
		if (en->type != MANIFEST_FILE)
			continue;
		checked++;
		if (objstore_verify(os, en->digest, &oe) < 0) {
			bad++;
			if (cb)
				cb(ctx, en->path, oe.msg);
		}
	}
	manifest_free(m);
	if (bad)
		return err_set(e, CAIRN_ECORRUPT, "%zu of %zu files of release %.19s are corrupt or missing",
			       bad, checked, id);
	return 0;
}
