/* Unit tests for release/export.c and import.c: a release built through the object store and
 * the manifest API is exported, imported into a second state directory with the same id and
 * the same bytes, exported deterministically; a corrupt object fails the export; a refused
 * import leaves the store untouched. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "release/release.h"
#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct state {
	char *dir;
	struct objstore *os;
	struct store *st;
};

struct fixture {
	char *root; /* temp dir holding everything */
	struct state a, b;
	char id[HASH_ID_LEN + 1];
};

static void state_open(struct state *s, const char *root, const char *name)
{
	struct err e;
	s->dir = fs_join(root, name);
	if (fs_mkdir_p(s->dir, 0700, &e) < 0 || objstore_open(s->dir, &s->os, &e) < 0 ||
	    store_open_sqlite(s->dir, &s->st, &e) < 0)
		fail_msg("opening %s: %s", s->dir, e.msg);
}

static void state_close(struct state *s)
{
	store_close(s->st);
	objstore_free(s->os);
	free(s->dir);
}

static void add_file(struct manifest *m, const char *path, const char *content, unsigned mode,
		     struct objstore *os)
{
	struct manifest_entry *en = &m->entries[m->n_entries++];
	struct err e;
	en->path = xstrdup(path);
	en->type = MANIFEST_FILE;
	en->mode = mode;
	en->size = (int64_t)strlen(content);
	if (objstore_put_mem(os, content, strlen(content), en->digest, &e) < 0)
		fail_msg("put: %s", e.msg);
}

/* Stores a small release in s the way build does: objects, the manifest object, the row. */
static void build_release(struct state *s, const char *tag, char *out_id)
{
	struct manifest *m = xcalloc(1, sizeof(*m));
	struct store_release rel;
	char hex[HASH_HEX_LEN + 1];
	struct err e;
	struct buf b;

	m->app = xstrdup("demo");
	m->entries = xcalloc(6, sizeof(*m->entries));
	strv_init(&m->run_command);
	strv_push(&m->run_command, "python3");
	strv_push(&m->run_command, "app.py");
	m->stop_timeout_ms = 10000;
	add_file(m, "app.py", "print('hello')\n", 0644, s->os);
	add_file(m, "empty", "", 0600, s->os);
	m->entries[m->n_entries++] =
	    (struct manifest_entry){.path = xstrdup("lib"), .type = MANIFEST_DIR, .mode = 0755};
	add_file(m, "lib/u.py", "X = 1\n", 0755, s->os);
	m->entries[m->n_entries++] = (struct manifest_entry){.path = xstrdup("link"),
							     .type = MANIFEST_LINK,
							     .target = xstrdup("lib/u.py"),
							     .size = 8};
	assert_int_equal(manifest_validate(m, &e), 0);
	buf_init(&b, MANIFEST_MAX_BYTES);
	assert_int_equal(manifest_serialize(m, &b), 0);
	if (objstore_put_mem(s->os, b.data, b.len, hex, &e) < 0)
		fail_msg("put manifest: %s", e.msg);
	memset(&rel, 0, sizeof(rel));
	snprintf(rel.id, sizeof(rel.id), "sha256:%s", hex);
	snprintf(rel.app, sizeof(rel.app), "demo");
	snprintf(rel.tag, sizeof(rel.tag), "%s", tag);
	rel.created_at = 1700000000;
	rel.n_files = 3;
	rel.bytes = 21;
	if (store_release_put(s->st, &rel, &e) < 0)
		fail_msg("release put: %s", e.msg);
	memcpy(out_id, rel.id, sizeof(rel.id));
	buf_done(&b);
	manifest_free(m);
}

static int setup(void **st)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR");
	struct err e;
	f->root = fs_mkdtemp(tmp && *tmp ? tmp : "/tmp", &e);
	assert_non_null(f->root);
	state_open(&f->a, f->root, "a");
	state_open(&f->b, f->root, "b");
	build_release(&f->a, "v1", f->id);
	*st = f;
	return 0;
}

static int teardown(void **st)
{
	struct fixture *f = *st;
	state_close(&f->a);
	state_close(&f->b);
	fs_rm_rf(f->root);
	free(f->root);
	free(f);
	return 0;
}

/* Exports id from s into a new file under the fixture root; returns an fd at offset 0. */
static int export_to(struct fixture *f, struct state *s, const char *id, const char *name,
		     const struct release_meta *meta, struct err *e, int *out_r)
{
	char *path = fs_join(f->root, name);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	*out_r = release_export_meta(s->os, id, meta, fd, e);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	free(path);
	return fd;
}

static void read_all(int fd, struct buf *b)
{
	buf_init(b, 64 << 20);
	assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
	assert_int_equal(fs_read_fd(fd, b), 0);
}

static size_t count_files(const char *dir)
{
	size_t n = 0;
	DIR *d = opendir(dir);
	struct dirent *de;
	if (!d)
		return 0;
	while ((de = readdir(d))) {
		char *p;
		if (de->d_name[0] == '.')
			continue;
		p = fs_join(dir, de->d_name);
		n += fs_is_dir(p) ? count_files(p) : 1;
		free(p);
	}
	closedir(d);
	return n;
}

static void test_round_trip(void **st)
{
	struct fixture *f = *st;
	struct release_import_result res;
	struct release_meta meta = {.tag = "v1", .created_at = 1700000000};
	struct store_release rel;
	struct buf one, two;
	struct err e;
	int fd1, fd2, r;

	fd1 = export_to(f, &f->a, f->id, "one.tar.zst", &meta, &e, &r);
	if (r < 0)
		fail_msg("export: %s", e.msg);
	if (release_import_archive(f->b.os, f->b.st, fd1, &res, &e) < 0)
		fail_msg("import: %s", e.msg);
	assert_string_equal(res.id, f->id);
	assert_string_equal(res.app, "demo");
	assert_string_equal(res.tag, "v1");
	assert_int_equal(res.n_files, 3);
	assert_int_equal(res.n_new_objects, 3);
	assert_int_equal(res.bytes, 21);
	assert_false(res.existed);
	assert_int_equal(store_release_get(f->b.st, f->id, &rel, &e), 0);
	assert_string_equal(rel.tag, "v1");
	assert_int_equal(rel.created_at, 1700000000);
	assert_int_equal(release_verify(f->b.os, f->id, NULL, NULL, &e), 0);

	/* the second machine exports the same bytes */
	fd2 = export_to(f, &f->b, f->id, "two.tar.zst", &meta, &e, &r);
	assert_int_equal(r, 0);
	read_all(fd1, &one);
	read_all(fd2, &two);
	assert_true(one.len > 0);
	assert_int_equal(one.len, two.len);
	assert_memory_equal(one.data, two.data, one.len);

	/* importing again is harmless: the same id, nothing new */
	assert_int_equal(lseek(fd1, 0, SEEK_SET), 0);
	if (release_import_archive(f->b.os, f->b.st, fd1, &res, &e) < 0)
		fail_msg("re-import: %s", e.msg);
	assert_true(res.existed);
	assert_int_equal(res.n_new_objects, 0);
	assert_string_equal(res.tag, "v1");
	buf_done(&one);
	buf_done(&two);
	close(fd1);
	close(fd2);
}

static void test_deterministic(void **st)
{
	struct fixture *f = *st;
	struct release_meta meta = {.tag = "v1", .created_at = 1700000000};
	struct buf one, two, m1, m2;
	struct err e;
	int fd1, fd2, fd3, fd4, r;
	char id[HASH_ID_LEN + 1];
	char *p2 = fs_join(f->root, "d2");

	fd1 = export_to(f, &f->a, f->id, "d1", NULL, &e, &r);
	assert_int_equal(r, 0);
	/* release_export is the same without meta.json */
	fd2 = open(p2, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd2 >= 0);
	assert_int_equal(release_export(f->a.os, f->id, fd2, &e), 0);
	read_all(fd1, &one);
	read_all(fd2, &two);
	assert_int_equal(one.len, two.len);
	assert_memory_equal(one.data, two.data, one.len);
	/* zstd frame magic: 28 b5 2f fd */
	assert_memory_equal(one.data, "\x28\xb5\x2f\xfd", 4);

	fd3 = export_to(f, &f->a, f->id, "d3", &meta, &e, &r);
	assert_int_equal(r, 0);
	fd4 = export_to(f, &f->a, f->id, "d4", &meta, &e, &r);
	assert_int_equal(r, 0);
	read_all(fd3, &m1);
	read_all(fd4, &m2);
	assert_int_equal(m1.len, m2.len);
	assert_memory_equal(m1.data, m2.data, m1.len);
	assert_true(m1.len != one.len || memcmp(m1.data, one.data, one.len) != 0);

	/* without meta.json: imported untagged, through the short form */
	assert_int_equal(lseek(fd1, 0, SEEK_SET), 0);
	assert_int_equal(release_import(f->b.os, f->b.st, fd1, id, &e), 0);
	assert_string_equal(id, f->id);
	buf_done(&one);
	buf_done(&two);
	buf_done(&m1);
	buf_done(&m2);
	close(fd1);
	close(fd2);
	close(fd3);
	close(fd4);
	free(p2);
}

static void test_corrupt_object_fails_export(void **st)
{
	struct fixture *f = *st;
	char hex[HASH_HEX_LEN + 1], *path;
	struct buf out;
	struct err e;
	int fd, r;

	hash_mem("X = 1\n", 6, hex);
	path = objstore_path(f->a.os, hex);
	assert_int_equal(chmod(path, 0644), 0);
	assert_int_equal(fs_write_atomic(path, "X = 2\n", 6, 0444, &e), 0);
	fd = export_to(f, &f->a, f->id, "c", NULL, &e, &r);
	assert_int_equal(r, -CAIRN_ECORRUPT);
	assert_non_null(strstr(e.msg, "files/lib/u.py"));
	read_all(fd, &out);
	assert_null(memmem(out.data ? out.data : "", out.len, "X = 2", 5));
	buf_done(&out);
	close(fd);

	assert_int_equal(unlink(path), 0);
	fd = export_to(f, &f->a, f->id, "c2", NULL, &e, &r);
	assert_int_equal(r, -CAIRN_ECORRUPT);
	assert_non_null(strstr(e.msg, "files/lib/u.py"));
	close(fd);
	free(path);

	/* an id with no manifest object */
	fd = export_to(f, &f->a,
		       "sha256:0000000000000000000000000000000000000000000000000000000000000000",
		       "c3", NULL, &e, &r);
	assert_true(r < 0);
	close(fd);
}

static void test_refused_import_writes_nothing(void **st)
{
	struct fixture *f = *st;
	struct release_import_result res;
	struct buf good;
	struct err e;
	char *objects = fs_join(f->b.dir, "objects"), *tmp = fs_join(f->b.dir, "tmp");
	char *path = fs_join(f->root, "cut");
	int fd, r;

	fd = export_to(f, &f->a, f->id, "g", NULL, &e, &r);
	assert_int_equal(r, 0);
	read_all(fd, &good);
	close(fd);
	/* every proper prefix of a valid archive is refused, and leaves nothing behind */
	for (size_t cut = 0; cut < good.len; cut += good.len / 16 + 1) {
		assert_int_equal(fs_write_atomic(path, good.data, cut, 0600, &e), 0);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		assert_true(fd >= 0);
		r = release_import_archive(f->b.os, f->b.st, fd, &res, &e);
		close(fd);
		if (r != -CAIRN_EINPUT)
			fail_msg("prefix of %zu bytes: %d %s", cut, r, e.msg);
		assert_int_equal(count_files(objects), 0);
		assert_int_equal(count_files(tmp), 0);
		assert_int_equal(store_release_get(f->b.st, f->id, &(struct store_release){0}, &e),
				 -CAIRN_ENOTFOUND);
	}
	buf_done(&good);
	free(path);
	free(objects);
	free(tmp);
}

static void test_tag_collision(void **st)
{
	struct fixture *f = *st;
	struct release_import_result res;
	struct release_meta meta = {.tag = "v1", .created_at = 5};
	char other[HASH_ID_LEN + 1];
	struct err e;
	int fd, r;

	/* b already has another release of "demo" tagged v1 */
	{
		struct store_release rel = {.created_at = 1};
		snprintf(rel.id, sizeof(rel.id),
			 "sha256:1111111111111111111111111111111111111111111111111111111111111111");
		snprintf(rel.app, sizeof(rel.app), "demo");
		snprintf(rel.tag, sizeof(rel.tag), "v1");
		assert_int_equal(store_release_put(f->b.st, &rel, &e), 0);
		memcpy(other, rel.id, sizeof(other));
	}
	fd = export_to(f, &f->a, f->id, "t", &meta, &e, &r);
	assert_int_equal(r, 0);
	if (release_import_archive(f->b.os, f->b.st, fd, &res, &e) < 0)
		fail_msg("import: %s", e.msg);
	close(fd);
	assert_string_equal(res.dropped_tag, "v1");
	assert_string_equal(res.tag, "");
	{
		char id[HASH_ID_LEN + 1];
		assert_int_equal(store_release_resolve(f->b.st, "demo", "v1", id, &e), 0);
		assert_string_equal(id, other);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_deterministic, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_corrupt_object_fails_export, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refused_import_writes_nothing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tag_collision, setup, teardown),
	};
	return cmocka_run_group_tests_name("archive", tests, NULL, NULL);
}
