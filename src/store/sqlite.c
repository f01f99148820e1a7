/* store/sqlite: the SQLite backend of the state interface (WAL, one file: state.db).
 * Owns the schema and its migrations. Knows nothing of objects on disk or of HTTP. */
#include "store/sqlite-internal.h"

#include <errno.h>
#include <jansson.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SQL_BUSY_TIMEOUT_MS 5000

static const char *const schema[] = {
	/* version 1 */
	"CREATE TABLE releases ("
	"  id TEXT PRIMARY KEY,"
	"  app TEXT NOT NULL,"
	"  tag TEXT,"
	"  created_at INTEGER NOT NULL,"
	"  state TEXT NOT NULL DEFAULT 'untested',"
	"  n_files INTEGER NOT NULL DEFAULT 0,"
	"  bytes INTEGER NOT NULL DEFAULT 0"
	");"
	"CREATE UNIQUE INDEX releases_app_tag ON releases(app, tag) WHERE tag IS NOT NULL;"
	"CREATE INDEX releases_app_created ON releases(app, created_at);",
	/* version 2: deploy jobs (sqlite-jobs.c) */
	SQLITE_JOBS_SCHEMA,
	/* version 3: a release carries every tag it was given (releases.tag held one, and a
	 * second tag replaced the first). releases.tag stays, always NULL. Tags that could
	 * stand for a release id ("sha256:…", 4-64 hex digits: name_is_id_like) were never
	 * resolvable as tags once ids win, and are not carried over. */
	"CREATE TABLE release_tags ("
	"  app TEXT NOT NULL, tag TEXT NOT NULL, id TEXT NOT NULL REFERENCES releases(id),"
	"  created_at INTEGER NOT NULL, PRIMARY KEY (app, tag));"
	"CREATE INDEX release_tags_id ON release_tags(id);"
	"INSERT INTO release_tags (app, tag, id, created_at)"
	"  SELECT app, tag, id, created_at FROM releases WHERE tag IS NOT NULL AND tag <> ''"
	"  AND tag NOT GLOB 'sha256:*'"
	"  AND NOT (length(tag) BETWEEN 4 AND 64 AND tag NOT GLOB '*[^0-9a-fA-F]*')"
	"  ORDER BY created_at, rowid;"
	"DROP INDEX releases_app_tag;"
	"UPDATE releases SET tag = NULL;",
	/* version 4: who asked for a job (emergency stops record it) */
	"ALTER TABLE jobs ADD COLUMN created_by TEXT NOT NULL DEFAULT '';",
	/* version 5: a bake that could not judge is told apart from one that passed */
	SQLITE_UNJUDGED_SCHEMA,
};

int sqlite__fail(struct sqlite_store *s, struct err *e, const char *what)
{
	int full = sqlite3_errcode(s->db) == SQLITE_FULL;
	return err_set(e, full ? ENOSPC : EIO, "state database: %s: %s", what,
		       sqlite3_errmsg(s->db));
}

static int migrate(struct sqlite_store *s, struct err *e)
{
	sqlite3_stmt *q;
	int version = 0;

	if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &q, NULL) != SQLITE_OK)
		return sqlite__fail(s, e, "reading schema version");
	if (sqlite3_step(q) == SQLITE_ROW)
		version = sqlite3_column_int(q, 0);
	sqlite3_finalize(q);
	if (version > (int)ARRAY_SIZE(schema))
		return err_set(e, EINVAL,
			       "state database has schema version %d, newer than this cairn knows (%zu); "
			       "upgrade cairn",
			       version, ARRAY_SIZE(schema));
	for (int v = version; v < (int)ARRAY_SIZE(schema); v++) {
		char *sql = xasprintf("BEGIN IMMEDIATE; %s PRAGMA user_version=%d; COMMIT;", schema[v], v + 1);
		int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
		free(sql);
		if (rc != SQLITE_OK) {
			int r = sqlite__fail(s, e, "migrating schema");
			sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
			return r;
		}
	}
	return 0;
}

static void sq_close(struct store *base)
{
	struct sqlite_store *s = (struct sqlite_store *)base;
	sqlite__cache_free(s);
	sqlite3_close(s->db);
	free(s);
}

static const char *state_str(enum release_state st)
{
	return release_state_name(st);
}

static enum release_state state_parse(const char *s)
{
	if (s && !strcmp(s, "good"))
		return RELEASE_GOOD;
	if (s && !strcmp(s, "bad"))
		return RELEASE_BAD;
	if (s && !strcmp(s, "unjudged"))
		return RELEASE_UNJUDGED;
	return RELEASE_UNTESTED;
}

static void row_to_release(sqlite3_stmt *q, struct store_release *r)
{
	const char *t;
	memset(r, 0, sizeof(*r));
	snprintf(r->id, sizeof(r->id), "%s", (const char *)sqlite3_column_text(q, 0));
	snprintf(r->app, sizeof(r->app), "%s", (const char *)sqlite3_column_text(q, 1));
	t = (const char *)sqlite3_column_text(q, 2);
	snprintf(r->tag, sizeof(r->tag), "%s", t ? t : "");
	r->created_at = sqlite3_column_int64(q, 3);
	r->state = state_parse((const char *)sqlite3_column_text(q, 4));
	r->n_files = sqlite3_column_int64(q, 5);
	r->bytes = sqlite3_column_int64(q, 6);
}

#define RELEASE_COLS "id, app, tag, created_at, state, n_files, bytes"
/* what row_to_release reads: the tag is the first one the release was given */
#define RELEASE_SELECT                                                                             \
	"SELECT id, app, (SELECT t.tag FROM release_tags t WHERE t.id = releases.id "              \
	"ORDER BY t.rowid LIMIT 1), created_at, state, n_files, bytes FROM releases"

static int sq_release_get(struct store *base, const char *id, struct store_release *out,
			  struct err *e)
{
	struct sqlite_store *s = (struct sqlite_store *)base;
	sqlite3_stmt *q;
	int rc, r = 0;

	if (sqlite3_prepare_v2(s->db, RELEASE_SELECT " WHERE id = ?", -1, &q,
			       NULL) != SQLITE_OK)
		return sqlite__fail(s, e, "reading release");
	sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW)
		row_to_release(q, out);
	else if (rc == SQLITE_DONE)
		r = err_set(e, CAIRN_ENOTFOUND, "no release %s", id);
	else
		r = sqlite__fail(s, e, "reading release");
	sqlite3_finalize(q);
	return r;
}

/* 1 and the id when (app, tag) names a release, 0 when the tag is free. */
static int tag_lookup(struct sqlite_store *s, const char *app, const char *tag,
		      char out_id[HASH_ID_LEN + 1], struct err *e)
{
	sqlite3_stmt *q;
	int rc, r = 0;

	if (sqlite3_prepare_v2(s->db, "SELECT id FROM release_tags WHERE app = ? AND tag = ?", -1,
			       &q, NULL) != SQLITE_OK)
		return sqlite__fail(s, e, "reading tag");
	sqlite3_bind_text(q, 1, app, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, tag, -1, SQLITE_STATIC);
	rc = sqlite3_step(q);
	if (rc == SQLITE_ROW) {
		sqlite__copy_col(out_id, HASH_ID_LEN + 1, q, 0);
		r = 1;
	} else if (rc != SQLITE_DONE) {
		r = sqlite__fail(s, e, "reading tag");
	}
	sqlite3_finalize(q);
	return r;
}

/* Inserts the row (an existing id is kept as it is) and gives it rel->tag; in a transaction. */
static int release_put_locked(struct sqlite_store *s, const struct store_release *rel,
			      struct err *e)
{
	char holder[HASH_ID_LEN + 1];
	sqlite3_stmt *q;
	int r;

	if ((r = sqlite__prep(s,
			      "INSERT INTO releases (" RELEASE_COLS ") VALUES (?,?,NULL,?,?,?,?) "
			      "ON CONFLICT(id) DO NOTHING",
			      &q, e)) < 0)
		return r;
	sqlite3_bind_text(q, 1, rel->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, rel->app, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 3, rel->created_at);
	sqlite3_bind_text(q, 4, state_str(rel->state), -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 5, rel->n_files);
	sqlite3_bind_int64(q, 6, rel->bytes);
	if ((r = sqlite__exec_done(s, q, "recording release", e)) < 0 || !rel->tag[0])
		return r;
	/* a tag, once given, names the same release forever; a release keeps every tag */
	if ((r = tag_lookup(s, rel->app, rel->tag, holder, e)) < 0)
		return r;
	if (r == 1 && !strcmp(holder, rel->id))
		return 0; /* given again: nothing to do */
	if (r == 1)
		return err_set(e, CAIRN_EINPUT,
			       "tag '%s' already names release %.19s of app %s; tags never move — "
			       "choose another tag",
			       rel->tag, holder, rel->app);
	if ((r = sqlite__prep(s, "INSERT INTO release_tags (app, tag, id, created_at) VALUES (?,?,?,?)",
			      &q, e)) < 0)
		return r;
	sqlite3_bind_text(q, 1, rel->app, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, rel->tag, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 3, rel->id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 4, time_now_ns() / 1000000000);
	return sqlite__exec_done(s, q, "recording tag", e);
}

static int sq_release_put(struct store *base, const struct store_release *rel, struct err *e)
{
	struct sqlite_store *s = (struct sqlite_store *)base;
	int r;

	if (rel->tag[0] && (r = name_tag_check(rel->tag, strlen(rel->tag), e)) < 0)
		return r;
	if ((r = sqlite__begin(s, e)) < 0)
		return r;
	return sqlite__finish(s, release_put_locked(s, rel, e), e);
}

static int sq_release_tags(struct store *base, const char *id,
			   int (*cb)(void *ctx, const char *tag), void *ctx, struct err *e)
{
	struct sqlite_store *s = (struct sqlite_store *)base;
	sqlite3_stmt *q;
	int rc, r = 0;

	if (sqlite3_prepare_v2(s->db, "SELECT tag FROM release_tags WHERE id = ? ORDER BY rowid",
			       -1, &q, NULL) != SQLITE_OK)
		return sqlite__fail(s, e, "listing tags");
	sqlite3_bind_text(q, 1, id, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW)
		if ((r = cb(ctx, (const char *)sqlite3_column_text(q, 0))) != 0)
			break;
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		r = sqlite__fail(s, e, "listing tags");
	sqlite3_finalize(q);
	return r;
}

static int sq_tag_get(struct store *base, const char *app, const char *tag,
		      char out_id[HASH_ID_LEN + 1], struct err *e)
{
	return tag_lookup((struct sqlite_store *)base, app, tag, out_id, e);
}

static int sq_release_list(struct store *base, const char *app,
			   int (*cb)(void *ctx, const struct store_release *r), void *ctx, struct err *e)
{
	struct sqlite_store *s = (struct sqlite_store *)base;
	sqlite3_stmt *q;
	int rc, r = 0;

	if (sqlite3_prepare_v2(s->db,
			       RELEASE_SELECT " WHERE (?1 IS NULL OR app = ?1) "
			       "ORDER BY created_at, rowid",
			       -1, &q, NULL) != SQLITE_OK)
		return sqlite__fail(s, e, "listing releases");
	if (app)
		sqlite3_bind_text(q, 1, app, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		struct store_release rel;
		row_to_release(q, &rel);
		if ((r = cb(ctx, &rel)) != 0)
			break;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		r = sqlite__fail(s, e, "listing releases");
	sqlite3_finalize(q);
	return r;
}

static int sq_release_set_state(struct store *base, const char *id, enum release_state st,
				struct err *e)
{
	struct sqlite_store *s = (struct sqlite_store *)base;
	sqlite3_stmt *q;
	int r = 0;

	if (sqlite3_prepare_v2(s->db, "UPDATE releases SET state = ? WHERE id = ?", -1, &q, NULL) !=
	    SQLITE_OK)
		return sqlite__fail(s, e, "updating release");
	sqlite3_bind_text(q, 1, state_str(st), -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, id, -1, SQLITE_STATIC);
	if (sqlite3_step(q) != SQLITE_DONE)
		r = sqlite__fail(s, e, "updating release");
	else if (sqlite3_changes(s->db) == 0)
		r = err_set(e, CAIRN_ENOTFOUND, "no release %s", id);
	sqlite3_finalize(q);
	return r;
}

/* Runs a query whose first column is an id with ?1 = key and ?2 = app (NULL: any); the first
 * two ids go to first and second. Returns how many rows, or a negative error. */
static int query_ids(struct sqlite_store *s, const char *sql, const char *key, const char *app,
		     char first[HASH_ID_LEN + 1], char second[HASH_ID_LEN + 1], struct err *e)
{
	sqlite3_stmt *q;
	int n = 0, rc;

	if (sqlite3_prepare_v2(s->db, sql, -1, &q, NULL) != SQLITE_OK)
		return sqlite__fail(s, e, "resolving release");
	sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
	if (app)
		sqlite3_bind_text(q, 2, app, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (n < 2)
			sqlite__copy_col(n ? second : first, HASH_ID_LEN + 1, q, 0);
		n++;
	}
	if (rc != SQLITE_DONE)
		n = sqlite__fail(s, e, "resolving release");
	sqlite3_finalize(q);
	return n;
}

/* Order: a ref that could be an id (name_is_id_like: "sha256:…" or 4-64 hex digits) is only
 * ever an id — the exact id, else a unique prefix — and never a tag; anything else is a tag.
 * Tags that look like ids are refused when given (name_tag_check), so no tag can stand for
 * a release it is not. */
static int sq_release_resolve(struct store *base, const char *app, const char *ref,
			      char out_id[HASH_ID_LEN + 1], struct err *e)
{
	struct sqlite_store *s = (struct sqlite_store *)base;
	const char *hex = str_starts(ref, "sha256:") ? ref + 7 : ref;
	size_t hexlen = strlen(hex);
	bool id_like = name_is_id_like(ref, strlen(ref));
	char first[HASH_ID_LEN + 1] = "", second[HASH_ID_LEN + 1] = "";
	int n = 0;

	if (!*ref)
		return err_set(e, CAIRN_EINPUT, "empty release reference");
	if (!id_like)
		n = query_ids(s, "SELECT id FROM release_tags WHERE tag = ?1 AND (?2 IS NULL OR app = ?2)",
			      ref, app, first, second, e);
	else if (hexlen >= NAME_ID_PREFIX_MIN && hexlen <= HASH_HEX_LEN && hash_is_hex(hex, hexlen))
		/* lowercase hex holds no GLOB metacharacter; 64 digits match the id alone */
		n = query_ids(s,
			      "SELECT id FROM releases WHERE id GLOB 'sha256:' || ?1 || '*' AND "
			      "(?2 IS NULL OR app = ?2) LIMIT 2",
			      hex, app, first, second, e);
	if (n < 0)
		return n;
	if (n == 0)
		return err_set(e, CAIRN_ENOTFOUND,
			       "no release matches '%s'%s%s; 'cairn releases' lists them", ref,
			       app ? " for app " : "", app ? app : "");
	if (n > 1)
		return err_set(e, CAIRN_EAMBIGUOUS, "'%s' is ambiguous: it matches %.19s and %.19s; %s",
			       ref, first, second, id_like ? "give more digits" : "name the app (--app)");
	memcpy(out_id, first, HASH_ID_LEN + 1);
	return 0;
}

static const struct store_ops sqlite_ops = {
	.close = sq_close,
	.release_put = sq_release_put,
	.release_get = sq_release_get,
	.release_list = sq_release_list,
	.release_set_state = sq_release_set_state,
	.release_resolve = sq_release_resolve,
	.release_tags = sq_release_tags,
	.tag_get = sq_tag_get,
};

int store_open_sqlite(const char *state_dir, struct store **out, struct err *e)
{
	struct sqlite_store *s = xcalloc(1, sizeof(*s));
	char *path = fs_join(state_dir, "state.db");
	int r;

	s->base.ops = &sqlite_ops;
	s->base.jobs = &sqlite__job_ops;
	/* made 0600 here, not with the umask: SQLite gives its -wal and -shm the db's mode. Only
	 * when it is not there yet: closing any descriptor of a file drops every POSIX lock this
	 * process holds on it, so an open+close of a database another connection of ours has
	 * open would silently take that connection's locks away (the next runner thread's open
	 * did: its reads then missed committed jobs). A file that did not exist has no locks. */
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd >= 0)
		close(fd);
	if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK) {
		r = err_set(e, EIO, "cannot open %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "out of memory");
		goto fail;
	}
	sqlite3_busy_timeout(s->db, SQL_BUSY_TIMEOUT_MS);
	sqlite3_exec(s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
		     NULL, NULL, NULL);
	if ((r = migrate(s, e)) < 0)
		goto fail;
	free(path);
	*out = &s->base;
	return 0;
fail:
	sqlite3_close(s->db);
	free(s);
	free(path);
	return r;
}

static int add_tag_json(void *ctx, const char *tag)
{
	return json_array_append_new(ctx, json_string(tag)) < 0 ? -ENOMEM : 0;
}

json_t *store_release_tags_json(struct store *s, const char *id, struct err *e)
{
	json_t *a = json_array();
	int r;

	if (!a) {
		err_set(e, ENOMEM, "out of memory");
		return NULL;
	}
	if ((r = store_release_tags(s, id, add_tag_json, a, e)) < 0) {
		if (r == -ENOMEM)
			err_set(e, ENOMEM, "out of memory");
		json_decref(a);
		return NULL;
	}
	return a;
}

const char *release_state_name(enum release_state st)
{
	switch (st) {
	case RELEASE_GOOD:
		return "good";
	case RELEASE_BAD:
		return "bad";
	case RELEASE_UNJUDGED:
		return "unjudged";
	default:
		return "untested";
	}
}

char *store_state_dir(const char *flag)
{
	const char *s;
	if (flag && *flag)
		return xstrdup(flag);
	if ((s = getenv("CAIRN_STATE")) && *s)
		return xstrdup(s);
	if ((s = getenv("XDG_STATE_HOME")) && *s)
		return fs_join(s, "cairn");
	if (geteuid() == 0)
		return xstrdup("/var/lib/cairn");
	if ((s = getenv("HOME")) && *s)
		return fs_join(s, ".local/state/cairn");
	return xstrdup("./.cairn-state");
}
