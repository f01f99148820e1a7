/* release-internal: helpers shared between the files of release/, never included from
 * outside the module. */
#ifndef CAIRN_RELEASE_INTERNAL_H
#define CAIRN_RELEASE_INTERNAL_H

#include "release/release.h"

/* "sha256:<hex>" or "<hex>" → pointer to the 64 hex digits inside id. */
int release_id_hex(const char *id, const char **out_hex, struct err *e);

#include <jansson.h>
#include <sys/stat.h>

/* ---- walk.c ---- */
struct walk_entry {
	char *path;   /* owned; tree-relative */
	char type;    /* enum manifest_type */
	unsigned mode;
	struct stat st;
	char *target; /* owned; links only */
	char digest[HASH_HEX_LEN + 1]; /* files: filled by the builder */
};
struct walk {
	struct walk_entry *v; /* owned array, sorted by path (bytewise) */
	size_t n, cap;
};
/* Walks root (not following symlinks), skipping `exclude` patterns: a pattern without '/'
 * matches a name at any depth (fnmatch), one with '/' matches the tree-relative path. */
int walk_tree(const char *root, const struct strv *exclude, struct walk *out, struct err *e);
void walk_done(struct walk *w);
bool walk_excluded(const struct strv *exclude, const char *relpath, const char *name);

/* ---- cache.c ---- */
struct bcache_entry {
	char *path; /* owned */
	uint64_t dev, ino;
	int64_t size, mtime_ns, ctime_ns;
	char digest[HASH_HEX_LEN + 1];
};
struct bcache {
	struct bcache_entry *v; /* owned, sorted by path */
	size_t n, cap;
};
/* A missing or damaged cache loads as empty. */
int bcache_load(const char *file, struct bcache *c);
void bcache_done(struct bcache *c);
/* The cached digest of path if st still matches what was recorded, else NULL. */
const char *bcache_lookup(const struct bcache *c, const char *path, const struct stat *st);
/* Writes the digests of w's files, skipping ones whose timestamps are within 100 ms of
 * walked_at_ns (a realtime clock reading taken after w was walked). */
int bcache_save(const char *file, const struct walk *w, int64_t walked_at_ns, struct err *e);

/* ---- copy.c ---- */
/* Copies w's entries from src_root into the existing, empty dst_root; out_copied[i] receives
 * the stat of each copied file right after copying (zeroed for other entries). */
int tree_copy(const char *src_root, const char *dst_root, const struct walk *w,
	      struct stat *out_copied, struct err *e);

/* ---- textdiff.c ---- */
/* Appends unified-diff hunks (no ---/+++ header) of a → b to out. Returns 0, or -1 when the
 * texts are too different to diff within the bound (nothing appended). */
int textdiff_unified(const char *a, size_t an, const char *b, size_t bn, int context,
		     struct buf *out);
/* git's heuristic: a NUL byte in the first 8000 bytes. */
bool textdiff_is_binary(const char *p, size_t n);

/* ---- diff-text.c ---- */
/* Renders release_diff's JSON result for people. */
int diff_render_text(json_t *root, bool color, struct buf *out);

#endif
