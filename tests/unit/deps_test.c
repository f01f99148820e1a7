/* Unit tests for the dependency finder: deps_scan on tests/fixtures/deps (exact list), the
 * per-format readers through deps_scan_text, and dep_list_sort. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "release/release.h"

#include <ftw.h>
#include <stdlib.h>
#include <string.h>

static struct strv walked;
static size_t walked_root;

static int walk_cb(const char *p, const struct stat *st, int type, struct FTW *f)
{
	(void)st;
	(void)f;
	if (type == FTW_F)
		strv_push(&walked, p + walked_root + 1);
	return 0;
}

/* "eco name version source" lines, one per dependency. */
static char *render(const struct dep_list *l)
{
	struct buf b;
	buf_init(&b, 1 << 20);
	for (size_t i = 0; i < l->n; i++)
		buf_addf(&b, "%s %s %s %s\n", l->v[i].ecosystem, l->v[i].name, l->v[i].version,
			 l->v[i].source);
	return buf_detach(&b);
}

static char *scan_text(const char *name, const char *text)
{
	struct dep_list l = { 0 };
	deps_scan_text(name, text, strlen(text), &l);
	dep_list_sort(&l);
	char *s = render(&l);
	dep_list_done(&l);
	return s;
}

#define SP "venv/lib/python3.11/site-packages/"

static void test_fixture_tree(void **state)
{
	const char *root = FIXTURES "/deps";
	struct dep_list l = { 0 };
	(void)state;
	strv_init(&walked);
	walked_root = strlen(root);
	assert_int_equal(nftw(root, walk_cb, 16, FTW_PHYS), 0);
	strv_sort(&walked);
	assert_int_equal(deps_scan(root, &walked, &l, NULL), 0);
	char *got = render(&l);
	assert_string_equal(
		got,
		"docker busybox 1.36 app/Dockerfile\n"
		"docker ghcr.io/acme/base latest app/Dockerfile\n"
		"docker localhost:5000/tools 2.1 app/Dockerfile\n"
		"docker nginx 1.25.3-alpine@sha256:"
		"5be1ecc7935f1dd85635d4feedaf660594030253cc97c9e9ca3819ffeac36b65 app/Dockerfile\n"
		"docker python 3.11-slim app/Dockerfile\n"
		"go github.com/pkg/errors v0.9.1 go/go.sum\n"
		"go golang.org/x/sync v0.5.0 go/go.sum\n"
		"node @babel/core 7.23.5 web-v3/package-lock.json\n"
		"node @scope/pkg 2.0.0 web-v3/node_modules/@scope/pkg/package.json\n"
		"node accepts 1.3.8 web-v1/package-lock.json\n"
		"node debug 2.6.9 web-v1/package-lock.json\n"
		"node express 4.18.2 web-v1/package-lock.json\n"
		"node left-pad 1.3.0 web-v3/node_modules/left-pad/package.json\n"
		"node react 18.2.0 web-v3/package-lock.json\n"
		"node semver 6.3.1 web-v3/package-lock.json\n"
		"python eventlet 0.20.0 " SP "eventlet-0.20.0.dist-info/METADATA\n"
		"python flask-login 0.6.3 " SP "Flask_Login-0.6.3.dist-info/METADATA\n"
		"python gunicorn 21.2.0 app/requirements.txt\n"
		"python legacy 1.0.dev0 " SP "legacy.egg-info/PKG-INFO\n"
		"python markupsafe 2.1.3 py-poetry/poetry.lock\n"
		"python psycopg2-binary 2.9.9 app/requirements.txt\n"
		"python pytest 7.4.3 py-pipenv/Pipfile.lock\n"
		"python redis 5.0.1 py-pipenv/Pipfile.lock\n"
		"python requests 2.31.0 app/requirements.txt\n"
		"python werkzeug 3.0.1 py-poetry/poetry.lock\n"
		"ruby actionpack 7.1.2 ruby/Gemfile.lock\n"
		"ruby mygem 0.3.0 ruby/Gemfile.lock\n"
		"ruby nokogiri 1.15.5-x86_64-linux ruby/Gemfile.lock\n"
		"ruby rack 3.0.8 ruby/Gemfile.lock\n"
		"rust acme-cli 0.1.0 rust/Cargo.lock\n"
		"rust serde 1.0.193 rust/Cargo.lock\n");
	free(got);
	dep_list_done(&l);
	strv_done(&walked);
}

static void test_missing_files_skipped(void **state)
{
	struct dep_list l = { 0 };
	struct strv f;
	(void)state;
	strv_init(&f);
	strv_push(&f, "nope/go.sum");
	strv_push(&f, "app/requirements.txt");
	assert_int_equal(deps_scan(FIXTURES "/deps", &f, &l, NULL), 0);
	assert_int_equal(l.n, 3);
	dep_list_done(&l);
	strv_done(&f);
}

static void test_metadata(void **state)
{
	char *s;
	(void)state;
	/* headers end at the first blank line; the body's "Name:" is not a header */
	s = scan_text("x/Foo.Bar-1.0.dist-info/METADATA",
		      "Metadata-Version: 2.1\nName:   Foo.Bar  \nSummary: x\n  continued\n"
		      "Version: 1.0\n\nName: other\n");
	assert_string_equal(s, "python foo-bar 1.0 x/Foo.Bar-1.0.dist-info/METADATA\n");
	free(s);
	s = scan_text("x/a.dist-info/METADATA", "Name: a\n\nVersion: 1\n");
	assert_string_equal(s, "");
	free(s);
	s = scan_text("lib/old.egg-info", "Name: old\nVersion: 0.1\n");
	assert_string_equal(s, "python old 0.1 lib/old.egg-info\n");
	free(s);
	/* METADATA not inside a .dist-info dir is not metadata */
	s = scan_text("docs/METADATA", "Name: a\nVersion: 1\n");
	assert_string_equal(s, "");
	free(s);
}

static void test_requirements(void **state)
{
	char *s;
	(void)state;
	s = scan_text("requirements.txt", "a==1\nb>=2\nc == 3 ; python_version<'3'\n"
					  "d[x,y]==4 --hash=sha256:00\ne===5\nf==6.*\ng==7,!=7.1\n"
					  "# h==8\n-e git+https://x/y.git#egg=y\nI_J.k==9\n");
	assert_string_equal(s, "python a 1 requirements.txt\n"
			       "python c 3 requirements.txt\n"
			       "python d 4 requirements.txt\n"
			       "python e 5 requirements.txt\n"
			       "python i-j-k 9 requirements.txt\n");
	free(s);
}

static void test_npm_locks(void **state)
{
	char *s;
	(void)state;
	s = scan_text("package-lock.json", "{\"lockfileVersion\":1,\"dependencies\":{\"a\":{"
					   "\"version\":\"1.0.0\",\"dependencies\":{\"b\":{"
					   "\"version\":\"2.0.0\"}}},\"c\":{}}}");
	assert_string_equal(s, "node a 1.0.0 package-lock.json\nnode b 2.0.0 package-lock.json\n");
	free(s);
	/* v2 has both maps: "packages" wins, nothing is counted twice */
	s = scan_text("w/package-lock.json",
		      "{\"lockfileVersion\":2,\"packages\":{\"\":{\"version\":\"9.9.9\"},"
		      "\"node_modules/a\":{\"version\":\"1.0.0\"}},\"dependencies\":{\"a\":{"
		      "\"version\":\"1.0.0\"},\"old\":{\"version\":\"0.1.0\"}}}");
	assert_string_equal(s, "node a 1.0.0 w/package-lock.json\n");
	free(s);
	s = scan_text("package-lock.json", "[1,2]");
	assert_string_equal(s, "");
	free(s);
	s = scan_text("package-lock.json", "{\"packages\": ");
	assert_string_equal(s, "");
	free(s);
	/* a package.json outside node_modules is the app's manifest, not a dependency */
	s = scan_text("package.json", "{\"name\":\"app\",\"version\":\"1.0.0\"}");
	assert_string_equal(s, "");
	free(s);
	s = scan_text("node_modules/a/node_modules/b/package.json",
		      "{\"name\":\"b\",\"version\":\"3.0.0\"}");
	assert_string_equal(s, "node b 3.0.0 node_modules/a/node_modules/b/package.json\n");
	free(s);
}

static void test_gemfile_lock_go_sum(void **state)
{
	char *s;
	(void)state;
	s = scan_text("Gemfile.lock", "GEM\n  specs:\n    a (1.0)\n      b (>= 1)\n    c (2.0-java)\n"
				      "    broken\n    d ()\n\nDEPENDENCIES\n    e (3.0)\n");
	assert_string_equal(s, "ruby a 1.0 Gemfile.lock\nruby c 2.0-java Gemfile.lock\n");
	free(s);
	s = scan_text("go.sum", "a v1 h1:x\na v1/go.mod h1:y\nb v2/go.mod h1:z\njunk\n\nc v3 h1:w");
	assert_string_equal(s, "go a v1 go.sum\ngo c v3 go.sum\n");
	free(s);
}

static void test_toml_locks(void **state)
{
	char *s;
	(void)state;
	s = scan_text("Cargo.lock", "[[package]]\nname = \"a\"\nversion = \"1.0.0\"\n"
				    "[[package]]\nname = \"b\"\n"          /* no version: skipped */
				    "[[package]]\nversion = \"3.0.0\"\n"  /* no name: skipped */
				    "[[package]]\nname = 'c'\nversion = \"\"\"4.0.0\"\"\"\n"
				    "garbage ] [ =\n[[package]]\nname = \"d\"\nversion = \"5\"\n");
	assert_string_equal(s, "rust a 1.0.0 Cargo.lock\nrust c 4.0.0 Cargo.lock\n"
			       "rust d 5 Cargo.lock\n");
	free(s);
	s = scan_text("uv.lock", "version = 1\n[[package]]\nname = \"Jinja2\"\nversion = \"3.1.2\"\n");
	assert_string_equal(s, "python jinja2 3.1.2 uv.lock\n");
	free(s);
}

static void test_docker(void **state)
{
	char *s;
	(void)state;
	s = scan_text("Dockerfile", "ARG BASE=debian\nARG TAG\nFROM --platform=linux/arm64 "
				    "${BASE}:${TAG:-12} AS a\nFROM a\nFROM $BASE@sha256:abc\n"
				    "from Alpine:3.19 as B\ncopy --from=b /x /y\nCOPY --from=0 /x /y\n");
	assert_string_equal(s, "docker Alpine 3.19 Dockerfile\n"
			       "docker debian 12 Dockerfile\n"
			       "docker debian @sha256:abc Dockerfile\n");
	free(s);
}

static void test_sort_dedupe(void **state)
{
	struct dep_list l = { 0 };
	(void)state;
	dep_list_add(&l, "python", "b", "1", "x");
	dep_list_add(&l, "python", "a", "2", "y");
	dep_list_add(&l, "python", "b", "1", "x");
	dep_list_add(&l, "node", "z", NULL, NULL);
	dep_list_add(&l, "python", "b", "1", "w");
	dep_list_sort(&l);
	char *s = render(&l);
	assert_string_equal(s, "node z  \npython a 2 y\npython b 1 w\npython b 1 x\n");
	free(s);
	dep_list_done(&l);
	dep_list_sort(&l); /* empty: fine */
	assert_int_equal(l.n, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixture_tree),
		cmocka_unit_test(test_missing_files_skipped),
		cmocka_unit_test(test_metadata),
		cmocka_unit_test(test_requirements),
		cmocka_unit_test(test_npm_locks),
		cmocka_unit_test(test_gemfile_lock_go_sum),
		cmocka_unit_test(test_toml_locks),
		cmocka_unit_test(test_docker),
		cmocka_unit_test(test_sort_dedupe),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
