/* cli pins: `cairn pins [DIR]` — lists unpinned and floating dependency specifications, for
 * people (FILE:LINE:COL lines with a fix each) or as JSON. Exit 1 when any is found. */
#include "cli/cli.h"

#include "release/release.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
	"NAME\n"
	"    cairn pins - list unpinned dependencies\n"
	"\n"
	"SYNOPSIS\n"
	"    cairn pins [DIR] [--json] [--exclude NAME]...\n"
	"\n"
	"DESCRIPTION\n"
	"    Walks DIR (default: the current directory) and reports every dependency\n"
	"    specification that does not pin one exact version: each finding is\n"
	"    FILE:LINE:COL, the spec, what is wrong with it and how to fix it.\n"
	"\n"
	"    Read: requirements*.txt and constraints*.txt (and *.txt under a\n"
	"    requirements/ directory, and files they include with -r/-c), pyproject.toml,\n"
	"    Pipfile, package.json, Gemfile, go.mod, Cargo.toml, Dockerfile, Dockerfile.*,\n"
	"    *.Dockerfile, Containerfile (FROM and COPY --from images without a digest;\n"
	"    apt-get/apt/apk/pip install in RUN) and *.sh (the same install commands).\n"
	"\n"
	"    Manifests whose ecosystem has a lockfile (package-lock.json, yarn.lock,\n"
	"    pnpm-lock.yaml, poetry.lock, uv.lock, pdm.lock, Pipfile.lock, Gemfile.lock,\n"
	"    go.sum, Cargo.lock) are only reported when that lockfile is missing.\n"
	"\n"
	"    Never followed or read: symlinks, .git, node_modules, __pycache__,\n"
	"    site-packages, dist-packages, virtualenvs (pyvenv.cfg), cache dirs\n"
	"    (CACHEDIR.TAG), vendor/bundle and go's vendor/. See docs/pins.md.\n"
	"\n"
	"OPTIONS\n"
	"    --exclude NAME\n"
	"        Skip files and directories called NAME at any depth; a NAME with a '/'\n"
	"        is a path relative to DIR. May be repeated.\n"
	"    --json\n"
	"        Print {\"findings\":[{file,line,col,ecosystem,spec,problem,fix}],\n"
	"        \"files_scanned\":N}.\n"
	"    -h, --help\n"
	"        Show this page.\n"
	"\n"
	"EXIT STATUS\n"
	"    0   every dependency is pinned\n"
	"    1   at least one unpinned dependency was found\n"
	"    2   usage error, or DIR is missing or not a directory\n"
	"\n"
	"EXAMPLES\n"
	"    cairn pins\n"
	"    cairn pins services/api --exclude legacy --exclude tests/fixtures\n"
	"    cairn pins --json | jq '.findings[] | .spec'\n";

static int run(int argc, char **argv);

const struct cli_command cli_cmd_pins = {
	.name = "pins",
	.run = run,
	.summary = "list unpinned dependencies (requirements, package.json, Dockerfile FROM, ...)",
	.help = help,
};

/* Length of a valid UTF-8 sequence at s, or 0. */
static size_t utf8_len(const unsigned char *s)
{
	size_t n = s[0] < 0x80 ? 1 : (s[0] >> 5) == 6 ? 2 : (s[0] >> 4) == 14 ? 3
						  : (s[0] >> 3) == 30 ? 4 : 0;
	for (size_t i = 1; i < n; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	/* no overlong forms, surrogates or code points past U+10FFFF */
	if ((n == 2 && s[0] < 0xc2) || (n == 3 && s[0] == 0xe0 && s[1] < 0xa0) ||
	    (n == 3 && s[0] == 0xed && s[1] >= 0xa0) || (n == 4 && s[0] > 0xf4) ||
	    (n == 4 && s[0] == 0xf0 && s[1] < 0x90) || (n == 4 && s[0] == 0xf4 && s[1] >= 0x90))
		return 0;
	return n;
}

/* A JSON string of text from the scanned files, which need not be UTF-8: invalid bytes
 * become U+FFFD, since jansson refuses them. */
static json_t *jstr(const char *s)
{
	json_t *j = json_string(s);
	if (j)
		return j;
	struct buf b;
	buf_init(&b, 4 * strlen(s) + 1);
	for (const unsigned char *p = (const unsigned char *)s; *p;) {
		size_t k = utf8_len(p);
		if (k) {
			buf_add(&b, p, k);
			p += k;
		} else {
			buf_adds(&b, "\xef\xbf\xbd");
			p++;
		}
	}
	j = json_string(buf_str(&b));
	buf_done(&b);
	return j ? j : json_string("");
}

static void print_json(const struct pin_report *r)
{
	json_t *arr = json_array();
	for (size_t i = 0; i < r->n; i++) {
		const struct pin_finding *p = &r->v[i];
		json_array_append_new(arr, json_pack("{s:o,s:i,s:i,s:s,s:o,s:o,s:o}", "file",
						     jstr(p->file), "line", p->line, "col", p->col,
						     "ecosystem", p->ecosystem, "spec", jstr(p->spec),
						     "problem", jstr(p->problem), "fix", jstr(p->fix)));
	}
	json_t *top = json_pack("{s:o,s:I}", "findings", arr, "files_scanned",
				(json_int_t)r->files_scanned);
	json_dumpf(top, stdout, JSON_COMPACT);
	fputc('\n', stdout);
	json_decref(top);
}

static int run(int argc, char **argv)
{
	static const struct option opts[] = { CLI_COMMON_OPTS,
					      { "exclude", required_argument, NULL, 'x' },
					      { NULL, 0, NULL, 0 } };
	struct cli_ctx ctx = { .cmd = cli_cmd_pins.name };
	struct strv exclude;
	struct pin_report rep = { 0 };
	struct err e;
	int c, rc;

	strv_init(&exclude);
	optind = 1;
	while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT "x:", opts, NULL)) != -1) {
		int r = cli_common_opt(&ctx, &cli_cmd_pins, c, optarg);
		if (r >= 100) {
			strv_done(&exclude);
			return r - 100;
		}
		if (r == 1)
			continue;
		if (c == 'x')
			strv_push(&exclude, optarg);
	}
	if (argc - optind > 1) {
		strv_done(&exclude);
		return cli_usage(&cli_cmd_pins, "one directory at most (got %d arguments)",
				 argc - optind);
	}
	const char *dir = optind < argc ? argv[optind] : ".";
	if (pins_scan(dir, &exclude, &rep, &e) < 0) {
		strv_done(&exclude);
		return cli_fail(&ctx, &e);
	}
	if (ctx.json)
		print_json(&rep);
	else
		pins_print(&rep, stdout);
	rc = rep.n ? 1 : 0;
	pin_report_done(&rep);
	strv_done(&exclude);
	return rc;
}
