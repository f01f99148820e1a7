/* release: immutable, content-addressed releases — the object store, the canonical manifest,
 * build, verify, export/import, the dependency finder, pins and diff.
 * A release's bytes never change once stored; everything that reads them checks digests.
 * Nothing here talks HTTP or keeps job state; release metadata rows live in store/. */
#ifndef CAIRN_RELEASE_H
#define CAIRN_RELEASE_H

#include "base/base.h"

struct config;
struct store;

/* ---- object store ------------------------------------------------------------------------
 * Files under <state>/objects/<2 hex>/<62 hex>, read-only (0444), written atomically (temp
 * file + rename). Durability is batched: callers call objstore_sync() once before they
 * record anything that refers to new objects. */
struct objstore;

int objstore_open(const char *state_dir, struct objstore **out, struct err *e);
void objstore_free(struct objstore *os);
/* malloc'd path of an object (whether or not it exists) */
char *objstore_path(const struct objstore *os, const char *hex);
bool objstore_has(const struct objstore *os, const char *hex);
/* Copies a file into the store. When known_hex is given (from the build cache) the object is
 * only copied if missing and the bytes are not re-hashed; else they are hashed while copied.
 * out_hex receives the digest; *out_added is true when a new object was written. */
int objstore_put_file(struct objstore *os, const char *src, const char *known_hex, char *out_hex,
		      bool *out_added, struct err *e);
int objstore_put_mem(struct objstore *os, const void *p, size_t n, char *out_hex, struct err *e);
/* Reads an object and checks its digest (CAIRN_ECORRUPT on mismatch). */
int objstore_read(const struct objstore *os, const char *hex, struct buf *b, struct err *e);
/* Re-hashes one object: 0 if intact, CAIRN_ECORRUPT / ENOENT with e set otherwise. */
int objstore_verify(const struct objstore *os, const char *hex, struct err *e);
/* Staging for writers that must write nothing on failure (import): a temp file in the store's
 * tmp dir; commit renames it into place under its digest (or drops it when the object exists
 * and is intact; a stored copy whose bytes no longer match is replaced — the caller has checked
 * its own; *out_added says whether ours went in, may be NULL); on failure the caller unlinks it. */
int objstore_tmp_open(struct objstore *os, int *out_fd, char **out_path, struct err *e);
/* <state>/tmp/KIND-<owner>-XXXXXX, a scratch directory named after this process (tmpclean.c). */
char *objstore_tmp_mkdir(struct objstore *os, const char *kind, struct err *e);
/* Sweeps <state>/tmp of what killed processes left (tmpclean.c): temp objects and scratch dirs
 * whose owner (pid + start time) is gone — and the processes still running inside such a dir
 * (their process groups get SIGKILL) — and part files not written for part_ttl_s that no sender
 * holds. Safe while other processes use the directory. */
#define OBJSTORE_PART_TTL_S (24 * 3600)
struct objstore_clean {
	size_t removed; /* files and directories */
	int64_t bytes;
	size_t killed; /* processes */
};
int objstore_tmp_clean(struct objstore *os, int64_t part_ttl_s, struct objstore_clean *out);
/* The same with OBJSTORE_PART_TTL_S, and one info line from `who` when it removed anything
 * (for the start of serve, agent, build and import). */
void objstore_tmp_clean_logged(struct objstore *os, const char *who);
int objstore_tmp_commit(struct objstore *os, const char *tmp_path, const char *hex,
			bool *out_added, struct err *e);
/* Resumable upload of an object too big for one request: writes n bytes at offset of an
 * object of size bytes into <state>/tmp/part-<hex>. offset 0 starts over; any other offset must
 * equal what the part file holds (else EEXIST with *out_received = what it holds, so the sender
 * resumes there; EBUSY while another sender writes the same object). When the last byte arrives
 * the whole file is hashed: a mismatch drops it (CAIRN_ECORRUPT), a match stores it
 * (*out_added). Returns 1 when the object is in the store, 0 when more parts are due. */
int objstore_part_put(struct objstore *os, const char *hex, int64_t offset, int64_t size,
		      const void *p, size_t n, int64_t *out_received, bool *out_added,
		      struct err *e);
#define OBJSTORE_PART_TOTAL_MAX (1LL << 40) /* an object sent in parts: at most 1 TiB */
/* The query of a part upload, "offset=N&size=T" (both, once each, nothing else): 1 and the
 * numbers; 0 with both -1 for no query (a whole object); CAIRN_EINPUT otherwise. */
int objstore_parse_part_query(const char *q, int64_t *out_offset, int64_t *out_size,
			      struct err *e);
/* Makes everything written so far durable (syncfs on the store's file system). */
int objstore_sync(struct objstore *os);
const char *objstore_state_dir(const struct objstore *os);

/* ---- digest lists (digests.c) --------------------------------------------------------------
 * {"digests":[hex…]}: the body of POST /v1/objects/missing on the agent's API and the
 * controller's alike — 0..OBJSTORE_DIGESTS_MAX lowercase hex SHA-256 strings (duplicates
 * allowed, kept in body order), no other key. One parser, one set of limits and messages for
 * both: too many digests or a body over OBJSTORE_DIGESTS_BODY_MAX is E2BIG (413), anything
 * else CAIRN_EINPUT (400). It lives here, beside the store the list asks about, because the
 * agent and the controller both already depend on release/ for objects (store/ is the state
 * database and must not parse API bodies). */
#define OBJSTORE_DIGESTS_MAX 100000
/* OBJSTORE_DIGESTS_MAX quoted digests with separators, plus room for spaces (6.6 MiB) */
#define OBJSTORE_DIGESTS_BODY_MAX (OBJSTORE_DIGESTS_MAX * (HASH_HEX_LEN + 4) + 64 * 1024)

struct objstore_digests {
	char (*v)[HASH_HEX_LEN + 1]; /* owned array of n lowercase hex digests, in body order */
	size_t n;
};
/* On success *out is filled (free with objstore_digests_done); on failure it is untouched. */
int objstore_parse_digests(const char *p, size_t n, struct objstore_digests *out, struct err *e);
void objstore_digests_done(struct objstore_digests *d);

/* ---- dependencies ------------------------------------------------------------------------ */

struct dep {
	char *ecosystem; /* owned; "python", "node", "ruby", "go", "rust", "docker" */
	char *name;      /* owned */
	char *version;   /* owned; for docker: tag and/or @sha256 digest */
	char *source;    /* owned; tree-relative file it was found in */
};

struct dep_list {
	struct dep *v; /* owned array */
	size_t n, cap;
};

void dep_list_done(struct dep_list *l);
void dep_list_add(struct dep_list *l, const char *eco, const char *name, const char *version,
		  const char *source);
/* Sorts by (ecosystem, name, version, source) and drops exact duplicates. */
void dep_list_sort(struct dep_list *l);
/* Finds dependency versions in a tree: `files` are tree-relative paths of regular files
 * (sorted), `root` the directory they are under. Unreadable or malformed metadata is skipped
 * (it is the app's file, not an error of the build). */
int deps_scan(const char *root, const struct strv *files, struct dep_list *out, struct err *e);
/* The same for one file's bytes (`name` is its tree-relative path, which decides the format
 * and becomes the source). Returns 1 when the name is a known metadata file, else 0. */
int deps_scan_text(const char *name, const char *data, size_t n, struct dep_list *out);

/* ---- pins -------------------------------------------------------------------------------- */

struct pin_finding {
	char *file;    /* owned; path relative to the scanned directory */
	int line, col; /* 1-based */
	char *ecosystem; /* owned */
	char *spec;    /* owned; the offending text, e.g. "eventlet>=0.20" */
	char *problem; /* owned; e.g. "lower bound only: any newer version may be installed" */
	char *fix;     /* owned; e.g. "pin an exact version: eventlet==0.20.0" */
};

struct pin_report {
	struct pin_finding *v; /* owned array, sorted by file, line, col */
	size_t n, cap;
	size_t files_scanned;
};

void pin_report_done(struct pin_report *r);
/* Scans dir (recursively, skipping `exclude` names and node_modules/.git/vendored site-packages)
 * for dependency specifications and reports every unpinned or floating one. On success *out
 * is replaced (it need not be initialised); a missing dir is CAIRN_EINPUT. See docs/pins.md. */
int pins_scan(const char *dir, const struct strv *exclude, struct pin_report *out, struct err *e);
/* One file's bytes, as if it were found at `name` (which decides the format) with no
 * lockfile beside it and nothing installed. Appends to out (files_scanned counts it) and
 * returns 1 when the name is a known manifest, else 0. */
int pins_scan_text(const char *name, const char *data, size_t n, struct pin_report *out);
/* Human form: "FILE:LINE:COL: unpinned: SPEC — PROBLEM\n    fix: FIX" lines, then a summary. */
void pins_print(const struct pin_report *r, FILE *out);

/* ---- manifest ------------------------------------------------------------------------------
 * The canonical description of a release. Serialised as compact JSON with sorted keys and
 * files sorted by path (bytewise), so the same inputs always give the same bytes, and the
 * release id is "sha256:" + the SHA-256 of those bytes. */

#define MANIFEST_MAX_BYTES (256u * 1024 * 1024)
#define MANIFEST_VERSION 1

enum manifest_type { MANIFEST_FILE = 'f', MANIFEST_DIR = 'd', MANIFEST_LINK = 'l' };

struct manifest_entry {
	char *path;  /* owned; relative, '/'-separated, no "." or ".." parts, no leading '/' */
	char type;   /* enum manifest_type */
	unsigned mode; /* permission bits (07777 & st_mode) for files and dirs; 0 for links */
	int64_t size;  /* files: bytes; links: strlen(target); dirs: 0 */
	char digest[HASH_HEX_LEN + 1]; /* files only: hex SHA-256 of the content */
	char *target; /* owned; links only: relative target that stays inside the tree */
};

struct manifest {
	char *app; /* owned */
	struct manifest_entry *entries; /* owned array, sorted by path */
	size_t n_entries;
	struct strv run_command;
	struct manifest_env {
		char **keys, **values; /* owned, sorted by key */
		size_t n;
	} run_env;
	int64_t stop_timeout_ms;
	char *run_user; /* owned; NULL: not set (then not serialised, so older ids hold) */
	struct dep_list deps;
};

void manifest_free(struct manifest *m);
/* Parses and validates manifest bytes (outside bytes: must never crash). */
int manifest_parse(const char *data, size_t n, struct manifest **out, struct err *e);
/* Canonical bytes into b. */
int manifest_serialize(const struct manifest *m, struct buf *b);
/* Validates entries: sorted unique safe paths, parents present as dirs, links stay inside. */
int manifest_validate(const struct manifest *m, struct err *e);
/* Is this relative link target, placed at `path`, inside the tree? */
bool manifest_link_inside(const char *path, const char *target);
const struct manifest_entry *manifest_find(const struct manifest *m, const char *path);

/* ---- releases ---------------------------------------------------------------------------- */

struct release_build_opts {
	const char *tag;    /* may be NULL */
	FILE *progress;     /* NULL for quiet */
};

struct release_build_result {
	char id[HASH_ID_LEN + 1];
	size_t n_files, n_new_objects, n_hashed;
	int64_t bytes;
	bool existed; /* the same release was already stored */
};

/* Runs build.command in a scratch copy (or walks the source when there is none), stores
 * objects and the manifest, records the release. With build.pins: require, unpinned
 * dependencies fail the build with the pins report in e (CAIRN_ECHECK). */
int release_build(const struct config *cfg, struct objstore *os, struct store *st,
		  const struct release_build_opts *o, struct release_build_result *out,
		  struct err *e);

/* Loads a stored release's manifest, checking the manifest's digest against the id. */
int release_load(const struct objstore *os, const char *id, struct manifest **out, struct err *e);

/* Re-hashes a release: every corrupt or missing object is reported through cb; returns
 * 0 when intact, CAIRN_ECORRUPT with a summary in e otherwise. */
typedef void (*release_verify_cb)(void *ctx, const char *path, const char *problem);
/* A materialised release dir (tree.c). The stamp (hex, HASH_HEX_LEN + 1) hashes every entry's
 * type, mode, size, inode and mtime and each dir's entry count: any change to the tree changes
 * it. The check re-hashes every file and reports (cb) each entry that differs, is missing, or
 * was added; -CAIRN_ECORRUPT when any does. */
int release_tree_stamp(const struct manifest *m, const char *dir, char *out, struct err *e);
int release_tree_check(const struct manifest *m, const char *dir, release_verify_cb cb,
		       void *ctx, struct err *e);
int release_verify(const struct objstore *os, const char *id, release_verify_cb cb, void *ctx,
		   struct err *e);

/* Writes a release as tar.zst: first "cairn-release/manifest.json", then every entry under
 * "files/" with its mode (symlinks as symlinks). The format is docs/archive.md: deterministic
 * (the same release always gives the same bytes); every object is checked against its digest
 * before its bytes are written (CAIRN_ECORRUPT naming the file otherwise). */
int release_export(const struct objstore *os, const char *id, int out_fd, struct err *e);

/* The release row's facts carried in "cairn-release/meta.json" (not covered by the id). */
struct release_meta {
	const char *tag;    /* borrowed; NULL or "" for none */
	int64_t created_at; /* unix seconds */
};
/* release_export with meta.json written after the manifest (meta may be NULL: none). */
int release_export_meta(const struct objstore *os, const char *id, const struct release_meta *meta,
			int out_fd, struct err *e);

/* Reads such an archive. Refuses absolute paths, "..", escaping symlinks, device files and
 * anything whose path, type, size or digest disagrees with the manifest; on any failure
 * nothing is written to the store. out_id receives the id (HASH_ID_LEN + 1 bytes). */
int release_import(struct objstore *os, struct store *st, int in_fd, char *out_id, struct err *e);

#define RELEASE_TAG_MAX NAME_TAG_MAX /* == STORE_TAG_MAX */
#define RELEASE_APP_MAX NAME_APP_MAX /* [a-z0-9][a-z0-9_.-]{0,62}, as in cairn.yml */

struct release_import_result {
	char id[HASH_ID_LEN + 1];
	char app[RELEASE_APP_MAX + 1];
	char tag[RELEASE_TAG_MAX + 1];         /* the tag the release carries after import, or "" */
	char dropped_tag[RELEASE_TAG_MAX + 1]; /* meta.json's tag when it already names another
						  release of the app: imported untagged */
	size_t n_files, n_new_objects;
	size_t n_repaired; /* stored objects whose bytes no longer matched, replaced */
	int64_t bytes; /* content bytes of the release's files */
	bool existed;  /* the release was already stored: nothing new was recorded but */
	bool tag_added; /* ...the archive's tag, which it now carries beside its others */
};
/* release_import with the details a person is told (out is untouched on failure). */
int release_import_archive(struct objstore *os, struct store *st, int in_fd,
			   struct release_import_result *out, struct err *e);

/* ---- diff -------------------------------------------------------------------------------- */

enum diff_side_kind { DIFF_SIDE_RELEASE, DIFF_SIDE_DIR };

struct diff_opts {
	bool json;
	bool color;
	size_t max_text_bytes; /* files larger than this are compared by digest only */
	int context_lines;     /* unified diff context; default 3 */
	bool stat_only;        /* list changes without line diffs */
};

/* Compares two manifests (a directory is first turned into an in-memory manifest without
 * storing anything). Text output: files added/removed/changed with unified diffs, binary
 * notes, dependency changes ("python eventlet 0.20.0 → 0.20.1"), run-config changes. */
struct diff_side {
	const struct manifest *m;
	const char *label;     /* "sha256:abc… (v1)" or the directory */
	const char *dir;       /* for DIFF_SIDE_DIR: where file contents are read */
	const struct objstore *os; /* for DIFF_SIDE_RELEASE */
};
int release_diff(const struct diff_side *a, const struct diff_side *b, const struct diff_opts *o,
		 struct buf *out, bool *out_differs, struct err *e);

/* Walks a directory into a manifest (no storing): used by diff against a directory.
 * `exclude` names are skipped at any depth. */
int release_scan_dir(const char *dir, const struct strv *exclude, const struct config *cfg,
		     struct manifest **out, struct err *e);

#endif
