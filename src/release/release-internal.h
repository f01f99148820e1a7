/* release-internal: helpers shared between the files of release/, never included from
 * outside the module. */
#ifndef CAIRN_RELEASE_INTERNAL_H
#define CAIRN_RELEASE_INTERNAL_H

#include "release/release.h"

#include <locale.h>

/* "PID.START" of this process: the owner part of a temp name (tmpclean.c). */
void objstore__owner_tag(char *out, size_t n);

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
	bool cached; /* digest from this state dir's build cache: its object is stored */
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

/* ---- toml-lite (toml-lite.c) -------------------------------------------------------------
 * A small, bounded TOML reader for the dependency sections of pyproject.toml, Pipfile,
 * Cargo.toml and the [[package]] lists of Cargo.lock / poetry.lock / uv.lock. It understands
 * tables, array tables, dotted and quoted keys, strings (all four kinds), arrays and inline
 * tables; anything else is kept as a raw token. A malformed line is skipped and reading goes
 * on at the next line: these are the app's files, and junk must never stop a scan. */
enum toml__kind { TOML_STR, TOML_ARR, TOML_TAB, TOML_RAW };

struct toml__val {
	enum toml__kind kind;
	int line, col;          /* 1-based start; strings: the first char after the quote */
	char *s;                /* owned: TOML_STR decoded text, TOML_RAW token text */
	char *key;              /* owned: the key, for members of an inline table */
	int key_line, key_col;  /* position of that key */
	struct toml__val *kids; /* owned array: array items or inline-table members */
	size_t n, cap;
};

struct toml__seg {
	const char *s; /* borrowed for the duration of the callback */
	int line, col;
};

/* Called once per key/value: path = the table header's segments then the key's segments
 * (n_header of them come from the header); table_seq counts headers seen so far, so
 * callers can group the keys of one [[array table]] element. */
typedef void (*toml__kv_cb)(void *ctx, const struct toml__seg *path, size_t n_path,
			    size_t n_header, unsigned table_seq, const struct toml__val *v);
/* Also called for each header line (v == NULL, path = the header). */
void toml__read(const char *data, size_t n, toml__kv_cb cb, void *ctx);
/* Member of an inline table by key, or NULL. */
const struct toml__val *toml__get(const struct toml__val *tab, const char *key);
/* String member of an inline table, or NULL. */
const char *toml__get_str(const struct toml__val *tab, const char *key);

/* ---- pins: shared between pins*.c ------------------------------------------------------- */

#define PINS_FILE_MAX (16u * 1024 * 1024) /* larger manifests are skipped (debug log) */

/* One manifest being scanned. */
struct pins__file {
	const char *path;  /* tree-relative, as reported */
	const char *data;  /* the bytes (not NUL-terminated) */
	size_t n;
	bool locked;       /* a lockfile beside it (or its workspace's) pins what it names */
	/* Version known to be installed in the tree (site-packages, node_modules) for a fix
	 * text, malloc'd, or NULL. May be NULL itself. */
	char *(*hint)(void *ctx, const char *eco, const char *name);
	void *hint_ctx;
	struct strv *includes; /* requirements: -r/-c targets as written (may be NULL) */
	struct pin_report *r;
};

void pins__add(const struct pins__file *f, int line, int col, const char *eco, const char *spec,
	       const char *problem, const char *fix);
/* As pins__add, but problem and fix are malloc'd and taken over. */
void pins__add_owned(const struct pins__file *f, int line, int col, const char *eco,
		     const char *spec, char *problem, char *fix);
char *pins__hint(const struct pins__file *f, const char *eco, const char *name);
/* The file-level finding (1:1, spec = the file's name) of a manifest whose lockfile is
 * missing: "no LOCK beside it: ...", with the given fix. */
void pins__lockfile_missing(const struct pins__file *f, const char *eco, const char *lock,
			    const char *fix);

/* Logical lines: physical lines joined at a continuation character, with a map from every
 * byte of the joined text back to its line and column. */
struct pins__seg {
	size_t off; /* offset in the logical text where this physical piece starts */
	int line, col;
};
struct pins__lline {
	struct buf text;
	struct pins__seg *segs; /* owned */
	size_t nseg, capseg;
	int line; /* first physical line */
};
enum pins__lmode {
	PINS_LINES_PIP,    /* '\' at the very end joins; comments are stripped later */
	PINS_LINES_DOCKER, /* escape char (+ trailing blanks) joins; '#' lines inside are dropped */
	PINS_LINES_SHELL,  /* '\' at the very end joins */
	PINS_LINES_RUBY,   /* '\' at the end joins; so does a ',' before an optional comment */
};
struct pins__reader {
	const char *p, *end;
	int line;
	char esc; /* Dockerfile escape character */
};
void pins__reader_init(struct pins__reader *rd, const char *data, size_t n);
void pins__lline_init(struct pins__lline *ll);
void pins__lline_done(struct pins__lline *ll);
/* Reads the next logical line; false at the end. */
bool pins__next_lline(struct pins__reader *rd, struct pins__lline *ll, enum pins__lmode mode);
void pins__lline_pos(const struct pins__lline *ll, size_t off, int *out_line, int *out_col);

/* Shell words of a logical line, for install commands in RUN lines and *.sh files. */
struct pins__word {
	char *s;    /* owned, quotes and escapes removed */
	size_t off; /* offset of the first content char in the logical text */
	bool sep;   /* a command separator (&& || ; | & ( ) or a newline) */
	bool dyn;   /* contains $ or ` expansions: the value is not known */
};
struct pins__words {
	struct pins__word *v; /* owned */
	size_t n, cap;
};
void pins__words_split(const char *s, size_t n, size_t base, struct pins__words *out);
void pins__words_done(struct pins__words *w);
/* Reports floating packages of apt/apt-get/apk/pip install commands found in the words. */
void pins__shell_installs(const struct pins__file *f, const struct pins__lline *ll,
			  const struct pins__words *w);

/* Python: one PEP 508 requirement, a URL or a local path (markers allowed, no pip options).
 * *out_problem is NULL when it is pinned (or not a requirement at all); else problem and fix
 * are malloc'd. `hashed`: a --hash option goes with it. *out_spec_len is the length of the
 * requirement without its marker and trailing blanks. */
void pins__pep508(const struct pins__file *f, const char *req, size_t n, bool hashed,
		  size_t *out_spec_len, char **out_problem, char **out_fix);
/* PEP 503 normalised name (lowercase, runs of -_. as '-'), malloc'd. */
char *pins__py_name(const char *s, size_t n);
bool pins__is_hex(const char *s, size_t n);

/* Per-format scanners (pins-*.c). */
void pins__requirements(const struct pins__file *f);
void pins__pyproject(const struct pins__file *f);
void pins__pipfile(const struct pins__file *f);
void pins__package_json(const struct pins__file *f);
void pins__gemfile(const struct pins__file *f);
void pins__gomod(const struct pins__file *f);
void pins__cargo(const struct pins__file *f);
void pins__dockerfile(const struct pins__file *f);
void pins__shell(const struct pins__file *f);

/* Dockerfile parsing shared with deps: calls cb for every base image of a FROM line that is
 * not scratch or an earlier stage, with ARG defaults substituted in `resolved` (NULL when a
 * variable has no default). */
struct pins__from {
	const char *raw;      /* image as written */
	const char *resolved; /* after ARG substitution, or NULL */
	int line, col;
	bool copy_from; /* from COPY --from=IMAGE rather than FROM */
};
typedef void (*pins__from_cb)(void *ctx, const struct pins__from *fr);
typedef void (*pins__run_cb)(void *ctx, const struct pins__lline *ll, size_t off, size_t n);
void pins__docker_parse(const char *data, size_t n, pins__from_cb from_cb, pins__run_cb run_cb,
			void *ctx);

/* Manifest kind by file name (basename rules, see docs/pins.md). */
enum pins__kind {
	PINS_NONE,
	PINS_REQUIREMENTS,
	PINS_PYPROJECT,
	PINS_PIPFILE,
	PINS_PACKAGE_JSON,
	PINS_GEMFILE,
	PINS_GOMOD,
	PINS_CARGO,
	PINS_DOCKERFILE,
	PINS_SHELL,
};
enum pins__kind pins__kind_of(const char *relpath);

/* Names inside a release archive (docs/archive.md). */
#define RELEASE_AR_MANIFEST "cairn-release/manifest.json"
#define RELEASE_AR_META "cairn-release/meta.json"
#define RELEASE_AR_DIR "cairn-release/"
#define RELEASE_AR_FILES "files/"
#define RELEASE_AR_META_MAX (64 * 1024)

/* libarchive converts names through the thread's locale; archive names are UTF-8, so export
 * and import switch this thread to C.UTF-8 while they run (the process locale is untouched). */
struct release__locale {
	locale_t old, utf8; /* utf8 owned; (locale_t)0 when unavailable */
};
void release__locale_utf8(struct release__locale *l);
void release__locale_restore(struct release__locale *l);

#endif
