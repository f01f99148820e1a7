/* cache: the build cache — which digest a file had at a given (dev, inode, size, mtime,
 * ctime), so an unchanged file is never re-hashed. One text file per source tree under
 * <state>/cache/. A damaged cache is ignored (it only costs time), never trusted partially. */
#include "release/release-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_MAGIC "cairn-build-cache 1"
#define CACHE_MAX_BYTES (512u * 1024 * 1024)
/* Files whose timestamps are this close to the moment they were stat'ed are not cached: a
 * second change within the same file-system timestamp tick (a jiffy, ≤ 10 ms) would leave
 * the stat unchanged and be invisible ("racy git"). */
#define CACHE_RACY_NS (100LL * 1000000)

static int64_t ts_ns(struct timespec t)
{
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

void bcache_done(struct bcache *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->v[i].path);
	free(c->v);
	memset(c, 0, sizeof(*c));
}

static int cmp_ce(const void *a, const void *b)
{
	return strcmp(((const struct bcache_entry *)a)->path, ((const struct bcache_entry *)b)->path);
}

int bcache_load(const char *file, struct bcache *c)
{
	struct buf b;
	char *line, *save = NULL;
	struct err e;

	memset(c, 0, sizeof(*c));
	buf_init(&b, CACHE_MAX_BYTES);
	if (fs_read_file(file, &b, &e) < 0 || !b.data || !str_starts(b.data, CACHE_MAGIC "\n")) {
		buf_done(&b);
		return 0;
	}
	for (line = strtok_r(b.data + strlen(CACHE_MAGIC) + 1, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		struct bcache_entry en = { 0 };
		unsigned long long dev, ino;
		long long size, mt, ct;
		char digest[HASH_HEX_LEN + 1];
		int off = 0;
		if (sscanf(line, "%llu %llu %lld %lld %lld %64s %n", &dev, &ino, &size, &mt, &ct, digest,
			   &off) != 6 ||
		    off <= 0 || !line[off] || strlen(digest) != HASH_HEX_LEN ||
		    !hash_is_hex(digest, HASH_HEX_LEN)) {
			bcache_done(c); /* damaged: start over */
			break;
		}
		en.dev = dev;
		en.ino = ino;
		en.size = size;
		en.mtime_ns = mt;
		en.ctime_ns = ct;
		memcpy(en.digest, digest, sizeof(digest));
		en.path = xstrdup(line + off);
		if (c->n == c->cap) {
			c->cap = c->cap ? c->cap * 2 : 1024;
			c->v = xrealloc(c->v, c->cap * sizeof(*c->v));
		}
		c->v[c->n++] = en;
	}
	buf_done(&b);
	if (c->n > 1)
		qsort(c->v, c->n, sizeof(*c->v), cmp_ce);
	return 0;
}

const char *bcache_lookup(const struct bcache *c, const char *path, const struct stat *st)
{
	struct bcache_entry key = { .path = (char *)path };
	const struct bcache_entry *en =
		c->n ? bsearch(&key, c->v, c->n, sizeof(*c->v), cmp_ce) : NULL;

	if (!en || en->dev != (uint64_t)st->st_dev || en->ino != (uint64_t)st->st_ino ||
	    en->size != (int64_t)st->st_size || en->mtime_ns != ts_ns(st->st_mtim) ||
	    en->ctime_ns != ts_ns(st->st_ctim))
		return NULL;
	return en->digest;
}

int bcache_save(const char *file, const struct walk *w, int64_t walked_at_ns, struct err *e)
{
	struct buf b;
	int64_t now = walked_at_ns;
	int r;

	buf_init(&b, CACHE_MAX_BYTES);
	buf_adds(&b, CACHE_MAGIC "\n");
	for (size_t i = 0; i < w->n; i++) {
		const struct walk_entry *en = &w->v[i];
		if (en->type != MANIFEST_FILE || !en->digest[0] || strchr(en->path, '\n'))
			continue;
		if (ts_ns(en->st.st_mtim) > now - CACHE_RACY_NS ||
		    ts_ns(en->st.st_ctim) > now - CACHE_RACY_NS)
			continue;
		if (buf_addf(&b, "%llu %llu %lld %lld %lld %s %s\n", (unsigned long long)en->st.st_dev,
			     (unsigned long long)en->st.st_ino, (long long)en->st.st_size,
			     (long long)ts_ns(en->st.st_mtim), (long long)ts_ns(en->st.st_ctim), en->digest,
			     en->path) < 0)
			break; /* a cache too large to keep: keep what fits */
	}
	r = fs_write_replace(file, b.data, b.len, 0600, e);
	buf_done(&b);
	return r;
}
