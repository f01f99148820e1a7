/* config internals: the small YAML tree parse.c builds from libfyaml's events (every node
 * with its 1-based line and column), and the typed readers schema.c uses to turn nodes into
 * struct config fields. Never included from outside src/config/. */
#ifndef CAIRN_CONFIG_INTERNAL_H
#define CAIRN_CONFIG_INTERNAL_H

#include "config/config.h"

#define CONFIG__DEPTH_MAX 16  /* cairn.yml nests 4 levels; deeper input is refused early */
#define CONFIG__PATH_MAX  160 /* key paths in messages ("acceptance[3].request.headers.X") */
#define CONFIG__QUOTE_MAX 60  /* user values quoted in messages are cut after this many bytes */

enum cnode_kind { CNODE_SCALAR, CNODE_SEQ, CNODE_MAP };

/* One YAML node. A mapping's children alternate key, value. All memory is the arena's. */
struct cnode {
	enum cnode_kind kind;
	bool plain;	  /* scalar written without quotes or block indicator */
	bool flow;	  /* sequence or mapping written with [ ] or { } */
	int line, col;	  /* 1-based position of the node's first character */
	const char *text; /* scalar: NUL-terminated, no NUL inside */
	size_t len;
	struct cnode *first, *last, *next;
	size_t n; /* number of children */
};

struct config__chunk;

/* One parse: the source name for messages, the error to fill, and the arena of the tree. */
struct cfg_parse {
	const char *file;
	struct err *e;
	struct config__chunk *chunks; /* owned; freed by config__parse_done */
	bool faults_only_ok;          /* config_parse_faults: a file of only faults: is fine */
};

/* YAML bytes → tree. On failure e holds FILE:LINE:COL and *out_root is untouched. */
int config__parse_yaml(struct cfg_parse *p, const char *text, size_t len, struct cnode **out_root);
void config__parse_done(struct cfg_parse *p);

/* Sets p->e at the node; returns -CAIRN_EINPUT. */
int config__err(struct cfg_parse *p, const struct cnode *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* "PATH must be WHAT, not a list" (or "not a mapping", "not \"x\"", "not empty"). */
int config__type_err(struct cfg_parse *p, const struct cnode *n, const char *path,
		     const char *what);
/* Quotes a user value for a message, cut at CONFIG__QUOTE_MAX; out needs QUOTE_BUF bytes. */
#define CONFIG__QUOTE_BUF (4 * CONFIG__QUOTE_MAX + 8)
const char *config__quote(const char *s, char *out);
/* Nearest of names[] to s (NULL-terminated list) within a small edit distance, or NULL. */
const char *config__nearest(const char *s, const char *const names[]);
/* "parent.key" or "parent[i]" into out (CONFIG__PATH_MAX). */
void config__path(char *out, const char *parent, const char *key);
void config__path_index(char *out, const char *parent, size_t i);

bool config__is_null(const struct cnode *n);

/* Walks a mapping whose keys are the NULL-terminated names[]: vals[i] is the value of
 * names[i] (NULL when absent). Unknown keys (with a suggestion), duplicate keys and non-scalar
 * keys are errors. A null `map` leaves every vals[i] NULL (an empty section). */
int config__fields(struct cfg_parse *p, const struct cnode *map, const char *path,
		   const char *const names[], const struct cnode *vals[]);
/* Fails with "missing required key" at the mapping (or at the parent when map is NULL). */
int config__missing(struct cfg_parse *p, const struct cnode *at, const char *path, const char *key,
		    const char *example);

/* Typed readers: n must be a non-null scalar unless said otherwise. Outputs untouched on error. */
int config__str(struct cfg_parse *p, const struct cnode *n, const char *path, char **out);
int config__int(struct cfg_parse *p, const struct cnode *n, const char *path, long min, long max,
		int *out);
int config__duration(struct cfg_parse *p, const struct cnode *n, const char *path, int64_t *out);
int config__percent(struct cfg_parse *p, const struct cnode *n, const char *path, double *out);
int config__number(struct cfg_parse *p, const struct cnode *n, const char *path, double *out);
int config__bool(struct cfg_parse *p, const struct cnode *n, const char *path, bool *out);
/* One of names[] (NULL-terminated) exactly; *out is its index. */
int config__enum(struct cfg_parse *p, const struct cnode *n, const char *path,
		 const char *const names[], int *out);
/* A list of strings → argv. `required`: at least one element. argv[0] may never be empty. */
int config__argv(struct cfg_parse *p, const struct cnode *n, const char *path, bool required,
		 const char *example, struct strv *out);
/* A list of non-empty strings (patterns). */
int config__list(struct cfg_parse *p, const struct cnode *n, const char *path, struct strv *out);

/* A mapping string → string, sorted by key, keys unique (compared with `cmp`, strcmp or
 * strcasecmp). check_key returns NULL if the key is fine, else what is wrong with it
 * ("is not a valid ..."). `single_line`: values may not hold line breaks. */
typedef const char *(*config__key_check)(const char *key);
int config__strmap(struct cfg_parse *p, const struct cnode *n, const char *path,
		   config__key_check check_key, bool single_line,
		   int (*cmp)(const char *, const char *), struct config_kv **out, size_t *out_n);
void config__kv_free(struct config_kv *kv, size_t n);

/* Replaces *dst with a copy of s. */
int config__set_str(struct cfg_parse *p, char **dst, const char *s);
/* "/path?query": starts with '/', no spaces or control characters. */
bool config__is_http_path(const char *s);
/* The faults: section (faults.c). */
int config__faults(struct cfg_parse *p, struct config *c, const struct cnode *n);
void config__faults_free(struct config *c);
/* The acceptance: section (checks.c). */
int config__acceptance(struct cfg_parse *p, struct config *c, const struct cnode *n);

/* Whole-decimal and decimal-fraction syntax checks (no signs, exponents, hex, inf). */
bool config__is_uint(const char *s);
bool config__is_decimal(const char *s);

#endif
