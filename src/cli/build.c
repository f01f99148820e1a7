/* cli build: `cairn build` — pins check, then release_build, then the id on stdout. */
#include "cli/cli.h"

#include "config/config.h"
#include "release/release.h"
#include "store/store.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static int run_build(int argc, char **argv);

const struct cli_command cli_cmd_build = {
	.name = "build",
	.run = run_build,
	.summary = "snapshot the app's directory into an immutable release",
	.help = "NAME\n"
		"    cairn build - snapshot the app's directory into an immutable release\n\n"
		"SYNOPSIS\n"
		"    cairn build [-c FILE] [--tag TAG] [--state DIR] [--json]\n\n"
		"DESCRIPTION\n"
		"    Reads cairn.yml, refuses unpinned dependencies when build.pins is 'require'\n"
		"    (see 'cairn pins'), runs build.command once in a scratch copy of the directory\n"
		"    (argv, never a shell; the source is never modified), then stores every file\n"
		"    once under its SHA-256 and writes the release's canonical manifest: sorted\n"
		"    paths, modes, sizes, digests, the run config and every dependency version\n"
		"    found in the tree. The release id is sha256 of the manifest: the same input\n"
		"    always gives the same id, and building it again stores nothing new.\n"
		"    Unchanged files are recognised by (inode, size, mtime, ctime) and not re-hashed.\n"
		"    The full id is printed on stdout; progress and the summary go to stderr.\n\n"
		"OPTIONS\n"
		"    -c, --config FILE   the config file (default ./cairn.yml)\n"
		"    --tag TAG           name the release; tags never move to another release\n"
		"    --state DIR         state directory (default $CAIRN_STATE, $XDG_STATE_HOME/cairn,\n"
		"                        /var/lib/cairn for root)\n"
		"    --json              print the result as JSON\n\n"
		"EXIT STATUS\n"
		"    0 built (or already stored), 1 refused (unpinned dependencies, build.command\n"
		"    failed), 2 bad config or usage.\n\n"
		"EXAMPLES\n"
		"    cairn build --tag v1\n"
		"    id=$(cairn build) && cairn deploy \"$id\"\n",
};

static int check_pins(const struct cli_ctx *ctx, const struct config *cfg, json_t **out_json,
		      struct err *e)
{
	struct pin_report rep = { 0 };
	int r = pins_scan(cfg->dir, &cfg->build.exclude, &rep, e);
	if (r < 0)
		return r;
	if (rep.n) {
		json_t *arr = json_array();
		for (size_t i = 0; i < rep.n; i++) {
			const struct pin_finding *f = &rep.v[i];
			json_array_append_new(arr, json_pack("{s:s,s:i,s:i,s:s,s:s,s:s,s:s}", "file", f->file,
							     "line", f->line, "col", f->col, "ecosystem",
							     f->ecosystem, "spec", f->spec, "problem",
							     f->problem, "fix", f->fix));
		}
		*out_json = arr;
		if (!ctx->json)
			pins_print(&rep, stderr);
		if (cfg->build.pins == CONFIG_PINS_REQUIRE)
			r = err_set(e, CAIRN_ECHECK,
				    "build refused: %zu unpinned %s (build.pins: require); pin %s as shown "
				    "above, or set build.pins: warn in %s",
				    rep.n, rep.n == 1 ? "dependency" : "dependencies",
				    rep.n == 1 ? "it" : "them", cfg->file);
		else if (!ctx->json)
			fprintf(stderr, "warning: building with %zu unpinned %s (build.pins: warn)\n", rep.n,
				rep.n == 1 ? "dependency" : "dependencies");
	}
	pin_report_done(&rep);
	return r;
}

static int run_build(int argc, char **argv)
{
	static const struct option opts[] = { CLI_COMMON_OPTS, { "tag", required_argument, NULL, 't' },
					      { 0 } };
	struct cli_ctx ctx = { .cmd = "build" };
	const char *tag = NULL;
	struct config *cfg = NULL;
	struct objstore *os = NULL;
	struct store *st = NULL;
	struct release_build_result res;
	struct err e;
	json_t *pins = NULL;
	int64_t t0 = time_mono_ns();
	int c, rc = 0;

	while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT "t:", opts, NULL)) != -1) {
		int k = cli_common_opt(&ctx, &cli_cmd_build, c, optarg);
		if (k >= 100)
			return k - 100;
		if (k == 0 && c == 't')
			tag = optarg;
	}
	if (optind < argc)
		return cli_usage(&cli_cmd_build, "unexpected argument '%s'", argv[optind]);
	if (tag && (!*tag || strlen(tag) > STORE_TAG_MAX || strchr(tag, '/') || strchr(tag, ':') ||
		    strchr(tag, ' ')))
		return cli_usage(&cli_cmd_build,
				 "bad tag '%s': use 1-%d characters without '/', ':' or spaces", tag,
				 STORE_TAG_MAX);
	if (cli_load_config(&ctx, &cfg, &e) < 0 || check_pins(&ctx, cfg, &pins, &e) < 0 ||
	    cli_open_state(&ctx, &os, &st, &e) < 0) {
		rc = cli_fail(&ctx, &e);
		goto done;
	}
	{
		struct release_build_opts o = { .tag = tag, .progress = ctx.json ? NULL : stderr };
		if (!ctx.json)
			fprintf(stderr, "building %s from %s\n", cfg->app, cfg->dir);
		if (release_build(cfg, os, st, &o, &res, &e) < 0) {
			rc = cli_fail(&ctx, &e);
			goto done;
		}
	}
	{
		double secs = (double)(time_mono_ns() - t0) / 1e9;
		if (ctx.json) {
			json_t *o = json_pack("{s:s,s:s,s:s?,s:I,s:I,s:I,s:I,s:b,s:f,s:O?}", "id", res.id,
					      "app", cfg->app, "tag", tag, "files", (json_int_t)res.n_files,
					      "bytes", (json_int_t)res.bytes, "new_objects",
					      (json_int_t)res.n_new_objects, "hashed",
					      (json_int_t)res.n_hashed, "existed", res.existed, "seconds",
					      secs, "unpinned", pins);
			json_dumpf(o, stdout, JSON_COMPACT);
			fputc('\n', stdout);
			json_decref(o);
		} else {
			fprintf(stderr,
				"%s %.19s%s%s%s: %zu files, %.1f MiB, %zu new objects, %zu hashed, %.2fs\n",
				res.existed ? "already stored" : "built", res.id, tag ? " (tag " : "",
				tag ? tag : "", tag ? ")" : "", res.n_files, (double)res.bytes / 1048576.0,
				res.n_new_objects, res.n_hashed, secs);
			printf("%s\n", res.id);
		}
	}
done:
	json_decref(pins);
	store_close(st);
	objstore_free(os);
	config_free(cfg);
	return rc;
}
