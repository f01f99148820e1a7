/* cli build: `cairn build` — pins check, then release_build, then the id on stdout. With a
 * remote controller (--addr / CAIRN_ADDR) the build goes to the local build cache and its
 * objects are uploaded (upload.c); the controller's state is never written directly. */
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
		"    cairn build [-c FILE] [--tag TAG] [--state DIR] [--json]\n"
		"    cairn build --addr HOST:PORT [--token-file FILE] [-c FILE] [--tag TAG] [--json]\n\n"
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
		"    With a remote controller (--addr or CAIRN_ADDR) the release is built into the\n"
		"    local build cache ($XDG_CACHE_HOME/cairn, else ~/.cache/cairn; --state DIR\n"
		"    overrides), then cairn asks the controller which of its objects it lacks,\n"
		"    uploads only those (4 at a time; progress on a terminal, plain lines\n"
		"    otherwise) and registers the release there, with its tag. A rebuild after\n"
		"    changing one file uploads that file's object and the new manifest only.\n"
		"    Objects larger than 256 MiB are refused by the controller (too_large).\n"
		"    --json then adds \"upload\": {to, objects, uploaded, uploaded_bytes, skipped,\n"
		"    skipped_bytes, existed}.\n\n"
		"OPTIONS\n"
		"    -c, --config FILE   the config file (default ./cairn.yml)\n"
		"    --tag TAG           name the release (it keeps the tags it already has); a tag\n"
		"                        names one release forever, and may not look like an id\n"
		"                        (sha256:..., 4-64 hex digits): see docs/releases.md\n"
		"    --state DIR         state directory (default $CAIRN_STATE, $XDG_STATE_HOME/cairn,\n"
		"                        /var/lib/cairn for root); with --addr: the build cache\n"
		"    --addr HOST:PORT    a remote controller (default $CAIRN_ADDR): upload to it\n"
		"    --token-file FILE   its bearer token (default $CAIRN_TOKEN_FILE)\n"
		"    --json              print the result as JSON\n\n"
		"EXIT STATUS\n"
		"    0 built (or already stored), 1 refused (unpinned dependencies, build.command\n"
		"    failed, the controller refused the upload or is unreachable), 2 bad config,\n"
		"    usage, or a tag that already names another release.\n\n"
		"EXAMPLES\n"
		"    cairn build --tag v1\n"
		"    id=$(cairn build) && cairn deploy \"$id\"\n"
		"    CAIRN_ADDR=ctl.example:7433 cairn build --token-file ~/.cairn-token --tag v2\n",
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

static json_t *upload_json(const struct cli_api *a, const struct cli_upload_result *u)
{
	return json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:b}", "to", cli_api_where(a), "objects",
			 (json_int_t)u->objects, "uploaded", (json_int_t)u->uploaded, "uploaded_bytes",
			 (json_int_t)u->uploaded_bytes, "skipped", (json_int_t)u->skipped,
			 "skipped_bytes", (json_int_t)u->skipped_bytes, "existed", u->existed);
}

static int run_build(int argc, char **argv)
{
	static const struct option opts[] = { CLI_COMMON_OPTS,
					      { "tag", required_argument, NULL, 't' },
					      { "addr", required_argument, NULL, 'A' },
					      { "token-file", required_argument, NULL, 'T' },
					      { 0 } };
	struct cli_ctx ctx = { .cmd = "build" };
	struct cli_api_opts ao = { 0 };
	struct cli_api api = { 0 };
	struct cli_upload_result up = { 0 };
	const char *tag = NULL, *unused_app = NULL;
	char *cache = NULL;
	bool remote;
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
		else if (k == 0)
			cli_api_opt(&ao, &unused_app, c, optarg);
	}
	if (optind < argc)
		return cli_usage(&cli_cmd_build, "unexpected argument '%s'", argv[optind]);
	if (tag && name_tag_check(tag, strlen(tag), &e) < 0) {
		char q[NAME_SAFE_LEN(64)];
		return cli_usage(&cli_cmd_build, "bad tag '%s': %s", name_safe(tag, q, sizeof(q)),
				 e.msg);
	}
	remote = cli_api_is_remote(&ao);
	if (remote) {
		/* the build goes to the local cache; the controller gets it through its API */
		cache = cli_cache_dir(&ctx);
		ctx.state_flag = cache;
	}
	if (cli_load_config(&ctx, &cfg, &e) < 0 || check_pins(&ctx, cfg, &pins, &e) < 0 ||
	    (remote && cli_api_open(&ctx, &ao, &api, &e) < 0) ||
	    cli_open_state(&ctx, &os, &st, &e) < 0) {
		rc = cli_fail(&ctx, &e);
		goto done;
	}
	{
		/* the cache's own database carries no tag: tags are the controller's to give */
		struct release_build_opts o = { .tag = remote ? NULL : tag,
						.progress = ctx.json ? NULL : stderr };
		if (!ctx.json)
			fprintf(stderr, "building %s from %s%s%s\n", cfg->app, cfg->dir,
				remote ? " into the build cache " : "", remote ? cache : "");
		if (release_build(cfg, os, st, &o, &res, &e) < 0) {
			rc = cli_fail(&ctx, &e);
			goto done;
		}
	}
	if (remote) {
		if (cli_upload_release(&api, &ctx, os, res.id, tag, false, &up, &e) < 0) {
			rc = cli_fail(&ctx, &e);
			goto done;
		}
		res.existed = up.existed;
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
			if (o && remote)
				json_object_set_new(o, "upload", upload_json(&api, &up));
			json_dumpf(o, stdout, JSON_COMPACT);
			fputc('\n', stdout);
			json_decref(o);
		} else {
			fprintf(stderr,
				"%s %.19s%s%s%s: %zu files, %.1f MiB, %zu new objects, %zu hashed, %.2fs\n",
				res.existed ? "already stored" : "built", res.id, tag ? " (tag " : "",
				tag ? tag : "", tag ? ")" : "", res.n_files, (double)res.bytes / 1048576.0,
				res.n_new_objects, res.n_hashed, secs);
			if (remote)
				fprintf(stderr, "uploaded %zu objects (%.1f MiB) to %s, skipped %zu "
						"already there (%.1f MiB)\n",
					up.uploaded, (double)up.uploaded_bytes / 1048576.0,
					cli_api_where(&api), up.skipped,
					(double)up.skipped_bytes / 1048576.0);
			printf("%s\n", res.id);
		}
	}
done:
	json_decref(pins);
	store_close(st);
	objstore_free(os);
	config_free(cfg);
	cli_api_done(&api);
	free(cache);
	return rc;
}
