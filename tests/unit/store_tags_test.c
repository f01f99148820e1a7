/* Unit tests for release tags in store/ (SQLite): a release keeps every tag it was given, a tag
 * names one release forever, REFs that could be ids never resolve as tags, and a state.db made
 * by the schema with one tag column per release (version 2) is migrated. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "store/sqlite-internal.h"

#include <stdlib.h>
#include <string.h>

#define A "sha256:aaaa111111111111111111111111111111111111111111111111111111111111"
#define B "sha256:bbbb222222222222222222222222222222222222222222222222222222222222"

/* The releases table as schema version 1 made it (one nullable tag per release). */
static const char OLD_RELEASES[] =
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
	"CREATE INDEX releases_app_created ON releases(app, created_at);";

struct tags {
	char v[8][STORE_TAG_MAX + 1];
	int n;
};

static int add(void *ctx, const char *tag)
{
	struct tags *t = ctx;
	if (t->n < 8)
		snprintf(t->v[t->n++], STORE_TAG_MAX + 1, "%s", tag);
	return 0;
}

static struct tags tags_of(struct store *st, const char *id)
{
	struct tags t = { 0 };
	struct err e;
	assert_int_equal(store_release_tags(st, id, add, &t, &e), 0);
	return t;
}

static void assert_resolves(struct store *st, const char *ref, const char *want)
{
	char id[HASH_ID_LEN + 1];
	struct err e;
	assert_int_equal(store_release_resolve(st, NULL, ref, id, &e), 0);
	assert_string_equal(id, want);
}

static void make_old_db(const char *dir)
{
	char *path = fs_join(dir, "state.db");
	char *sql = xasprintf(
	    "%s %s"
	    "INSERT INTO releases (id, app, tag, created_at) VALUES ('" A "', 'demo', 'v1', 1);"
	    /* an impostor: a tag shaped like the other release's id prefix */
	    "INSERT INTO releases (id, app, tag, created_at) VALUES ('" B "', 'demo', 'aaaa1111', 2);"
	    "INSERT INTO releases (id, app, tag, created_at) VALUES "
	    "  ('sha256:cccc333333333333333333333333333333333333333333333333333333333333', 'web', "
	    "   NULL, 3);"
	    "PRAGMA user_version=2;",
	    OLD_RELEASES, SQLITE_JOBS_SCHEMA);
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	free(sql);
	free(path);
}

static void test_migrates_a_one_tag_db(void **state)
{
	struct err e;
	struct store *st;
	char *dir = fs_mkdtemp("/tmp", &e);
	struct store_release r;
	(void)state;

	assert_non_null(dir);
	make_old_db(dir);
	assert_int_equal(store_open_sqlite(dir, &st, &e), 0);
	struct tags t = tags_of(st, A);
	assert_int_equal(t.n, 1);
	assert_string_equal(t.v[0], "v1");
	assert_int_equal(tags_of(st, B).n, 0); /* the impostor tag was not carried over */
	assert_resolves(st, "v1", A);
	assert_resolves(st, "aaaa1111", A); /* an id prefix is an id, whatever a tag once said */
	assert_resolves(st, "bbbb", B);
	assert_int_equal(store_release_get(st, A, &r, &e), 0);
	assert_string_equal(r.tag, "v1");

	/* a second tag keeps the first; a tag never moves */
	memset(&r, 0, sizeof(r));
	snprintf(r.id, sizeof(r.id), A);
	snprintf(r.app, sizeof(r.app), "demo");
	snprintf(r.tag, sizeof(r.tag), "v2");
	assert_int_equal(store_release_put(st, &r, &e), 0);
	t = tags_of(st, A);
	assert_int_equal(t.n, 2);
	assert_string_equal(t.v[0], "v1");
	assert_string_equal(t.v[1], "v2");
	assert_resolves(st, "v1", A);
	assert_resolves(st, "v2", A);
	snprintf(r.id, sizeof(r.id), B);
	assert_int_equal(store_release_put(st, &r, &e), -CAIRN_EINPUT);
	assert_int_equal(tags_of(st, B).n, 0);
	/* id-like tags are refused by the store too */
	snprintf(r.tag, sizeof(r.tag), "bbbb2222");
	assert_int_equal(store_release_put(st, &r, &e), -CAIRN_EINPUT);
	char id[HASH_ID_LEN + 1];
	assert_int_equal(store_tag_get(st, "demo", "v2", id, &e), 1);
	assert_string_equal(id, A);
	assert_int_equal(store_tag_get(st, "web", "v2", id, &e), 0);
	store_close(st);

	/* reopening migrates nothing twice */
	assert_int_equal(store_open_sqlite(dir, &st, &e), 0);
	assert_int_equal(tags_of(st, A).n, 2);
	store_close(st);
	fs_rm_rf(dir);
	free(dir);
}

static void test_same_tag_in_two_apps_is_ambiguous_without_the_app(void **state)
{
	struct err e;
	struct store *st;
	char *dir = fs_mkdtemp("/tmp", &e);
	struct store_release r = { .created_at = 1 };
	char id[HASH_ID_LEN + 1];
	(void)state;

	assert_int_equal(store_open_sqlite(dir, &st, &e), 0);
	snprintf(r.tag, sizeof(r.tag), "v1");
	snprintf(r.id, sizeof(r.id), A);
	snprintf(r.app, sizeof(r.app), "one");
	assert_int_equal(store_release_put(st, &r, &e), 0);
	snprintf(r.id, sizeof(r.id), B);
	snprintf(r.app, sizeof(r.app), "two");
	assert_int_equal(store_release_put(st, &r, &e), 0);
	assert_int_equal(store_release_resolve(st, NULL, "v1", id, &e), -CAIRN_EAMBIGUOUS);
	assert_int_equal(store_release_resolve(st, "two", "v1", id, &e), 0);
	assert_string_equal(id, B);
	store_close(st);
	fs_rm_rf(dir);
	free(dir);
}

/* base/names.c: the rules every path uses */
static void test_names(void **state)
{
	static const char *const ok_tags[] = { "v1", "abc", "1.2.3", "release-2024", "ci_7", "x" };
	static const char *const bad_tags[] = { "deadbeef", "DEADBEEF", "1234", "sha256:ab",
						"a b", "a/b", "a:b", "t\x1b", "", "é" };
	char out[NAME_SAFE_LEN(8)];
	struct err e;
	(void)state;

	for (size_t i = 0; i < ARRAY_SIZE(ok_tags); i++)
		assert_int_equal(name_tag_check(ok_tags[i], strlen(ok_tags[i]), &e), 0);
	for (size_t i = 0; i < ARRAY_SIZE(bad_tags); i++)
		assert_int_equal(name_tag_check(bad_tags[i], strlen(bad_tags[i]), &e), -CAIRN_EINPUT);
	assert_true(name_is_id_like(A, strlen(A)));
	assert_false(name_is_id_like("abc", 3));
	assert_true(name_app_ok("urlshort", 8));
	assert_true(name_app_ok("a-b.c_d", 7));
	assert_false(name_app_ok("../../evil", 10));
	assert_false(name_app_ok("", 0));
	assert_false(name_app_ok("Upper", 5));
	assert_false(name_app_ok("-x", 2));
	assert_string_equal(name_safe("a\x1b[2J", out, sizeof(out)), "a\\x1b[2J");
	/* cut, never overflowing, never half an escape */
	assert_string_equal(name_safe("\x01\x02\x03", out, 8), "\\x01");
	assert_string_equal(name_safe("\x01\x02\x03", out, 9), "\\x01\\x02");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_migrates_a_one_tag_db),
		cmocka_unit_test(test_same_tag_in_two_apps_is_ambiguous_without_the_app),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
