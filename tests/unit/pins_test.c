/* Unit tests for the pins readers: each manifest format's edge cases through pins_scan_text,
 * as exact LINE:COL SPEC lists (anything not listed must not be reported). The shared
 * machinery (toml-lite, lines, words, the walk, printing) is in pins_core_test.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "release/release-internal.h"

#include <stdlib.h>
#include <string.h>

/* "LINE:COL SPEC" per finding. */
static char *render(const struct pin_report *r)
{
	struct buf b;
	buf_init(&b, 1 << 20);
	for (size_t i = 0; i < r->n; i++)
		buf_addf(&b, "%d:%d %s\n", r->v[i].line, r->v[i].col, r->v[i].spec);
	return buf_detach(&b);
}

static char *scan(const char *name, const char *text)
{
	struct pin_report r = { 0 };
	assert_int_equal(pins_scan_text(name, text, strlen(text), &r), 1);
	assert_int_equal(r.files_scanned, 1);
	char *s = render(&r);
	pin_report_done(&r);
	return s;
}

#define CHECK(name, text, want)                                                           \
	do {                                                                              \
		char *got_ = scan(name, text);                                            \
		assert_string_equal(got_, want);                                          \
		free(got_);                                                               \
	} while (0)

static void test_kind_of(void **state)
{
	(void)state;
	assert_int_equal(pins__kind_of("requirements.txt"), PINS_REQUIREMENTS);
	assert_int_equal(pins__kind_of("a/requirements-dev.txt"), PINS_REQUIREMENTS);
	assert_int_equal(pins__kind_of("constraints.txt"), PINS_REQUIREMENTS);
	assert_int_equal(pins__kind_of("requirements/prod.txt"), PINS_REQUIREMENTS);
	assert_int_equal(pins__kind_of("x/requirements/prod.txt"), PINS_REQUIREMENTS);
	assert_int_equal(pins__kind_of("myrequirements/prod.txt"), PINS_NONE);
	assert_int_equal(pins__kind_of("requirements.in"), PINS_NONE);
	assert_int_equal(pins__kind_of("notes.txt"), PINS_NONE);
	assert_int_equal(pins__kind_of("Dockerfile"), PINS_DOCKERFILE);
	assert_int_equal(pins__kind_of("Dockerfile.prod"), PINS_DOCKERFILE);
	assert_int_equal(pins__kind_of("api.Dockerfile"), PINS_DOCKERFILE);
	assert_int_equal(pins__kind_of("Containerfile"), PINS_DOCKERFILE);
	assert_int_equal(pins__kind_of("Dockerfile.dockerignore"), PINS_NONE);
	assert_int_equal(pins__kind_of("deploy.sh"), PINS_SHELL);
	assert_int_equal(pins__kind_of("Cargo.toml"), PINS_CARGO);
	assert_int_equal(pins__kind_of("Cargo.lock"), PINS_NONE);
	assert_int_equal(pins__kind_of("go.mod"), PINS_GOMOD);
	assert_int_equal(pins__kind_of("Gemfile"), PINS_GEMFILE);
	assert_int_equal(pins__kind_of("Pipfile"), PINS_PIPFILE);
	assert_int_equal(pins__kind_of("pyproject.toml"), PINS_PYPROJECT);
	assert_int_equal(pins__kind_of("package.json"), PINS_PACKAGE_JSON);
	struct pin_report r = { 0 };
	assert_int_equal(pins_scan_text("README.md", "eventlet", 8, &r), 0);
	assert_int_equal(r.files_scanned, 0);
}

static void test_requirements(void **state)
{
	(void)state;
	CHECK("requirements.txt",
	      "# a comment line\n"
	      "eventlet\n"
	      "  eventlet>=0.20   # trailing comment\n"
	      "x==1.0\n"
	      "pkg[extra1, extra2]==1.2.3 ; python_version < \"3.8\"\n"
	      "marked ; sys_platform == 'linux'\n"
	      "spaced >= 1.0 , < 2\n"
	      "paren (>=1.0)\n"
	      "compat~=1.4\n"
	      "wild==1.*\n"
	      "ne!=1.0\n"
	      "upper<3\n"
	      "triple===1.0\n"
	      "cont==1.0 \\\n"
	      "    --hash=sha256:aa \\\n"
	      "    --hash=sha256:bb\n"
	      "split \\\n"
	      "  >=2\n"
	      "--index-url https://pypi.org/simple\n"
	      "-i https://x\n"
	      "--no-binary :all:\n"
	      "-r other.txt\n"
	      "-c constraints.txt\n"
	      "hashed-range>=1 --hash=sha256:cc\n"
	      "weird 1.0\n"
	      "\n"
	      "   \n",
	      "2:1 eventlet\n"
	      "3:3 eventlet>=0.20\n"
	      "6:1 marked\n"
	      "7:1 spaced >= 1.0 , < 2\n"
	      "8:1 paren (>=1.0)\n"
	      "9:1 compat~=1.4\n"
	      "10:1 wild==1.*\n"
	      "11:1 ne!=1.0\n"
	      "12:1 upper<3\n"
	      "17:1 split >=2\n"
	      "24:1 hashed-range>=1\n");
}

static void test_requirements_urls(void **state)
{
	(void)state;
	CHECK("requirements.txt",
	      "-e git+https://github.com/a/b.git@main#egg=b\n"
	      "-e git+https://github.com/a/c.git@0123456789abcdef0123456789abcdef01234567#egg=c\n"
	      "--editable=git+ssh://git@github.com/a/d.git#egg=d\n"
	      "-egit+https://github.com/a/e.git@v1#egg=e\n"
	      "git+https://github.com/a/f.git\n"
	      "hg+https://hg.example/g@0123456789abcdef0123456789abcdef01234567\n"
	      "svn+https://svn.example/h@1234#egg=h\n"
	      "svn+https://svn.example/i@trunk#egg=i\n"
	      "name @ https://example.com/n-1.0.tar.gz\n"
	      "hashed @ https://example.com/h.whl#sha256=00ff\n"
	      "https://example.com/p.whl\n"
	      "https://example.com/q.whl --hash=sha256:00\n"
	      "file:///srv/wheels/r.whl\n"
	      "./local/pkg\n"
	      "-e .\n"
	      "wheels/s-1.0-py3-none-any.whl\n"
	      "name2@git+https://github.com/a/t.git@feature\n",
	      "1:4 git+https://github.com/a/b.git@main#egg=b\n"
	      "3:12 git+ssh://git@github.com/a/d.git#egg=d\n"
	      "4:3 git+https://github.com/a/e.git@v1#egg=e\n"
	      "5:1 git+https://github.com/a/f.git\n"
	      "8:1 svn+https://svn.example/i@trunk#egg=i\n"
	      "9:1 name @ https://example.com/n-1.0.tar.gz\n"
	      "11:1 https://example.com/p.whl\n"
	      "17:1 name2@git+https://github.com/a/t.git@feature\n");
}

static void test_requirements_includes(void **state)
{
	struct pin_report r = { 0 };
	struct strv inc;
	const char *t = "-r base.txt\n--requirement=sub/x.txt\n-rdev.txt\n-c c.txt\n"
			"--constraint c2.txt\n-r\n";
	struct pins__file f = { .path = "requirements.txt", .data = t, .n = strlen(t), .r = &r };
	(void)state;
	strv_init(&inc);
	f.includes = &inc;
	pins__requirements(&f);
	assert_int_equal(r.n, 0);
	assert_int_equal(inc.n, 5);
	assert_string_equal(inc.v[0], "base.txt");
	assert_string_equal(inc.v[1], "sub/x.txt");
	assert_string_equal(inc.v[2], "dev.txt");
	assert_string_equal(inc.v[3], "c.txt");
	assert_string_equal(inc.v[4], "c2.txt");
	strv_done(&inc);
}

static void test_bom_and_crlf(void **state)
{
	(void)state;
	CHECK("requirements.txt", "\xef\xbb\xbf" "eventlet\r\nflask>=2 \\\r\n  ; os_name == 'nt'\r\n",
	      "1:1 eventlet\n2:1 flask>=2\n");
	CHECK("Dockerfile", "\xef\xbb\xbf" "FROM a:1 \\\r\n  AS b\r\nRUN apt-get install \\\r\n c\r\n",
	      "1:6 a:1\n4:2 c\n");
	CHECK("pyproject.toml", "[project]\r\ndependencies = [\r\n  \"x\",\r\n]\r\n", "3:4 x\n");
	CHECK("package.json", "\xef\xbb\xbf{\"dependencies\":{\"a\":\"^1\"}}",
	      "1:1 package.json\n1:19 a@^1\n");
}

static void test_pyproject(void **state)
{
	(void)state;
	CHECK("pyproject.toml",
	      "[build-system]\nrequires = [\"setuptools>=61\"]\n"
	      "[project]\n"
	      "name = \"x\"\n"
	      "dependencies = [\n"
	      "  \"a==1.0\",  # pinned\n"
	      "  \"b>=2\",\n"
	      "  'c ; python_version < \"3.8\"',\n"
	      "  \"\"\"d~=1.0\"\"\",\n"
	      "]\n"
	      "[project.optional-dependencies]\n"
	      "test = [\"e\", \"f==2\"]\n"
	      "[tool.poetry.dependencies]\n"
	      "python = \"^3.8\"\n"
	      "Python = \">=3\"\n"
	      "g = \"^1.2\"\n"
	      "h = \"1.2.3\"\n"
	      "i = \"==1.2.3\"\n"
	      "j = { version = \"~1.2\", optional = true }\n"
	      "k = { path = \"../k\", develop = true }\n"
	      "l = { git = \"https://x/l.git\" }\n"
	      "m = { git = \"https://x/m.git\", rev = \"0123456789abcdef0123456789abcdef01234567\" }\n"
	      "n = { url = \"https://x/n-1.0.tar.gz\" }\n"
	      "o = \"*\"\n"
	      "p = \"1.2.*\"\n"
	      "q = \">=1,<2\"\n"
	      "r = [ { version = \"^1\", python = \"<3.8\" }, { version = \"2.0\" } ]\n"
	      "s.version = \"^3\"\n"
	      "[tool.poetry.dependencies.t]\n"
	      "version = \"^4\"\n"
	      "[tool.poetry.group.dev.dependencies]\n"
	      "u = \"~=1.0\"\n"
	      "[tool.poetry.dev-dependencies]\n"
	      "v = \"^5\"\n"
	      "[tool.other]\n"
	      "w = \"^6\"\n",
	      "1:1 pyproject.toml\n"
	      "7:4 b>=2\n"
	      "8:4 c\n"
	      "9:6 d~=1.0\n"
	      "12:10 e\n"
	      "16:1 g = \"^1.2\"\n"
	      "19:1 j = { version = \"~1.2\" }\n"
	      "21:1 l = { git = \"https://x/l.git\" }\n"
	      "23:1 n = { url = \"https://x/n-1.0.tar.gz\" }\n"
	      "24:1 o = \"*\"\n"
	      "25:1 p = \"1.2.*\"\n"
	      "26:1 q = \">=1,<2\"\n"
	      "27:1 r = { version = \"^1\" }\n"
	      "28:1 s = \"^3\"\n"
	      "29:27 t = \"^4\"\n"
	      "32:1 u = \"~=1.0\"\n"
	      "34:1 v = \"^5\"\n");
	/* [project] only: no file-level finding (no single lockfile convention) */
	CHECK("pyproject.toml", "[project]\ndependencies = [\"x>1\"]\n", "2:18 x>1\n");
	CHECK("pyproject.toml", "[tool.poetry.dependencies]\npython = \"^3.11\"\n", "");
}

static void test_pipfile(void **state)
{
	(void)state;
	CHECK("Pipfile",
	      "[[source]]\nurl = \"https://pypi.org/simple\"\n"
	      "[packages]\n"
	      "a = \"*\"\n"
	      "b = \"==1.0\"\n"
	      "c = \">=1\"\n"
	      "d = {version = \"==2\"}\n"
	      "e = {version = \"~=2.1\", extras = [\"x\"]}\n"
	      "f = {git = \"https://x/f.git\", ref = \"main\"}\n"
	      "g = {git = \"https://x/g.git\", ref = \"0123456789abcdef0123456789abcdef01234567\"}\n"
	      "h = {path = \".\", editable = true}\n"
	      "[dev-packages]\n"
	      "i = \"1.0\"\n"
	      "j = \"\"\n"
	      "[requires]\npython_version = \"3.11\"\n",
	      "1:1 Pipfile\n"
	      "4:1 a = \"*\"\n"
	      "6:1 c = \">=1\"\n"
	      "8:1 e = { version = \"~=2.1\" }\n"
	      "9:1 f = { git = \"https://x/f.git\", ref = \"main\" }\n"
	      "14:1 j = \"\"\n");
}

static void test_package_json(void **state)
{
	(void)state;
	CHECK("package.json",
	      "{\n"
	      "  \"name\": \"x\",\n"
	      "  \"config\": { \"dependencies\": { \"nested\": \"^1\" } },\n"
	      "  \"dependencies\": {\n"
	      "    \"exact\": \"1.2.3\",\n"
	      "    \"pre\": \"1.2.3-beta.1+build\",\n"
	      "    \"v\": \"v1.2.3\",\n"
	      "    \"eq\": \"=1.2.3\",\n"
	      "    \"caret\": \"^1.2.3\", \"tilde\": \"~1.2.3\",\n"
	      "    \"star\": \"*\",\n"
	      "    \"empty\": \"\",\n"
	      "    \"x\": \"1.x\",\n"
	      "    \"or\": \"1.2.3 || 2.0.0\",\n"
	      "    \"hyphen\": \"1.0.0 - 2.0.0\",\n"
	      "    \"ge\": \">=1.0.0\",\n"
	      "    \"tag\": \"next\",\n"
	      "    \"partial\": \"1\",\n"
	      "    \"gh\": \"user/repo\",\n"
	      "    \"ghc\": \"user/repo#0123456789abcdef0123456789abcdef01234567\",\n"
	      "    \"gitssh\": \"git+ssh://git@github.com/u/r.git#v1\",\n"
	      "    \"tar\": \"https://example.com/t.tgz\",\n"
	      "    \"file\": \"file:../f\", \"link\": \"link:../l\", \"ws\": \"workspace:*\",\n"
	      "    \"alias\": \"npm:real@1.0.0\", \"aliasr\": \"npm:@s/real@^1\",\n"
	      "    \"esc\\u0061ped\": \"^1\",\n"
	      "    \"num\": 5\n"
	      "  },\n"
	      "  \"devDependencies\": {\"dev\":\"~0.1\"},\n"
	      "  \"peerDependencies\": {\"peer\":\"^1\"},\n"
	      "  \"bundledDependencies\": [\"b\"]\n"
	      "}\n",
	      "1:1 escaped@^1\n"
	      "1:1 package.json\n"
	      "9:6 caret@^1.2.3\n"
	      "9:25 tilde@~1.2.3\n"
	      "10:6 star@*\n"
	      "11:6 empty@\n"
	      "12:6 x@1.x\n"
	      "13:6 or@1.2.3 || 2.0.0\n"
	      "14:6 hyphen@1.0.0 - 2.0.0\n"
	      "15:6 ge@>=1.0.0\n"
	      "16:6 tag@next\n"
	      "17:6 partial@1\n"
	      "18:6 gh@user/repo\n"
	      "20:6 gitssh@git+ssh://git@github.com/u/r.git#v1\n"
	      "21:6 tar@https://example.com/t.tgz\n"
	      "23:33 aliasr@npm:@s/real@^1\n"
	      "27:24 dev@~0.1\n");
	/* not JSON, or not an object: nothing, and no crash */
	CHECK("package.json", "{\"dependencies\": {\"a\": \"^1\"", "");
	CHECK("package.json", "[\"a\"]", "");
	CHECK("package.json", "{}", "");
}

static void test_dockerfile_from(void **state)
{
	(void)state;
	CHECK("Dockerfile",
	      "# syntax=docker/dockerfile:1\n"
	      "ARG BASE=debian:12\n"
	      "ARG DIGESTED=alpine@sha256:"
	      "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n"
	      "ARG NODEF\n"
	      "FROM --platform=$BUILDPLATFORM golang:1.21 AS Build\n"
	      "FROM build AS test\n"
	      "FROM BUILD\n"
	      "FROM scratch\n"
	      "FROM   nginx\n"
	      "FROM nginx:latest\n"
	      "FROM registry.example:5000/team/app:1.0@sha256:"
	      "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n"
	      "FROM nginx@sha256:short\n"
	      "FROM ${BASE}\n"
	      "FROM $DIGESTED\n"
	      "FROM ${NODEF}\n"
	      "from \\\n"
	      "  python:3.12 \\\n"
	      "  as py\n"
	      "COPY --from=py /a /b\n"
	      "COPY --chown=1:1 --from=3 /a /b\n"
	      "COPY --from=docker.io/library/busybox:1.36 /bin/busybox /bin/\n"
	      "ONBUILD RUN apt-get install -y x\n",
	      "5:32 golang:1.21\n"
	      "9:8 nginx\n"
	      "10:6 nginx:latest\n"
	      "12:6 nginx@sha256:short\n"
	      "13:6 ${BASE}\n"
	      "15:6 ${NODEF}\n"
	      "17:3 python:3.12\n"
	      "21:13 docker.io/library/busybox:1.36\n");
}

static void test_dockerfile_escape_and_run(void **state)
{
	(void)state;
	/* escape directive, comments and blank lines inside a continued RUN */
	CHECK("Dockerfile",
	      "# escape=`\n"
	      "FROM debian:12@sha256:"
	      "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n"
	      "RUN apt-get update && `\n"
	      "    # a comment inside the instruction\n"
	      "\n"
	      "    apt-get install -y --no-install-recommends `\n"
	      "      curl=7.88.1-10 wget `\n"
	      "      ./local.deb /tmp/x.deb\n",
	      "7:22 wget\n");
	/* directives only count before anything else */
	CHECK("Dockerfile",
	      "FROM x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n"
	      "# escape=`\n"
	      "RUN apt-get install \\\n  a\n",
	      "4:3 a\n");
	CHECK("Dockerfile",
	      "FROM x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n"
	      "RUN --mount=type=cache,target=/var/cache/apt apt-get update; apt-get -o "
	      "Dpkg::Options::=--force-confold -t bookworm-backports install -y a b=1 c/bookworm "
	      "d=1.* > /dev/null 2>&1 || true\n"
	      "RUN [\"apt-get\", \"install\", \"-y\", \"e\"]\n"
	      "RUN sudo -E DEBIAN_FRONTEND=noninteractive apt install -qy f $PKGS \"${MORE}\" g\n"
	      "RUN apt-get remove -y h && apt-cache policy i && echo apt-get install j\n"
	      "RUN apk add --no-cache --virtual .build-deps k l=1.2-r0 m~1.2 n>2 ./o.apk\n"
	      "RUN pip install -U pip==23.3 'p>=1' q==1 -r req.txt -e . --index-url https://x r\n"
	      "RUN python3.11 -m pip install s && uv pip install t && pip3 download u\n"
	      "RUN <<EOF\napt-get install v\nEOF\n",
	      "2:138 a\n"
	      "2:144 c/bookworm\n"
	      "2:155 d=1.*\n"
	      "3:35 e\n"
	      "4:60 f\n"
	      "4:78 g\n"
	      "6:46 k\n"
	      "6:57 m~1.2\n"
	      "6:63 n\n"
	      "7:31 p>=1\n"
	      "7:80 r\n"
	      "8:31 s\n"
	      "8:51 t\n");
}

static void test_shell(void **state)
{
	(void)state;
	CHECK("setup.sh",
	      "#!/bin/bash\n"
	      "# apt-get install commented\n"
	      "set -e\n"
	      "apt-get install -y \\\n"
	      "  a \\\n"
	      "  b=2\n"
	      "if true; then apt-get install c; fi\n"
	      "(cd /x && apt-get install d)\n"
	      "apt-get install $(cat list.txt) e\n"
	      "apt-get install f # trailing comment g\n"
	      "printf '%s' 'apt-get install h'\n",
	      "5:3 a\n"
	      "7:31 c\n"
	      "8:27 d\n"
	      "9:33 e\n"
	      "10:17 f\n");
}

static void test_gemfile(void **state)
{
	(void)state;
	CHECK("Gemfile",
	      "source \"https://rubygems.org\"\n"
	      "git_source(:github) { |repo| \"https://github.com/#{repo}.git\" }\n"
	      "ruby \"3.2.2\"\n"
	      "gem \"rails\", \"~> 7.1.2\"\n"
	      "gem 'exact', '1.2.3'\n"
	      "gem 'eq', '= 1.2.3'\n"
	      "gem('paren', '>= 1')\n"
	      "gem 'multi',\n"
	      "    '>= 1', # a comment, with a comma\n"
	      "    '< 2'\n"
	      "  gem \"bare\"\n"
	      "gem 'rocket', :require => false\n"
	      "gem 'pq', %q(~> 2.0)\n"
	      "gem 'g1', git: 'https://x/g1.git', tag: 'v1'\n"
	      "gem 'g2', :github => 'u/g2', :ref => '0123456789abcdef0123456789abcdef01234567'\n"
	      "gem 'g3', github: 'u/g3', ref: 'abc123'\n"
	      "gem 'local', path: 'vendor/local'\n"
	      "gemspec\n"
	      "gem 'platformed', '2.0', platforms: [:mri, :mingw]\n"
	      "gem 'upper', '< 3'\n"
	      "gem\n"
	      "gem \"unterminated\n",
	      "1:1 Gemfile\n"
	      "4:6 rails (~> 7.1.2)\n"
	      "7:6 paren (>= 1)\n"
	      "8:6 multi (>= 1, < 2)\n"
	      "11:8 bare\n"
	      "12:6 rocket\n"
	      "13:6 pq (~> 2.0)\n"
	      "14:6 g1 (git: https://x/g1.git)\n"
	      "16:6 g3 (github: u/g3)\n"
	      "20:6 upper (< 3)\n");
	CHECK("Gemfile", "source 'https://rubygems.org'\n", "");
}

static void test_gomod(void **state)
{
	(void)state;
	CHECK("go.mod", "module x\n\ngo 1.21\n", "");
	CHECK("go.mod", "module x\nrequire (\n)\n// require a v1\n", "");
	CHECK("go.mod", "module x\nrequire (\n\ta v1.0.0 // indirect\n)\n", "1:1 go.mod\n");
	CHECK("sub/go.mod", "module x\nrequire a v1.0.0\n", "1:1 go.mod\n");
}

static void test_cargo(void **state)
{
	(void)state;
	CHECK("Cargo.toml",
	      "[package]\nname = \"x\"\nversion = \"0.1.0\"\n"
	      "[dependencies]\n"
	      "a = \"1\"\n"
	      "b = \"=1.2.3\"\n"
	      "c = \"^1.2\"\n"
	      "d = \"~1.2\"\n"
	      "e = \"*\"\n"
	      "f = \">=1, <2\"\n"
	      "g = { version = \"= 0.3.1\", default-features = false }\n"
	      "h = { path = \"../h\", version = \"0.1\" }\n"
	      "i = { workspace = true }\n"
	      "j = { git = \"https://x/j\", rev = \"0123456789abcdef0123456789abcdef01234567\" }\n"
	      "k = { git = \"https://x/k\", tag = \"v1\" }\n"
	      "l.version = \"0.2\"\n"
	      "[dev-dependencies]\n"
	      "m = \"0.3\"\n"
	      "[build-dependencies.n]\n"
	      "version = \"0.4\"\n"
	      "features = [\"x\"]\n"
	      "[build-dependencies.o]\n"
	      "git = \"https://x/o\"\n"
	      "[dependencies.p]\n"
	      "path = \"p\"\n"
	      "[target.\"cfg(windows)\".dependencies]\n"
	      "q = \"0.5\"\n"
	      "[workspace.dependencies]\n"
	      "r = \"1.0\"\n"
	      "[features]\n"
	      "default = [\"a\"]\n",
	      "1:1 Cargo.toml\n"
	      "5:1 a = \"1\"\n"
	      "7:1 c = \"^1.2\"\n"
	      "8:1 d = \"~1.2\"\n"
	      "9:1 e = \"*\"\n"
	      "10:1 f = \">=1, <2\"\n"
	      "15:1 k = { git = \"https://x/k\" }\n"
	      "16:1 l = \"0.2\"\n"
	      "18:1 m = \"0.3\"\n"
	      "19:21 n = \"0.4\"\n"
	      "22:21 o = { git = \"https://x/o\" }\n"
	      "27:1 q = \"0.5\"\n"
	      "29:1 r = \"1.0\"\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kind_of),
		cmocka_unit_test(test_requirements),
		cmocka_unit_test(test_requirements_urls),
		cmocka_unit_test(test_requirements_includes),
		cmocka_unit_test(test_bom_and_crlf),
		cmocka_unit_test(test_pyproject),
		cmocka_unit_test(test_pipfile),
		cmocka_unit_test(test_package_json),
		cmocka_unit_test(test_dockerfile_from),
		cmocka_unit_test(test_dockerfile_escape_and_run),
		cmocka_unit_test(test_shell),
		cmocka_unit_test(test_gemfile),
		cmocka_unit_test(test_gomod),
		cmocka_unit_test(test_cargo),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
