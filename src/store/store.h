/* store: the state interface — release metadata now, deploy jobs later. SQLite is the one
 * backend today (sqlite.c); PostgreSQL will sit behind the same vtable. The store never
 * touches the object store's bytes and never includes the HTTP layer. */
#ifndef CAIRN_STORE_H
#define CAIRN_STORE_H

#include "base/base.h"

#define STORE_TAG_MAX 128

enum release_state { RELEASE_UNTESTED, RELEASE_GOOD, RELEASE_BAD };

struct store_release {
	char id[HASH_ID_LEN + 1];
	char app[128];
	char tag[STORE_TAG_MAX + 1]; /* "" when untagged */
	int64_t created_at;          /* unix seconds */
	enum release_state state;
	int64_t n_files, bytes;
};

struct store;

struct store_ops {
	void (*close)(struct store *s);
	int (*release_put)(struct store *s, const struct store_release *r, struct err *e);
	int (*release_get)(struct store *s, const char *id, struct store_release *out, struct err *e);
	int (*release_list)(struct store *s, const char *app,
			    int (*cb)(void *ctx, const struct store_release *r), void *ctx,
			    struct err *e);
	int (*release_set_state)(struct store *s, const char *id, enum release_state st,
				 struct err *e);
	/* REF → id: full id, a unique prefix (with or without "sha256:"), or a tag. */
	int (*release_resolve)(struct store *s, const char *app, const char *ref,
			       char out_id[HASH_ID_LEN + 1], struct err *e);
};

struct store {
	const struct store_ops *ops;
};

/* Opens (creating) <state_dir>/state.db. */
int store_open_sqlite(const char *state_dir, struct store **out, struct err *e);

static inline void store_close(struct store *s)
{
	if (s)
		s->ops->close(s);
}
/* Inserts a release; if the id exists, only a new non-empty tag is applied. A tag that
 * already names another release of the app is refused (tags are immutable names). */
static inline int store_release_put(struct store *s, const struct store_release *r, struct err *e)
{
	return s->ops->release_put(s, r, e);
}
static inline int store_release_get(struct store *s, const char *id, struct store_release *out,
				    struct err *e)
{
	return s->ops->release_get(s, id, out, e);
}
static inline int store_release_list(struct store *s, const char *app,
				     int (*cb)(void *ctx, const struct store_release *r), void *ctx,
				     struct err *e)
{
	return s->ops->release_list(s, app, cb, ctx, e);
}
static inline int store_release_set_state(struct store *s, const char *id, enum release_state st,
					  struct err *e)
{
	return s->ops->release_set_state(s, id, st, e);
}
static inline int store_release_resolve(struct store *s, const char *app, const char *ref,
					char out_id[HASH_ID_LEN + 1], struct err *e)
{
	return s->ops->release_resolve(s, app, ref, out_id, e);
}

const char *release_state_name(enum release_state st);

/* The state directory: --state, else CAIRN_STATE, else $XDG_STATE_HOME/cairn, else
 * /var/lib/cairn for root, else ~/.local/state/cairn. Returns malloc'd path. */
char *store_state_dir(const char *flag);

#endif
