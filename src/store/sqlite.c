/* store/sqlite: the SQLite backend of the state interface (WAL, one file: state.db).
 * Owns the schema and its migrations. Knows nothing of objects on disk or of HTTP. */
#include "store/sqlite-internal.h"

#include <errno.h>
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

static int sq_release_get(struct store *base, const char *id, struct store_release *out,
			  struct err *e)
{
	struct sqlite_store *s = (struct sqlite_store *)base;
	sqlite3_stmt *q;
	int rc, r = 0;

	if (sqlite3_prepare_v2(s->db, "SELECT " RELEASE_COLS " FROM releases WHERE id = ?", -1, &q,
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

static int sq_release_put(struct store *base, const struct store_release *rel, struct err *e)
{
	struct sqlite_store *s = (struct sqlite_store *)base;
	sqlite3_stmt *q = NULL;
	int r = 0;

	if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return sqlite__fail(s, e, "starting transaction");
	if (rel->tag[0]) {
		/* tags are immutable names: refuse one that names another release */
		if (sqlite3_prepare_v2(s->db, "SELECT id FROM releases WHERE app = ? AND tag = ? AND id <> ?",
				       -1, &q, NULL) != SQLITE_OK) {
			r = sqlite__fail(s, e, "checking tag");
			goto fail;
		}
		sqlite3_bind_text(q, 1, rel->app, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 2, rel->tag, -1, SQLITE_STATIC);
		sqlite3_bind_text(q, 3, rel->id, -1, SQLITE_STATIC);
		if (sqlite3_step(q) == SQLITE_ROW) {
			r = err_set(e, CAIRN_EINPUT,
				    "tag '%s' already names release %.19s of app %s; tags never move — "
				    "choose another tag",
				    rel->tag, (const char *)sqlite3_column_text(q, 0), rel->app);
			goto fail;
		}
		sqlite3_finalize(q);
		q = NULL;
	}
	if (sqlite3_prepare_v2(s->db,
			       "INSERT INTO releases (" RELEASE_COLS ") VALUES (?,?,?,?,?,?,?) "
			       "ON CONFLICT(id) DO UPDATE SET tag = COALESCE(excluded.tag, releases.tag)",
			       -1, &q, NULL) != SQLITE_OK) {
		r = sqlite__fail(s, e, "recording release");
		goto fail;
	}
	sqlite3_bind_text(q, 1, rel->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(q, 2, rel->app, -1, SQLITE_STATIC);
	if (rel->tag[0])
		sqlite3_bind_text(q, 3, rel->tag, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(q, 3);
	sqlite3_bind_int64(q, 4, rel->created_at);
	sqlite3_bind_text(q, 5, state_str(rel->state), -1, SQLITE_STATIC);
	sqlite3_bind_int64(q, 6, rel->n_files);
	sqlite3_bind_int64(q, 7, rel->bytes);
	if (sqlite3_step(q) != SQLITE_DONE) {
		r = sqlite__fail(s, e, "recording release");
		goto fail;
	}
	sqlite3_finalize(q);
	q = NULL;
	if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		r = sqlite__fail(s, e, "committing");
		goto fail;
	}
	return 0;
fail:
	sqlite3_finalize(q);
	sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return r;
}

static int sq_release_list(struct store *base, const char *app,
			   int (*cb)(void *ctx, const struct store_release *r), void *ctx, struct err *e)
{
	struct sqlite_store *s = (struct sqlite_store *)base;
	sqlite3_stmt *q;
	int rc, r = 0;

	if (sqlite3_prepare_v2(s->db,
			       "SELECT " RELEASE_COLS " FROM releases WHERE (?1 IS NULL OR app = ?1) "
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

static int sq_release_resolve(struct store *base, const char *app, const char *ref,
			      char out_id[HASH_ID_LEN + 1], struct err *e)
{
	struct sqlite_store *s = (struct sqlite_store *)base;
	sqlite3_stmt *q;
	const char *hex = str_starts(ref, "sha256:") ? ref + 7 : ref;
	size_t hexlen = strlen(hex);
	int n = 0, rc, r = 0;
	char first[HASH_ID_LEN + 1] = "", second[HASH_ID_LEN + 1] = "";

	if (!*ref)
		return err_set(e, CAIRN_EINPUT, "empty release reference");
	/* a tag wins over an id prefix: tags are what people type */
	if (sqlite3_prepare_v2(s->db,
			       "SELECT id FROM releases WHERE tag = ?1 AND (?2 IS NULL OR app = ?2)",
			       -1, &q, NULL) != SQLITE_OK)
		return sqlite__fail(s, e, "resolving release");
	sqlite3_bind_text(q, 1, ref, -1, SQLITE_STATIC);
	if (app)
		sqlite3_bind_text(q, 2, app, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
		snprintf(n ? second : first, HASH_ID_LEN + 1, "%s", (const char *)sqlite3_column_text(q, 0));
		n++;
	}
	sqlite3_finalize(q);
	if (n == 0 && hexlen >= 4 && hexlen <= HASH_HEX_LEN && hash_is_hex(hex, hexlen)) {
		char *like = xasprintf("sha256:%s*", hex);
		if (sqlite3_prepare_v2(s->db,
				       "SELECT id FROM releases WHERE id GLOB ?1 AND (?2 IS NULL OR app = ?2) "
				       "LIMIT 2",
				       -1, &q, NULL) != SQLITE_OK) {
			free(like);
			return sqlite__fail(s, e, "resolving release");
		}
		sqlite3_bind_text(q, 1, like, -1, SQLITE_STATIC);
		if (app)
			sqlite3_bind_text(q, 2, app, -1, SQLITE_STATIC);
		while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
			snprintf(n ? second : first, HASH_ID_LEN + 1, "%s", (const char *)sqlite3_column_text(q, 0));
			n++;
		}
		sqlite3_finalize(q);
		free(like);
	}
	if (n == 0)
		r = err_set(e, CAIRN_ENOTFOUND,
			    "no release matches '%s'%s%s; 'cairn releases' lists them", ref,
			    app ? " for app " : "", app ? app : "");
	else if (n > 1)
		r = err_set(e, CAIRN_EAMBIGUOUS, "'%s' is ambiguous: it matches %.19s and %.19s; give more digits",
			    ref, first, second);
	else
		memcpy(out_id, first, HASH_ID_LEN + 1);
	return r;
}

static const struct store_ops sqlite_ops = {
	.close = sq_close,
	.release_put = sq_release_put,
	.release_get = sq_release_get,
	.release_list = sq_release_list,
	.release_set_state = sq_release_set_state,
	.release_resolve = sq_release_resolve,
};

int store_open_sqlite(const char *state_dir, struct store **out, struct err *e)
{
	struct sqlite_store *s = xcalloc(1, sizeof(*s));
	char *path = fs_join(state_dir, "state.db");
	int r;

	s->base.ops = &sqlite_ops;
	s->base.jobs = &sqlite__job_ops;
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

const char *release_state_name(enum release_state st)
{
	switch (st) {
	case RELEASE_GOOD:
		return "good";
	case RELEASE_BAD:
		return "bad";
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
