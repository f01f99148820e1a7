/* Unit tests for the machinery under the pins readers: the toml-lite reader, logical lines
 * and shell words, the tree walk (lockfiles, workspaces, -r includes, symlinks, --exclude)
 * and the printed report. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "release/release-internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* "FILE:LINE:COL SPEC" per finding. */
static char *render(const struct pin_report *r)
{
	struct buf b;
	buf_init(&b, 1 << 20);
	for (size_t i = 0; i < r->n; i++)
		buf_addf(&b, "%s:%d:%d %s\n", r->v[i].file, r->v[i].line, r->v[i].col,
			 r->v[i].spec);
	return buf_detach(&b);
}

/* ---- toml-lite ---------------------------------------------------------------------------- */

static void toml_collect(void *ctx, const struct toml__seg *p, size_t n, size_t nh, unsigned seq,
			 const struct toml__val *v)
{
	struct buf *b = ctx;
	buf_addf(b, "%u ", seq);
	for (size_t i = 0; i < n; i++)
		buf_addf(b, "%s%s@%d:%d", i ? (i == nh ? " | " : ".") : "", p[i].s, p[i].line,
			 p[i].col);
	if (!v) {
		buf_adds(b, " (header)\n");
		return;
	}
	switch (v->kind) {
	case TOML_STR: buf_addf(b, " = str[%s]@%d:%d\n", v->s, v->line, v->col); break;
	case TOML_RAW: buf_addf(b, " = raw[%s]\n", v->s); break;
	case TOML_ARR: buf_addf(b, " = arr[%zu]\n", v->n); break;
	case TOML_TAB: buf_addf(b, " = tab[%zu]\n", v->n); break;
	}
}

static char *toml(const char *text)
{
	struct buf b;
	buf_init(&b, 1 << 20);
	toml__read(text, strlen(text), toml_collect, &b);
	return buf_detach(&b);
}

static void test_toml_lite(void **state)
{
	char *s;
	(void)state;
	s = toml("a = 1\n"
		 "\"q.k\" . b = 'lit\\n'\n"
		 "[t . 'u v']  # comment\n"
		 "s = \"esc\\t\\u00e9\\\"\"\n"
		 "m = \"\"\"\nline1\nline2 \\\n   joined\"\"\"\n"
		 "arr = [ 1, [2, 3], { x = \"y\" }, # c\n  \"z\", ]\n"
		 "[[p]]\n"
		 "it = { a = 1, b.c = \"d\", e = [] }\n"
		 "bad = \n"
		 "= 3\n"
		 "[broken\n"
		 "after = true\n"
		 "date = 1979-05-27T07:32:00Z\n");
	assert_string_equal(s, "0 a@1:1 = raw[1]\n"
			       "0 q.k@2:2.b@2:9 = str[lit\\n]@2:14\n"
			       "1 t@3:2.u v@3:7 (header)\n"
			       "1 t@3:2.u v@3:7 | s@4:1 = str[esc\t\xc3\xa9\"]@4:6\n"
			       "1 t@3:2.u v@3:7 | m@5:1 = str[line1\nline2 joined]@6:1\n"
			       "1 t@3:2.u v@3:7 | arr@9:1 = arr[4]\n"
			       "2 p@11:3 (header)\n"
			       "2 p@11:3 | it@12:1 = tab[3]\n"
			       "2 p@11:3 | after@16:1 = raw[true]\n"
			       "2 p@11:3 | date@17:1 = raw[1979-05-27T07:32:00Z]\n");
	free(s);
	/* junk and unterminated values never read past the end */
	s = toml("a = \"unterminated\nb = [1, 2\nc = { x = \nd = '''never\n");
	assert_string_equal(s, "");
	free(s);
	s = toml("\"\\uZZZZ\" = 1\nk = \"\\ud800\"\nk2 = \"\\q\"\nok = 2");
	assert_string_equal(s, "0 ok@4:1 = raw[2]\n");
	free(s);
	/* nesting beyond the bound is refused, not recursed into */
	struct buf deep;
	buf_init(&deep, 1 << 16);
	buf_adds(&deep, "x = ");
	for (int i = 0; i < 200; i++)
		buf_addc(&deep, '[');
	for (int i = 0; i < 200; i++)
		buf_addc(&deep, ']');
	buf_adds(&deep, "\ny = 1\n");
	s = toml(buf_str(&deep));
	assert_string_equal(s, "0 y@2:1 = raw[1]\n");
	free(s);
	buf_done(&deep);
}

static void test_toml_get(void **state)
{
	struct toml__val tab = { .kind = TOML_TAB };
	struct toml__val kids[2] = {
		{ .kind = TOML_STR, .s = (char *)"1", .key = (char *)"version" },
		{ .kind = TOML_RAW, .s = (char *)"true", .key = (char *)"optional" },
	};
	(void)state;
	tab.kids = kids;
	tab.n = 2;
	assert_string_equal(toml__get_str(&tab, "version"), "1");
	assert_null(toml__get_str(&tab, "optional"));
	assert_non_null(toml__get(&tab, "optional"));
	assert_null(toml__get(&tab, "nope"));
	assert_null(toml__get(&kids[0], "x"));
}

/* ---- lines and words ---------------------------------------------------------------------- */

static void test_lines_and_words(void **state)
{
	struct pins__reader rd;
	struct pins__lline ll;
	int line, col;
	const char *t = "a \\\n  b\r\nc\\";
	(void)state;
	pins__reader_init(&rd, t, strlen(t));
	pins__lline_init(&ll);
	assert_true(pins__next_lline(&rd, &ll, PINS_LINES_SHELL));
	assert_string_equal(buf_str(&ll.text), "a   b");
	pins__lline_pos(&ll, 4, &line, &col);
	assert_int_equal(line, 2);
	assert_int_equal(col, 3);
	assert_true(pins__next_lline(&rd, &ll, PINS_LINES_SHELL));
	assert_string_equal(buf_str(&ll.text), "c");
	assert_int_equal(ll.line, 3);
	assert_false(pins__next_lline(&rd, &ll, PINS_LINES_SHELL));
	pins__lline_done(&ll);

	struct pins__words w = { 0 };
	const char *s = "A=1 x 'y z' \"q\\\"$v\" a\\ b 2>&1 >f && k;l|m `n o` $(p (q) r) #c";
	pins__words_split(s, strlen(s), 10, &w);
	const char *want[] = { "A=1", "x", "y z", "q\"$v", "a b", "", "k", "", "l", "", "m",
			       "`n o`", "$(p (q) r)" };
	assert_int_equal(w.n, ARRAY_SIZE(want));
	for (size_t i = 0; i < w.n; i++)
		assert_string_equal(w.v[i].s, want[i]);
	assert_int_equal(w.v[2].off, 10 + 7);
	assert_true(w.v[3].dyn);
	assert_false(w.v[4].dyn);
	assert_true(w.v[5].sep);
	assert_true(w.v[11].dyn && w.v[12].dyn);
	pins__words_done(&w);
	/* unbalanced quotes and expansions end at the end of the text */
	s = "'open \"also $(never";
	pins__words_split(s, strlen(s), 0, &w);
	assert_int_equal(w.n, 1);
	pins__words_done(&w);
	s = "x `";
	pins__words_split(s, strlen(s), 0, &w);
	assert_int_equal(w.n, 2);
	pins__words_done(&w);
}

/* ---- scanning a tree ---------------------------------------------------------------------- */

static char *tmpdir;

static void put(const char *rel, const char *text)
{
	char *p = fs_join(tmpdir, rel);
	char *slash = strrchr(p, '/');
	*slash = 0;
	assert_int_equal(fs_mkdir_p(p, 0755, NULL), 0);
	*slash = '/';
	assert_int_equal(fs_write_atomic(p, text, strlen(text), 0644, NULL), 0);
	free(p);
}

static char *scan_tree(const struct strv *exclude, size_t *files)
{
	struct pin_report r = { 0 };
	struct err e;
	assert_int_equal(pins_scan(tmpdir, exclude, &r, &e), 0);
	char *s = render(&r);
	*files = r.files_scanned;
	pin_report_done(&r);
	return s;
}

static void test_tree_locks_and_workspaces(void **state)
{
	size_t files;
	char *s;
	(void)state;
	tmpdir = fs_mkdtemp("/tmp", NULL);
	assert_non_null(tmpdir);
	put("n/package.json", "{\"workspaces\":[\"p/*\"],\"dependencies\":{\"a\":\"^1\"}}");
	put("n/p/x/package.json", "{\"dependencies\":{\"b\":\"^1\"}}");
	put("c/Cargo.toml", "[workspace]\nmembers = [\"m\"]\n");
	put("c/m/Cargo.toml", "[dependencies]\nserde = \"1\"\n");
	put("other/package.json", "{\"dependencies\":{\"c\":\"^1\"}}");
	s = scan_tree(NULL, &files);
	assert_string_equal(s, "c/m/Cargo.toml:1:1 Cargo.toml\n"
			       "c/m/Cargo.toml:2:1 serde = \"1\"\n"
			       "n/p/x/package.json:1:1 package.json\n"
			       "n/p/x/package.json:1:19 b@^1\n"
			       "n/package.json:1:1 package.json\n"
			       "n/package.json:1:40 a@^1\n"
			       "other/package.json:1:1 package.json\n"
			       "other/package.json:1:19 c@^1\n");
	assert_int_equal(files, 5);
	free(s);
	put("n/pnpm-lock.yaml", "lockfileVersion: '6.0'\n");
	put("c/Cargo.lock", "version = 3\n");
	put("package-lock.json", "{}"); /* above, but the root has no workspaces: no cover */
	s = scan_tree(NULL, &files);
	assert_string_equal(s, "other/package.json:1:1 package.json\n"
			       "other/package.json:1:19 c@^1\n");
	free(s);
	struct strv ex;
	strv_init(&ex);
	strv_push(&ex, "other/");
	s = scan_tree(&ex, &files);
	assert_string_equal(s, "");
	assert_int_equal(files, 4);
	free(s);
	strv_done(&ex);
	fs_rm_rf(tmpdir);
	free(tmpdir);
}

static void test_tree_includes_and_links(void **state)
{
	size_t files;
	char *s;
	(void)state;
	tmpdir = fs_mkdtemp("/tmp", NULL);
	assert_non_null(tmpdir);
	put("app/requirements.txt", "-r ../shared/base.txt\n-r ../../outside.txt\n-r missing.txt\n"
				    "-c ./requirements.txt\n-r deps/../deps/x.txt\n");
	put("shared/base.txt", "-r more.in\na\n");
	put("shared/more.in", "b>=1\n-r base.txt\n");
	put("app/deps/x.txt", "c\n");
	put("real/requirements.txt", "d\n");
	put("real/Dockerfile", "FROM e\n");
	char *link = fs_join(tmpdir, "linked");
	assert_int_equal(symlink("real", link), 0);
	free(link);
	link = fs_join(tmpdir, "app/requirements-link.txt");
	assert_int_equal(symlink("../real/requirements.txt", link), 0);
	free(link);
	put("app/uses-link.txt", "");
	put("app/requirements-2.txt", "-r ../linked/requirements.txt\n");
	s = scan_tree(NULL, &files);
	assert_string_equal(s, "app/deps/x.txt:1:1 c\n"
			       "real/Dockerfile:1:6 e\n"
			       "real/requirements.txt:1:1 d\n"
			       "shared/base.txt:2:1 a\n"
			       "shared/more.in:1:1 b>=1\n");
	assert_int_equal(files, 7);
	free(s);
	fs_rm_rf(tmpdir);
	free(tmpdir);
}

static void test_missing_dir(void **state)
{
	struct pin_report r = { 0 };
	struct err e;
	(void)state;
	assert_int_equal(pins_scan("/nonexistent/cairn-pins", NULL, &r, &e), -CAIRN_EINPUT);
	assert_non_null(strstr(e.msg, "no such directory"));
	assert_int_equal(pins_scan(FIXTURES "/pins/README", NULL, &r, &e), -CAIRN_EINPUT);
	assert_non_null(strstr(e.msg, "not a directory"));
	assert_int_equal(r.n, 0);
}

static void test_print(void **state)
{
	struct pin_report r = { 0 };
	char *out = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&out, &n);
	(void)state;
	pins_print(&r, f);
	pins_scan_text("requirements.txt", "eventlet\n", 9, &r);
	pins_print(&r, f);
	pins_scan_text("Dockerfile", "FROM a\nFROM b\n", 14, &r);
	pins_print(&r, f);
	fclose(f);
	assert_string_equal(
		out, "all dependencies pinned (0 files scanned)\n"
		     "requirements.txt:1:1: unpinned: eventlet \u2014 no version: the newest release at "
		     "build time is installed\n"
		     "    fix: pin an exact version: eventlet==VERSION (`pip freeze` where you tested "
		     "shows it; pip-compile pins the whole tree)\n"
		     "1 unpinned dependency in 1 file (1 file scanned)\n"
		     "Dockerfile:1:6: unpinned: a \u2014 no tag and no digest: `latest` at build time "
		     "is used, whatever it is then\n"
		     "    fix: pin the digest: FROM a:<tag>@sha256:<digest> (`docker buildx "
		     "imagetools inspect a` prints it)\n"
		     "Dockerfile:2:6: unpinned: b \u2014 no tag and no digest: `latest` at build time "
		     "is used, whatever it is then\n"
		     "    fix: pin the digest: FROM b:<tag>@sha256:<digest> (`docker buildx "
		     "imagetools inspect b` prints it)\n"
		     "requirements.txt:1:1: unpinned: eventlet \u2014 no version: the newest release at "
		     "build time is installed\n"
		     "    fix: pin an exact version: eventlet==VERSION (`pip freeze` where you tested "
		     "shows it; pip-compile pins the whole tree)\n"
		     "3 unpinned dependencies in 2 files (2 files scanned)\n");
	free(out);
	pin_report_done(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_toml_lite),
		cmocka_unit_test(test_toml_get),
		cmocka_unit_test(test_lines_and_words),
		cmocka_unit_test(test_tree_locks_and_workspaces),
		cmocka_unit_test(test_tree_includes_and_links),
		cmocka_unit_test(test_missing_dir),
		cmocka_unit_test(test_print),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
