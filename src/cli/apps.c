/* cli apps: `cairn apps` (every app the controller knows, where it stands) and `cairn rm APP`
 * (the app leaves its hosts: proxy and instances go, releases and history stay) — API clients. */
#include "cli/cli.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static int run_apps(int argc, char **argv);
static int run_rm(int argc, char **argv);

const struct cli_command cli_cmd_apps = {
	.name = "apps",
	.run = run_apps,
	.summary = "every app the controller knows: current release, jobs, releases",
	.help = "NAME\n"
		"    cairn apps - the apps the controller knows\n\n"
		"SYNOPSIS\n"
		"    cairn apps [--addr HOST:PORT --token-file FILE] [--json]\n\n"
		"DESCRIPTION\n"
		"    Lists every app with a release on the controller: its current release (or\n"
		"    'not deployed'), its last good release, the running and queued deploy jobs\n"
		"    and how many releases it has. 'cairn status --app APP' shows one in detail.\n\n"
		"OPTIONS\n"
		"    --addr, --token-file the controller on TCP (default: STATE/cairn.sock)\n"
		"    --state DIR          state directory (where cairn.sock is)\n"
		"    --json               {\"apps\": [{app, current, last_good, running_job,\n"
		"                         queued_jobs, releases}]}\n\n"
		"EXIT STATUS\n"
		"    0 listed (none is fine), 1 the controller could not be asked, 2 usage or\n"
		"    nothing there (no state directory).\n\n"
		"EXAMPLES\n"
		"    cairn apps\n"
		"    cairn apps --json | jq -r '.apps[] | select(.current == null) | .app'\n",
};

const struct cli_command cli_cmd_rm = {
	.name = "rm",
	.run = run_rm,
	.summary = "remove an app from its hosts (keeps its releases and history)",
	.help = "NAME\n"
		"    cairn rm - take an app off every host\n\n"
		"SYNOPSIS\n"
		"    cairn rm APP [--addr HOST:PORT --token-file FILE] [--json]\n\n"
		"DESCRIPTION\n"
		"    On every host of the app's current release, removes the app's proxy (its\n"
		"    port is free again; clients are refused from then on) and then stops its\n"
		"    instances gracefully (stop_signal, then SIGKILL after stop_timeout). The app\n"
		"    is then deployed nowhere: 'cairn status' shows no current release. Its\n"
		"    releases, its deploy history and its last good release are kept: 'cairn\n"
		"    deploy REF' brings it back. Refused while a deploy of the app runs or waits\n"
		"    (wait for it with 'cairn deploy --follow N', or 'cairn stop --emergency APP').\n"
		"    A host that cannot be reached is reported and the app stays recorded as\n"
		"    deployed: run rm again when the host is back. APP is always named: rm never\n"
		"    takes it from ./cairn.yml.\n\n"
		"OPTIONS\n"
		"    --addr, --token-file the controller on TCP (default: STATE/cairn.sock)\n"
		"    --state DIR          state directory (where cairn.sock is)\n"
		"    --json               {app, was_current, removed, hosts: [{host, ok,\n"
		"                         proxy_removed, stopped, error}]}\n\n"
		"EXIT STATUS\n"
		"    0 removed from every host (or it was deployed nowhere), 1 a host failed or a\n"
		"    deploy of it runs, 2 usage or unknown APP.\n\n"
		"EXAMPLES\n"
		"    cairn rm urlshort\n"
		"    cairn rm urlshort --json | jq .hosts\n",
};

static int parse(const struct cli_command *cmd, struct cli_ctx *ctx, struct cli_api_opts *ao,
		 int argc, char **argv)
{
	static const struct option opts[] = { CLI_COMMON_OPTS, CLI_API_LONGOPTS, { 0 } };
	const char *app = NULL;
	int c, r;
	while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT, opts, NULL)) != -1) {
		if (cli_api_opt(ao, &app, c, optarg)) {
			if (c == 'a')
				return cli_usage(cmd, "--app is not an option of %s", cmd->name) + 100;
			continue;
		}
		if ((r = cli_common_opt(ctx, cmd, c, optarg)) >= 100)
			return r;
		if (r == 0)
			return cli_usage(cmd, "unexpected option") + 100;
	}
	return 0;
}

static void print_json(json_t *o)
{
	json_dumpf(o, stdout, JSON_COMPACT);
	fputc('\n', stdout);
}

static int run_apps(int argc, char **argv)
{
	struct cli_ctx ctx = { .cmd = "apps" };
	struct cli_api_opts ao = { 0 };
	struct cli_api a;
	struct err e;
	json_t *names = NULL, *out = json_array(), *v;
	long status;
	size_t i;
	int r = parse(&cli_cmd_apps, &ctx, &ao, argc, argv);

	if (r >= 100) {
		json_decref(out);
		return r - 100;
	}
	if (optind < argc) {
		json_decref(out);
		return cli_usage(&cli_cmd_apps, "unexpected argument '%s'", argv[optind]);
	}
	if (cli_api_open(&ctx, &ao, &a, &e) < 0) {
		json_decref(out);
		return cli_fail(&ctx, &e);
	}
	r = cli_api_call(&a, "GET", "/v1/apps", NULL, NULL, &status, &names, &e);
	json_array_foreach(json_object_get(names, "apps"), i, v)
	{
		char path[160];
		json_t *one = NULL;
		snprintf(path, sizeof(path), "/v1/apps/%s", json_string_value(v) ?: "");
		if (r == 0 && (r = cli_api_call(&a, "GET", path, NULL, NULL, &status, &one, &e)) == 0) {
			json_t *rels = json_object_get(one, "releases");
			json_array_append_new(
				out, json_pack("{s:O,s:O,s:O,s:O,s:O,s:I}", "app", json_object_get(one, "app"),
					       "current", json_object_get(one, "current") ?: json_null(),
					       "last_good", json_object_get(one, "last_good") ?: json_null(),
					       "running_job", json_object_get(one, "running_job") ?: json_null(),
					       "queued_jobs", json_object_get(one, "queued_jobs") ?: json_null(),
					       "releases", (json_int_t)json_array_size(rels)));
		}
		json_decref(one);
	}
	cli_api_done(&a);
	json_decref(names);
	if (r < 0) {
		json_decref(out);
		return cli_fail(&ctx, &e);
	}
	if (ctx.json) {
		json_t *o = json_pack("{s:o}", "apps", out);
		print_json(o);
		json_decref(o);
		return 0;
	}
	if (!json_array_size(out))
		printf("no apps yet: 'cairn build' in an app's directory makes its first release\n");
	else
		printf("%-24s %-14s %-14s %-8s %s\n", "APP", "CURRENT", "LAST GOOD", "RELEASES", "JOBS");
	json_array_foreach(out, i, v)
	{
		const char *cur = json_string_value(json_object_get(v, "current"));
		const char *good = json_string_value(json_object_get(v, "last_good"));
		json_t *run = json_object_get(v, "running_job");
		size_t nq = json_array_size(json_object_get(v, "queued_jobs"));
		char jobs[96] = "-";
		if (json_is_integer(run))
			snprintf(jobs, sizeof(jobs), "job %lld running%s", (long long)json_integer_value(run),
				 nq ? ", more queued" : "");
		else if (nq)
			snprintf(jobs, sizeof(jobs), "%zu queued", nq);
		printf("%-24s %-14.12s %-14.12s %-8lld %s\n", json_string_value(json_object_get(v, "app")),
		       cur ? cur + 7 : "not deployed", good ? good + 7 : "-",
		       (long long)json_integer_value(json_object_get(v, "releases")), jobs);
	}
	json_decref(out);
	return 0;
}

static int run_rm(int argc, char **argv)
{
	struct cli_ctx ctx = { .cmd = "rm" };
	struct cli_api_opts ao = { 0 };
	struct cli_api a;
	struct err e;
	json_t *ans = NULL, *h;
	char path[160];
	long status = 0;
	size_t i;
	int r = parse(&cli_cmd_rm, &ctx, &ao, argc, argv);

	if (r >= 100)
		return r - 100;
	if (argc - optind != 1)
		return cli_usage(&cli_cmd_rm, "name exactly one APP to remove ('cairn apps' lists them)");
	const char *app = argv[optind];
	if (cli_api_open(&ctx, &ao, &a, &e) < 0)
		return cli_fail(&ctx, &e);
	snprintf(path, sizeof(path), "/v1/apps/%s", app);
	r = cli_api_call(&a, "DELETE", path, NULL, NULL, &status, &ans, &e);
	cli_api_done(&a);
	if (r < 0)
		return cli_fail(&ctx, &e);
	bool removed = json_is_true(json_object_get(ans, "removed")) ||
		       json_object_get(ans, "was_current") == NULL ||
		       json_is_null(json_object_get(ans, "was_current"));
	if (ctx.json) {
		print_json(ans);
	} else if (!json_array_size(json_object_get(ans, "hosts"))) {
		printf("%s: %s\n", app,
		       json_string_value(json_object_get(ans, "note")) ?: "nothing to remove");
	} else {
		printf("%s: removing from %zu host(s)\n", app, json_array_size(json_object_get(ans, "hosts")));
		json_array_foreach(json_object_get(ans, "hosts"), i, h)
		{
			if (json_is_true(json_object_get(h, "ok")))
				printf("  %-16s %s, %lld instance(s) stopped\n",
				       json_string_value(json_object_get(h, "host")),
				       json_is_false(json_object_get(h, "proxy_removed")) ? "no proxy"
											 : "proxy removed",
				       (long long)json_integer_value(json_object_get(h, "stopped")));
			else
				printf("  %-16s FAILED: %s\n", json_string_value(json_object_get(h, "host")),
				       json_string_value(json_object_get(h, "error")) ?: "?");
		}
		if (removed)
			printf("%s runs nowhere now; its releases and history are kept ('cairn deploy "
			       "REF --app %s' brings it back)\n",
			       app, app);
		else
			printf("%s is still recorded as deployed: run 'cairn rm %s' again when the "
			       "failed host(s) answer\n",
			       app, app);
	}
	json_decref(ans);
	return removed ? 0 : 1;
}
