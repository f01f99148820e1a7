/* Unit tests for release/: object store, tree walk, build cache, text diff. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "release/release-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *tmp_dir(void)
{
	struct err e;
	char *d = fs_mkdtemp("/tmp", &e);
	assert_non_null(d);
	return d;
}

static void write_file(const char *dir, const char *rel, const char *content)
{
	char *p = fs_join(dir, rel);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(fs_write_all(fd, content, strlen(content)), 0);
	close(fd);
	free(p);
}

static void test_objstore_roundtrip_and_corruption(void **state)
{
	char *d = tmp_dir();
	struct objstore *os;
	struct err e;
	char hex[HASH_HEX_LEN + 1], hex2[HASH_HEX_LEN + 1];
	struct buf b;
	bool added;
	(void)state;

	assert_int_equal(objstore_open(d, &os, &e), 0);
	assert_int_equal(objstore_put_mem(os, "hello", 5, hex, &e), 0);
	assert_string_equal(hex, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
	assert_true(objstore_has(os, hex));
	/* the same bytes from a file are the same object, not added twice */
	write_file(d, "f", "hello");
	char *f = fs_join(d, "f");
	assert_int_equal(objstore_put_file(os, f, NULL, hex2, &added, &e), 0);
	assert_string_equal(hex, hex2);
	assert_false(added);
	/* objects are read-only */
	char *p = objstore_path(os, hex);
	struct stat st;
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0444);
	buf_init(&b, 1024);
	assert_int_equal(objstore_read(os, hex, &b, &e), 0);
	assert_string_equal(buf_str(&b), "hello");
	/* corrupt it: read and verify refuse, naming the object */
	chmod(p, 0644);
	write_file(d, p + strlen(d) + 1, "hellO");
	buf_reset(&b);
	assert_int_equal(objstore_read(os, hex, &b, &e), -CAIRN_ECORRUPT);
	assert_non_null(strstr(e.msg, "corrupt"));
	assert_int_equal(objstore_verify(os, hex, &e), -CAIRN_ECORRUPT);
	unlink(p);
	assert_int_equal(objstore_verify(os, hex, &e), -CAIRN_ECORRUPT);
	buf_done(&b);
	free(p);
	free(f);
	objstore_free(os);
	fs_rm_rf(d);
	free(d);
}

static void test_walk_sorted_excluded_and_refusals(void **state)
{
	char *d = tmp_dir(), *p;
	struct walk w;
	struct err e;
	struct strv ex;
	(void)state;

	strv_init(&ex);
	strv_push(&ex, "__pycache__");
	strv_push(&ex, "*.pyc");
	strv_push(&ex, "data/");
	p = fs_join(d, "a");
	mkdir(p, 0755);
	free(p);
	p = fs_join(d, "__pycache__");
	mkdir(p, 0755);
	free(p);
	p = fs_join(d, "data");
	mkdir(p, 0755);
	free(p);
	write_file(d, "a/x.py", "x");
	write_file(d, "a-b", "y");
	write_file(d, "a/x.pyc", "z");
	write_file(d, "__pycache__/c", "c");
	write_file(d, "data/db.json", "{}");
	p = fs_join(d, "a/link");
	assert_int_equal(symlink("../a-b", p), 0);
	free(p);
	assert_int_equal(walk_tree(d, &ex, &w, &e), 0);
	/* bytewise order: "a" < "a-b" < "a/link" < "a/x.py" */
	assert_int_equal(w.n, 4);
	assert_string_equal(w.v[0].path, "a");
	assert_int_equal(w.v[0].type, MANIFEST_DIR);
	assert_string_equal(w.v[1].path, "a-b");
	assert_string_equal(w.v[2].path, "a/link");
	assert_int_equal(w.v[2].type, MANIFEST_LINK);
	assert_string_equal(w.v[2].target, "../a-b");
	assert_string_equal(w.v[3].path, "a/x.py");
	walk_done(&w);

	/* a link that escapes is refused with the path and the fix */
	p = fs_join(d, "a/escape");
	assert_int_equal(symlink("../../etc/passwd", p), 0);
	assert_true(walk_tree(d, &ex, &w, &e) < 0);
	assert_non_null(strstr(e.msg, "a/escape"));
	assert_non_null(strstr(e.msg, "outside the tree"));
	unlink(p);
	free(p);
	/* absolute links too */
	p = fs_join(d, "abs");
	assert_int_equal(symlink("/etc/passwd", p), 0);
	assert_true(walk_tree(d, &ex, &w, &e) < 0);
	unlink(p);
	free(p);
	/* a fifo is refused */
	p = fs_join(d, "pipe");
	assert_int_equal(mkfifo(p, 0644), 0);
	assert_int_equal(walk_tree(d, &ex, &w, &e), -CAIRN_EINPUT);
	assert_non_null(strstr(e.msg, "pipe is a fifo"));
	unlink(p);
	free(p);
	strv_done(&ex);
	fs_rm_rf(d);
	free(d);
}

static void test_cache_hit_miss_and_racy(void **state)
{
	char *d = tmp_dir(), *cf = fs_join(d, "cache");
	struct walk w;
	struct bcache c;
	struct err e;
	(void)state;

	write_file(d, "old", "1");
	write_file(d, "new", "2");
	/* "old" was last changed long ago; "new" just now (racy: must not be cached) */
	char *p = fs_join(d, "old");
	struct timespec ts[2] = { { 1000, 0 }, { 1000, 0 } };
	utimensat(AT_FDCWD, p, ts, 0);
	free(p);
	assert_int_equal(walk_tree(d, NULL, &w, &e), 0);
	for (size_t i = 0; i < w.n; i++)
		memset(w.v[i].digest, 'a', HASH_HEX_LEN);
	/* utimensat changes ctime to now, so even "old" is racy by ctime: nothing cached yet */
	assert_int_equal(bcache_save(cf, &w, time_now_ns(), &e), 0);
	assert_int_equal(bcache_load(cf, &c), 0);
	assert_int_equal(c.n, 0);
	bcache_done(&c);
	/* walked 10 s after the last change: both are cached and found by stat */
	assert_int_equal(bcache_save(cf, &w, time_now_ns() + 10LL * 1000000000, &e), 0);
	assert_int_equal(bcache_load(cf, &c), 0);
	assert_int_equal(c.n, 2);
	assert_non_null(bcache_lookup(&c, w.v[0].path, &w.v[0].st));
	struct stat changed = w.v[0].st;
	changed.st_size++;
	assert_null(bcache_lookup(&c, w.v[0].path, &changed));
	changed = w.v[0].st;
	changed.st_mtim.tv_nsec++;
	assert_null(bcache_lookup(&c, w.v[0].path, &changed));
	assert_null(bcache_lookup(&c, "nope", &w.v[0].st));
	bcache_done(&c);
	/* a damaged cache loads as empty */
	write_file(d, "cache", "cairn-build-cache 1\ngarbage line\n");
	assert_int_equal(bcache_load(cf, &c), 0);
	assert_int_equal(c.n, 0);
	bcache_done(&c);
	walk_done(&w);
	free(cf);
	fs_rm_rf(d);
	free(d);
}

static void check_diff(const char *a, const char *b, int ctx, const char *want)
{
	struct buf out;
	buf_init(&out, 1 << 20);
	assert_int_equal(textdiff_unified(a, strlen(a), b, strlen(b), ctx, &out), 0);
	assert_string_equal(buf_str(&out), want);
	buf_done(&out);
}

static void test_textdiff(void **state)
{
	(void)state;
	check_diff("a\nb\nc\n", "a\nb\nc\n", 3, "");
	check_diff("a\nb\nc\n", "a\nB\nc\n", 3, "@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n");
	check_diff("a\nb\nc\n", "a\nB\nc\n", 0, "@@ -2,1 +2,1 @@\n-b\n+B\n");
	check_diff("", "x\n", 3, "@@ -0,0 +1,1 @@\n+x\n");
	check_diff("x\n", "", 3, "@@ -1,1 +0,0 @@\n-x\n");
	check_diff("a\n", "a", 3, "@@ -1,1 +1,1 @@\n-a\n+a\n\\ No newline at end of file\n");
	/* two changes far apart make two hunks */
	check_diff("1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n", "1\nX\n3\n4\n5\n6\n7\n8\nY\n10\n", 1,
		   "@@ -1,3 +1,3 @@\n 1\n-2\n+X\n 3\n@@ -8,3 +8,3 @@\n 8\n-9\n+Y\n 10\n");
	/* close changes merge into one hunk */
	check_diff("1\n2\n3\n4\n5\n", "1\nX\n3\nY\n5\n", 1,
		   "@@ -1,5 +1,5 @@\n 1\n-2\n+X\n 3\n-4\n+Y\n 5\n");
	assert_true(textdiff_is_binary("a\0b", 3));
	assert_false(textdiff_is_binary("ab", 2));
}

/* The hand-written canonical form is exactly jansson's compact, key-sorted dump of the same
 * document — the definition the id has always had (and what Python's sort_keys gives). */
#define S(x) ((char *)(x)) /* string literals into the owned-string fields of a test value */
static void test_manifest_bytes_are_janssons_canonical_form(void **state)
{
	struct manifest m = { 0 };
	struct manifest_entry en[4] = { 0 };
	char *keys[] = { S("A\"B"), S("LOG") }, *vals[] = { S("tab\there\x01\x1f\x7f"), S("é ✓ 🚀 \\ /") };
	struct buf b;
	json_error_t je;
	(void)state;

	m.app = S("demo");
	en[0] = (struct manifest_entry){ .path = S("dir"), .type = MANIFEST_DIR, .mode = 0755 };
	en[1] = (struct manifest_entry){ .path = S("dir/a \"q\".txt"), .type = MANIFEST_FILE, .mode = 0644,
					 .size = 12345678901LL };
	memset(en[1].digest, 'a', HASH_HEX_LEN);
	en[2] = (struct manifest_entry){ .path = S("dir/l\nnk"), .type = MANIFEST_LINK, .target = S("a \"q\".txt") };
	en[3] = (struct manifest_entry){ .path = S("z\u00e9"), .type = MANIFEST_FILE, .mode = 0755 };
	memset(en[3].digest, 'b', HASH_HEX_LEN);
	m.entries = en;
	m.n_entries = 4;
	strv_init(&m.run_command);
	strv_push(&m.run_command, "python3");
	strv_push(&m.run_command, "-c");
	strv_push(&m.run_command, "print(\"\\b\f\r\")");
	m.run_env.keys = keys;
	m.run_env.values = vals;
	m.run_env.n = 2;
	m.stop_timeout_ms = 10000;
	m.run_user = S("www-data"); /* "user" sorts last in run */
	dep_list_add(&m.deps, "python", "eventlet", "0.20.0", "vendor/METADATA");
	dep_list_add(&m.deps, "node", "left-pad", "1.3.0", "package-lock.json");
	buf_init(&b, 1 << 20);
	assert_int_equal(manifest_serialize(&m, &b), 0);
	json_t *j = json_loadb(b.data, b.len, 0, &je);
	assert_non_null(j);
	char *ref = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	assert_string_equal(buf_str(&b), ref);
	free(ref);
	json_decref(j);
	{ /* run.user comes back; a manifest without it has no "user" key at all (older ids hold) */
		struct manifest *back = NULL;
		struct err e = { 0 };
		assert_non_null(strstr(buf_str(&b), ",\"user\":\"www-data\"}"));
		m.run_user = NULL;
		buf_reset(&b);
		assert_int_equal(manifest_serialize(&m, &b), 0);
		assert_null(strstr(buf_str(&b), "\"user\""));
		m.run_user = S("www-data");
		buf_reset(&b);
		assert_int_equal(manifest_serialize(&m, &b), 0);
		if (manifest_parse(b.data, b.len, &back, &e) == 0) {
			assert_string_equal(back->run_user, "www-data");
			manifest_free(back);
		}
	}
	/* not UTF-8: refused, and the buffer is left as it was */
	buf_reset(&b);
	buf_adds(&b, "x");
	en[3].path = S("bad\xff");
	assert_int_equal(manifest_serialize(&m, &b), -EILSEQ);
	assert_string_equal(buf_str(&b), "x");
	buf_done(&b);
	strv_done(&m.run_command);
	dep_list_done(&m.deps);
}

static void test_link_inside(void **state)
{
	(void)state;
	assert_true(manifest_link_inside("a/b", "../c"));
	assert_true(manifest_link_inside("a/b", "c/../d"));
	assert_false(manifest_link_inside("a/b", "../../c"));
	assert_false(manifest_link_inside("b", "../b"));
	assert_false(manifest_link_inside("b", "/etc"));
	assert_false(manifest_link_inside("b", ""));
	assert_true(manifest_link_inside("b", "."));
}

static void test_part_query(void **state)
{
	struct err e = { 0 };
	int64_t off, size;
	(void)state;
	assert_int_equal(objstore_parse_part_query(NULL, &off, &size, &e), 0);
	assert_true(off == -1 && size == -1);
	assert_int_equal(objstore_parse_part_query("", &off, &size, &e), 0);
	assert_int_equal(objstore_parse_part_query("offset=0&size=5", &off, &size, &e), 1);
	assert_true(off == 0 && size == 5);
	assert_int_equal(objstore_parse_part_query("size=1099511627776&offset=33554432", &off,
						   &size, &e), 1);
	assert_true(off == 33554432 && size == 1099511627776LL);
	static const char *const bad[] = {
		"offset=0", "size=5", "offset=5&size=5", "offset=-1&size=5", "offset=0&size=0",
		"offset=x&size=5", "offset=0&size=5&x=1", "offset=0&offset=0&size=5",
		"offset=&size=5", "offset=0&size=1099511627777", "offset=0&size=99999999999999999",
		"offset=0&size=5&", "&offset=0&size=5", "offset0&size=5", "offset=0 &size=5",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err_clear(&e);
		if (objstore_parse_part_query(bad[i], &off, &size, &e) != -CAIRN_EINPUT)
			fail_msg("accepted: %s", bad[i]);
		assert_true(e.msg[0] != 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_objstore_roundtrip_and_corruption),
		cmocka_unit_test(test_part_query),
		cmocka_unit_test(test_walk_sorted_excluded_and_refusals),
		cmocka_unit_test(test_cache_hit_miss_and_racy),
		cmocka_unit_test(test_textdiff),
		cmocka_unit_test(test_link_inside),
		cmocka_unit_test(test_manifest_bytes_are_janssons_canonical_form),
	};
	return cmocka_run_group_tests_name("release", tests, NULL, NULL);
}
