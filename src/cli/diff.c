/* cli diff: `cairn diff A B` — two releases, or a release and a directory. */
#include "cli/cli.h"

#include "config/config.h"
#include "release/release.h"
#include "store/store.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int run_diff(int argc, char **argv);

const struct cli_command cli_cmd_diff = {
	.name = "diff",
	.run = run_diff,
	.summary = "show what changed between two releases (or a release and a directory)",
	.help = "NAME\n"
		"    cairn diff - what changed between two releases\n\n"
		"SYNOPSIS\n"
		"    cairn diff A B [--stat] [-U N] [--app APP] [--state DIR] [--json]\n\n"
		"DESCRIPTION\n"
		"    A and B are release REFs (id, unique id prefix, or tag) or directories (a path\n"
		"    containing '/' or naming an existing directory). Shows dependency version\n"
		"    changes (\"python eventlet 0.20.0 → 0.20.1\"), run-config changes, the files\n"
		"    added, removed and changed, and unified diffs of text files (binary files are\n"
		"    noted with their sizes). A directory is scanned in place with its cairn.yml's\n"
		"    build.exclude (when it has one); nothing is stored.\n\n"
		"OPTIONS\n"
		"    --stat        list the changes without line diffs\n"
		"    -U N          lines of context in line diffs (default 3)\n"
		"    --app APP     resolve REFs among this app's releases\n"
		"    --color       colour the output even when stdout is not a terminal\n"
		"    --state DIR   state directory\n"
		"    --json        {a, b, differs, files: [{path, status, old, new, diff|binary}],\n"
		"                  deps: [{ecosystem, name, old: [..], new: [..]}], config: [{key, old, new}]}\n\n"
		"EXIT STATUS\n"
		"    0 compared (with or without differences), 1 a release could not be read or is\n"
		"    corrupt, 2 usage or an unknown REF.\n\n"
		"EXAMPLES\n"
		"    cairn diff v1 v2\n"
		"    cairn diff v1 .            # what the working tree would change\n",
};

struct side {
	struct diff_side d;
	struct manifest *m;
	struct config *cfg;
	char *label;
};

static bool looks_like_dir(const char *s)
{
	return strchr(s, '/') || !strcmp(s, ".") || !strcmp(s, "..") || fs_is_dir(s);
}

static int open_side(const char *ref, const char *app, struct objstore *os, struct store *st,
		     struct side *s, struct err *e)
{
	if (looks_like_dir(ref)) {
		char *cfgpath = fs_join(ref, CONFIG_DEFAULT_NAME);
		int r = 0;
		if (!fs_is_dir(ref))
			r = err_set(e, CAIRN_EINPUT, "%s is not a directory", ref);
		if (r == 0 && access(cfgpath, F_OK) == 0)
			r = config_load(cfgpath, &s->cfg, e);
		free(cfgpath);
		if (r == 0) {
			static const char *const def[] = { ".git", "__pycache__", NULL };
			struct strv ex = { (char **)def, 2, 0 };
			r = release_scan_dir(ref, s->cfg ? &s->cfg->build.exclude : &ex, s->cfg, &s->m, e);
		}
		if (r < 0)
			return r;
		s->label = xstrdup(ref);
		s->d = (struct diff_side){ .m = s->m, .label = s->label, .dir = ref };
		return 0;
	}
	char id[HASH_ID_LEN + 1];
	struct store_release rel;
	int r = store_release_resolve(st, app, ref, id, e);
	if (r == 0)
		r = store_release_get(st, id, &rel, e);
	if (r == 0)
		r = release_load(os, id, &s->m, e);
	if (r < 0)
		return r;
	s->label = rel.tag[0] ? xasprintf("%.19s (%s)", id, rel.tag) : xasprintf("%.19s", id);
	s->d = (struct diff_side){ .m = s->m, .label = s->label, .os = os };
	return 0;
}

static void close_side(struct side *s)
{
	manifest_free(s->m);
	config_free(s->cfg);
	free(s->label);
}

static int run_diff(int argc, char **argv)
{
	static const struct option opts[] = { CLI_COMMON_OPTS,
					      { "app", required_argument, NULL, 'a' },
					      { "stat", no_argument, NULL, 's' },
					      { "color", no_argument, NULL, 'C' },
					      { 0 } };
	struct cli_ctx ctx = { .cmd = "diff" };
	struct diff_opts o = { .context_lines = 3 };
	const char *app = NULL;
	struct objstore *os = NULL;
	struct store *st = NULL;
	struct side a = { 0 }, b = { 0 };
	struct buf out;
	bool differs = false, color = false;
	struct err e;
	int c, rc = 0;

	while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT "U:", opts, NULL)) != -1) {
		int k = cli_common_opt(&ctx, &cli_cmd_diff, c, optarg);
		if (k >= 100)
			return k - 100;
		if (k)
			continue;
		if (c == 'a')
			app = optarg;
		else if (c == 's')
			o.stat_only = true;
		else if (c == 'C')
			color = true;
		else if (c == 'U') {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (*end || n < 0 || n > 1000)
				return cli_usage(&cli_cmd_diff, "-U takes a number of lines from 0 to 1000");
			o.context_lines = (int)n;
		}
	}
	if (argc - optind != 2)
		return cli_usage(&cli_cmd_diff, "diff takes two REFs or directories (got %d)", argc - optind);
	o.json = ctx.json;
	o.color = !ctx.json && (color || cli_is_tty(&ctx));
	buf_init(&out, (size_t)1 << 30);
	if (cli_open_state(&ctx, &os, &st, &e) < 0 ||
	    open_side(argv[optind], app, os, st, &a, &e) < 0 ||
	    open_side(argv[optind + 1], app, os, st, &b, &e) < 0 ||
	    release_diff(&a.d, &b.d, &o, &out, &differs, &e) < 0) {
		rc = cli_fail(&ctx, &e);
	} else {
		fwrite(buf_str(&out), 1, out.len, stdout);
	}
	buf_done(&out);
	close_side(&a);
	close_side(&b);
	store_close(st);
	objstore_free(os);
	return rc;
}
