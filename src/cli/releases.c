/* cli releases: `cairn releases` (the list) and `cairn verify` (re-hash stored releases). */
#include "cli/cli.h"

#include "release/release.h"
#include "store/store.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static int run_releases(int argc, char **argv);
static int run_verify(int argc, char **argv);

const struct cli_command cli_cmd_releases = {
	.name = "releases",
	.run = run_releases,
	.summary = "list stored releases with tags, age and state",
	.help = "NAME\n"
		"    cairn releases - list stored releases\n\n"
		"SYNOPSIS\n"
		"    cairn releases [--app APP] [--state DIR] [--json]\n\n"
		"DESCRIPTION\n"
		"    Lists every release in the state directory, oldest first: short id, app,\n"
		"    tags (every tag it was given, oldest first), age, state (untested, good:\n"
		"    passed every gate and its bake; bad: failed one; unjudged: deployed, but no\n"
		"    bake could judge it - see rollout.unjudged), file count and size. A REF\n"
		"    names a release wherever one is taken: the full id or a unique prefix of 4\n"
		"    or more hex digits (always an id, never a tag), else a tag.\n\n"
		"OPTIONS\n"
		"    --app APP     only this app's releases\n"
		"    --state DIR   state directory\n"
		"    --json        one JSON object: {\"releases\": [{id, app, tag (the first),\n"
		"                  tags, created_at, state, files, bytes}]}\n\n"
		"EXIT STATUS\n"
		"    0 listed, 1 the state could not be read, 2 usage.\n\n"
		"EXAMPLES\n"
		"    cairn releases --app urlshort\n",
};

const struct cli_command cli_cmd_verify = {
	.name = "verify",
	.run = run_verify,
	.summary = "re-hash releases and name every corrupt or missing file",
	.help = "NAME\n"
		"    cairn verify - re-hash stored releases and their activated copies\n\n"
		"SYNOPSIS\n"
		"    cairn verify [REF] [--app APP] [--state DIR] [--json]\n\n"
		"DESCRIPTION\n"
		"    Re-reads the manifest and every object of the release REF (or of every release\n"
		"    when REF is not given) and checks each against its SHA-256. Every corrupt or\n"
		"    missing file is named with its path in the release. Nothing is repaired:\n"
		"    import the release again from an export ('cairn import') or rebuild it from\n"
		"    its source to restore the objects.\n\n"
		"    A release activated on this host (STATE/releases/HEX) is checked too: every\n"
		"    file re-hashed against the manifest, its mode, every link and directory, and\n"
		"    no name that the release does not have; a problem there is named\n"
		"    STATE/releases/HEX/PATH. The agent makes such a copy again on its next\n"
		"    activation (docs/security.md).\n\n"
		"OPTIONS\n"
		"    --app APP     resolve REF among this app's releases / verify only this app\n"
		"    --state DIR   state directory\n"
		"    --json        {\"releases\": [{id, ok, problems: [{path, problem}]}]}\n\n"
		"EXIT STATUS\n"
		"    0 every release is intact, 1 at least one is corrupt, 2 usage or unknown REF.\n\n"
		"EXAMPLES\n"
		"    cairn verify v1\n"
		"    cairn verify --json | jq '.releases[] | select(.ok | not)'\n",
};

struct list_ctx {
	const struct cli_ctx *ctx;
	struct store *st;
	json_t *arr;
	size_t n;
	int64_t now;
};

static int list_one(void *arg, const struct store_release *r)
{
	struct list_ctx *l = arg;
	char age[32], when[32];
	struct err e;
	json_t *tags = store_release_tags_json(l->st, r->id, &e);

	if (!tags) {
		err_print(&e, stderr);
		return 1;
	}
	time_fmt_duration((l->now - r->created_at) * 1000, age, sizeof(age));
	time_fmt_rfc3339(r->created_at, when, sizeof(when));
	if (l->ctx->json) {
		json_array_append_new(l->arr, json_pack("{s:s,s:s,s:s?,s:O,s:s,s:s,s:I,s:I}", "id",
							r->id, "app", r->app, "tag",
							r->tag[0] ? r->tag : NULL, "tags", tags,
							"created_at", when, "state",
							release_state_name(r->state), "files",
							(json_int_t)r->n_files, "bytes", (json_int_t)r->bytes));
	} else {
		/* app names and tags are checked when given, but an older state.db may hold any
		 * bytes: nothing from it drives the terminal */
		char app[NAME_SAFE_LEN(64)];
		struct buf tb;
		buf_init(&tb, 1 << 20);
		cli_tags_text(tags, &tb);
		if (l->n == 0)
			printf("%-12s  %-16s  %-16s  %-8s  %-9s  %7s  %9s\n", "ID", "APP", "TAGS", "AGE",
			       "STATE", "FILES", "SIZE");
		printf("%.12s  %-16s  %-16s  %-8s  %-9s  %7lld  %8.1fM\n", r->id + 7,
		       name_safe(r->app, app, sizeof(app)), tb.len ? buf_str(&tb) : "-", age,
		       release_state_name(r->state), (long long)r->n_files,
		       (double)r->bytes / 1048576.0);
		buf_done(&tb);
	}
	json_decref(tags);
	l->n++;
	return 0;
}

static int run_releases(int argc, char **argv)
{
	static const struct option opts[] = { CLI_COMMON_OPTS, { "app", required_argument, NULL, 'a' },
					      { 0 } };
	struct cli_ctx ctx = { .cmd = "releases" };
	struct list_ctx l = { .ctx = &ctx, .now = time_now_ns() / 1000000000 };
	const char *app = NULL;
	struct objstore *os = NULL;
	struct store *st = NULL;
	struct err e;
	int c, rc = 0;

	while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT, opts, NULL)) != -1) {
		int k = cli_common_opt(&ctx, &cli_cmd_releases, c, optarg);
		if (k >= 100)
			return k - 100;
		if (k == 0 && c == 'a')
			app = optarg;
	}
	if (optind < argc)
		return cli_usage(&cli_cmd_releases, "unexpected argument '%s'", argv[optind]);
	if (cli_state_exists(&ctx, &e) < 0) {
		/* an empty list, and why: a typo'd --state is not silently an empty store */
		if (ctx.json)
			printf("{\"releases\":[],\"nothing_there\":true}\n");
		else
			printf("no releases%s%s\n", app ? " of " : "", app ? app : "");
		fprintf(stderr, "cairn: %s\n", e.msg);
		return 0;
	}
	if (cli_open_state(&ctx, &os, &st, &e) < 0)
		return cli_fail(&ctx, &e);
	l.arr = json_array();
	l.st = st;
	if ((rc = store_release_list(st, app, list_one, &l, &e)) == 1) {
		rc = 1; /* printed by list_one */
	} else if (rc < 0) {
		rc = cli_fail(&ctx, &e);
	} else if (ctx.json) {
		json_t *o = json_pack("{s:O}", "releases", l.arr);
		json_dumpf(o, stdout, JSON_COMPACT);
		fputc('\n', stdout);
		json_decref(o);
	} else if (l.n == 0) {
		printf("no releases%s%s yet; 'cairn build' makes one\n", app ? " of " : "", app ? app : "");
	}
	json_decref(l.arr);
	store_close(st);
	objstore_free(os);
	return rc;
}

struct verify_ctx {
	const struct cli_ctx *ctx;
	const struct objstore *os;
	json_t *arr;
	json_t *problems; /* of the release being verified */
	size_t n_bad;
	const char *id;
	const char *tree; /* borrowed: the release dir being checked, or NULL */
};

static void on_problem(void *arg, const char *path, const char *problem)
{
	struct verify_ctx *v = arg;
	char *full = NULL;
	if (v->tree) /* a problem of the activated copy, not of the stored objects */
		path = full = xasprintf("%s/%s", v->tree, path);
	if (v->ctx->json)
		json_array_append_new(v->problems, json_pack("{s:s,s:s}", "path", path, "problem", problem));
	else
		printf("  %s: %s\n", path, problem);
	free(full);
}

/* The activated copy, when there is one: every file re-hashed, every name accounted for. */
static int verify_tree(struct verify_ctx *v, const char *id, struct err *e)
{
	const char *hex = str_starts(id, "sha256:") ? id + 7 : id;
	char *dir = xasprintf("%s/releases/%s", objstore_state_dir(v->os), hex);
	struct manifest *m = NULL;
	int r = 0;

	if (fs_is_dir(dir) && (r = release_load(v->os, id, &m, e)) == 0) {
		v->tree = dir;
		r = release_tree_check(m, dir, on_problem, v, e);
		v->tree = NULL;
	}
	manifest_free(m);
	free(dir);
	return r;
}

static int verify_one(void *arg, const struct store_release *r)
{
	struct verify_ctx *v = arg;
	struct err e;
	int ok;

	v->problems = json_array();
	if (!v->ctx->json) {
		char app[NAME_SAFE_LEN(64)], tag[NAME_SAFE_LEN(STORE_TAG_MAX)];
		printf("%.19s %s%s%s\n", r->id, name_safe(r->app, app, sizeof(app)),
		       r->tag[0] ? " " : "", name_safe(r->tag, tag, sizeof(tag)));
	}
	ok = release_verify(v->os, r->id, on_problem, v, &e) == 0;
	ok = ok && verify_tree(v, r->id, &e) == 0;
	if (!ok)
		v->n_bad++;
	if (v->ctx->json)
		json_array_append_new(v->arr, json_pack("{s:s,s:b,s:O}", "id", r->id, "ok", ok, "problems",
							v->problems));
	else
		printf("  %s\n", ok ? "ok" : e.msg);
	json_decref(v->problems);
	return 0;
}

static int run_verify(int argc, char **argv)
{
	static const struct option opts[] = { CLI_COMMON_OPTS, { "app", required_argument, NULL, 'a' },
					      { 0 } };
	struct cli_ctx ctx = { .cmd = "verify" };
	const char *app = NULL;
	struct objstore *os = NULL;
	struct store *st = NULL;
	struct verify_ctx v = { .ctx = &ctx };
	struct err e;
	int c, rc = 0;

	while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT, opts, NULL)) != -1) {
		int k = cli_common_opt(&ctx, &cli_cmd_verify, c, optarg);
		if (k >= 100)
			return k - 100;
		if (k == 0 && c == 'a')
			app = optarg;
	}
	if (argc - optind > 1)
		return cli_usage(&cli_cmd_verify, "unexpected argument '%s'", argv[optind + 1]);
	if (optind == argc && cli_state_exists(&ctx, &e) < 0) {
		/* nothing to verify, and why */
		if (ctx.json)
			printf("{\"releases\":[],\"nothing_there\":true}\n");
		fprintf(stderr, "cairn: %s\n", e.msg);
		return 0;
	}
	if (cli_open_state_existing(&ctx, &os, &st, &e) < 0)
		return cli_fail(&ctx, &e);
	v.os = os;
	v.arr = json_array();
	if (optind < argc) {
		struct store_release r;
		char id[HASH_ID_LEN + 1];
		if (store_release_resolve(st, app, argv[optind], id, &e) < 0 ||
		    store_release_get(st, id, &r, &e) < 0) {
			rc = cli_fail(&ctx, &e);
			goto done;
		}
		verify_one(&v, &r);
	} else if (store_release_list(st, app, verify_one, &v, &e) < 0) {
		rc = cli_fail(&ctx, &e);
		goto done;
	}
	if (ctx.json) {
		json_t *o = json_pack("{s:O}", "releases", v.arr);
		json_dumpf(o, stdout, JSON_COMPACT);
		fputc('\n', stdout);
		json_decref(o);
	}
	rc = v.n_bad ? 1 : 0;
done:
	json_decref(v.arr);
	store_close(st);
	objstore_free(os);
	return rc;
}
