/* cli status: `cairn status` (an app's current and last good release, running and queued
 * jobs, recorded upstreams) and `cairn history` (its deploy jobs) — API clients. */
#include "cli/cli.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int run_status(int argc, char **argv);
static int run_history(int argc, char **argv);

const struct cli_command cli_cmd_status = {
	.name = "status",
	.run = run_status,
	.summary = "an app's current and last good release, running job, upstreams",
	.help = "NAME\n"
		"    cairn status - where an app stands\n\n"
		"SYNOPSIS\n"
		"    cairn status [--app APP] [--addr HOST:PORT --token-file FILE] [--json]\n\n"
		"DESCRIPTION\n"
		"    Asks the controller for the app's current release, its last good release, the\n"
		"    running and queued deploy jobs, the deploy lease, every host's instances as its\n"
		"    agent reports them (release, pid, port, state, since when; an instance of\n"
		"    another release than the current one is flagged) and the upstream set recorded\n"
		"    by the last switch. Hosts are asked in parallel, each for at most 1.5 s (its\n"
		"    SSH connection included): a host that is down or does not answer is shown as\n"
		"    UNREACHABLE with the reason, next to the hosts that answered.\n\n"
		"OPTIONS\n"
		"    --app APP            the app (default: app of ./cairn.yml)\n"
		"    --addr, --token-file the controller on TCP (default: STATE/cairn.sock)\n"
		"    --json               the controller's answer as JSON\n\n"
		"EXIT STATUS\n"
		"    0 shown, every host answered; 1 the controller could not be asked, or a host\n"
		"    did not answer (everything else is still shown); 2 usage, unknown app, or\n"
		"    nothing there (no state directory at --state / CAIRN_STATE).\n\n"
		"EXAMPLES\n"
		"    cairn status\n"
		"    cairn status --app urlshort --json | jq .current\n",
};

const struct cli_command cli_cmd_history = {
	.name = "history",
	.run = run_history,
	.summary = "an app's deploy jobs with outcome, timings and why",
	.help = "NAME\n"
		"    cairn history - deploy jobs, newest first\n\n"
		"SYNOPSIS\n"
		"    cairn history [--app APP] [--limit N] [--json]\n"
		"    cairn history N [--json]        (job N in detail, as 'cairn job N')\n\n"
		"DESCRIPTION\n"
		"    Lists the app's deploy and rollback jobs: id, kind, state, release and its\n"
		"    tags, when it was asked for, how long it ran (TOOK), and why it failed or\n"
		"    rolled back, with the --reason it was asked with beside it; a succeeded job\n"
		"    whose bake could not judge says \"passed unjudged: why\" (rollout.unjudged).\n"
		"    Also the app's emergency stops (kind stop): when, the --reason and who asked.\n\n"
		"OPTIONS\n"
		"    --app APP            the app (default: app of ./cairn.yml)\n"
		"    --limit N            at most N jobs (default 20)\n"
		"    --addr, --token-file the controller on TCP (default: STATE/cairn.sock)\n"
		"    --json               {\"jobs\": [JOB…]}\n\n"
		"EXIT STATUS\n"
		"    0 listed, 1 the controller could not be asked, 2 usage, unknown app, or\n"
		"    nothing there (no state directory at --state / CAIRN_STATE).\n\n"
		"EXAMPLES\n"
		"    cairn history --limit 5\n",
};

/* "up 3m12s" from an RFC 3339 UTC time (what the agents report), "" when unparseable */
static void uptime(const char *since, char *out, size_t n)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	out[0] = '\0';
	if (!since || !strptime(since, "%Y-%m-%dT%H:%M:%SZ", &tm))
		return;
	int64_t up = time_now_ns() / 1000000 - (int64_t)timegm(&tm) * 1000;
	char d[32];
	time_fmt_duration(up < 0 ? 0 : up, d, sizeof(d));
	snprintf(out, n, " (up %s)", d);
}

/* "74c85b4d765f (v2,ci-7)": a job's short release id and its tags, escaped */
static void release_text(json_t *job, struct buf *out)
{
	const char *rel = json_string_value(json_object_get(job, "release"));
	buf_addf(out, "%.12s", rel && strlen(rel) > 7 ? rel + 7 : "?");
	cli_release_tags_text(json_object_get(job, "release_tags"), out);
}

/* Whether release id is marked unjudged in the app's answer ("releases": [{id, state}]). */
static bool release_unjudged(json_t *app, const char *id)
{
	size_t i;
	json_t *r;
	json_array_foreach(json_object_get(app, "releases"), i, r)
		if (id && !strcmp(json_string_value(json_object_get(r, "id")) ?: "", id))
			return !strcmp(json_string_value(json_object_get(r, "state")) ?: "", "unjudged");
	return false;
}

static int get(const struct cli_command *cmd, int argc, char **argv, bool history)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTS, CLI_API_LONGOPTS, { "limit", required_argument, NULL, 'n' }, { 0 },
	};
	struct cli_ctx ctx = { .cmd = cmd->name };
	struct cli_api_opts ao = { 0 };
	struct cli_api a;
	const char *app_flag = NULL;
	char *app = NULL, path[160];
	int limit = 20, c, r;
	struct err e;
	json_t *ans = NULL;
	long status;
	bool host_down = false;

	while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT, opts, NULL)) != -1) {
		if (cli_api_opt(&ao, &app_flag, c, optarg))
			continue;
		if (c == 'n' && history) {
			limit = atoi(optarg);
			if (limit <= 0)
				return cli_usage(cmd, "--limit takes a positive number");
			continue;
		}
		if ((r = cli_common_opt(&ctx, cmd, c, optarg)) >= 100)
			return r - 100;
		if (r == 0)
			return cli_usage(cmd, "unexpected option");
	}
	if (history && argc - optind == 1)
		return cli_job_show(&ctx, &ao, argv[optind]); /* history N: that job in detail */
	if (optind < argc)
		return cli_usage(cmd, "unexpected argument '%s'", argv[optind]);
	if (cli_app_name(&ctx, app_flag, &app, &e) < 0)
		return cli_fail(&ctx, &e);
	if (cli_api_open(&ctx, &ao, &a, &e) < 0) {
		free(app);
		return cli_fail(&ctx, &e);
	}
	if (history)
		snprintf(path, sizeof(path), "/v1/apps/%s/deploys?limit=%d", app, limit);
	else
		snprintf(path, sizeof(path), "/v1/apps/%s", app);
	r = cli_api_call(&a, "GET", path, NULL, NULL, &status, &ans, &e);
	if (r == 0 && !history) {
		/* per host and instance, as the agents report them */
		json_t *inst = NULL;
		snprintf(path, sizeof(path), "/v1/apps/%s/instances", app);
		if (cli_api_call(&a, "GET", path, NULL, NULL, &status, &inst, &e) == 0)
			json_object_set(ans, "hosts", json_object_get(inst, "hosts"));
		json_decref(inst);
		/* the running job: how long it has run and where it is */
		json_t *run = json_object_get(ans, "running_job"), *rj = NULL;
		if (json_is_integer(run)) {
			snprintf(path, sizeof(path), "/v1/jobs/%lld", (long long)json_integer_value(run));
			if (cli_api_call(&a, "GET", path, NULL, NULL, &status, &rj, &e) == 0)
				json_object_set_new(ans, "running", rj);
		}
	}
	cli_api_done(&a);
	free(app);
	if (r < 0)
		return cli_fail(&ctx, &e);
	if (!history) {
		size_t i;
		json_t *h;
		json_array_foreach(json_object_get(ans, "hosts"), i, h)
			host_down |= !json_is_true(json_object_get(h, "ok"));
	}
	if (ctx.json) {
		json_dumpf(ans, stdout, JSON_COMPACT);
		fputc('\n', stdout);
	} else if (history) {
		size_t i;
		json_t *j;
		/* the RELEASE column is as wide as its widest "id (tags)", so the columns after it
		 * stay aligned */
		int wide = 14;
		json_array_foreach(json_object_get(ans, "jobs"), i, j)
		{
			struct buf rb;
			buf_init(&rb, 1 << 20);
			release_text(j, &rb);
			if ((int)rb.len > wide)
				wide = rb.len > 64 ? 64 : (int)rb.len;
			buf_done(&rb);
		}
		printf("%-6s %-9s %-12s %-*s %-21s %-8s %s\n", "JOB", "KIND", "STATE", wide, "RELEASE",
		       "CREATED", "TOOK", "WHY");
		json_array_foreach(json_object_get(ans, "jobs"), i, j)
		{
			const char *err = json_string_value(json_object_get(j, "error"));
			const char *reason = json_string_value(json_object_get(j, "reason"));
			json_t *ms = json_object_get(j, "duration_ms");
			char took[32] = "-";
			if (json_is_integer(ms))
				time_fmt_duration(json_integer_value(ms), took, sizeof(took));
			if (json_is_integer(ms) && !json_is_true(json_object_get(j, "terminal")))
				strcat(took, "+"); /* still running */
			struct buf rb;
			buf_init(&rb, 1 << 20);
			release_text(j, &rb);
			printf("%-6lld %-9s %-12s %-*s %-21s %-8s ",
			       (long long)json_integer_value(json_object_get(j, "id")),
			       json_string_value(json_object_get(j, "kind")),
			       json_string_value(json_object_get(j, "state")), wide, buf_str(&rb),
			       json_string_value(json_object_get(j, "created_at")) ?: "", took);
			/* the failure and the user's own reason, side by side (both escaped: the
			 * app's and the user's own words) */
			const char *note = json_string_value(json_object_get(j, "unjudged"));
			if (!err && note) { /* a succeeded job whose bake could not judge did not pass it */
				fputs("passed unjudged: ", stdout);
				name_fput_safe(note, stdout);
			} else {
				name_fput_safe(err ? err : reason ? reason : "", stdout);
			}
			if (err && reason && *reason) {
				fputs(" (asked: \"", stdout);
				name_fput_safe(reason, stdout);
				fputs("\")", stdout);
			}
			if (json_string_value(json_object_get(j, "created_by"))) {
				fputs(" (by ", stdout);
				name_fput_safe(json_string_value(json_object_get(j, "created_by")), stdout);
				putchar(')');
			}
			putchar('\n');
			buf_done(&rb);
		}
	} else {
		const char *cur = json_string_value(json_object_get(ans, "current"));
		const char *good = json_string_value(json_object_get(ans, "last_good"));
		json_t *run = json_object_get(ans, "running_job");
		printf("app:        %s\n", json_string_value(json_object_get(ans, "app")));
		struct buf ct, gt;
		buf_init(&ct, 1 << 20);
		buf_init(&gt, 1 << 20);
		cli_release_tags_text(json_object_get(ans, "current_tags"), &ct);
		cli_release_tags_text(json_object_get(ans, "last_good_tags"), &gt);
		printf("current:    %s%s%s%s\n", cur ? cur : "(none deployed)", buf_str(&ct),
		       release_unjudged(ans, cur) ? "   (passed unjudged: no bake judged it)" : "",
		       json_is_true(json_object_get(ans, "stopped"))
			   ? "   STOPPED by an emergency stop: deploy a release to bring it back"
			   : "");
		printf("last good:  %s%s%s\n", good ? good : "(none)", buf_str(&gt),
		       cur && good && strcmp(cur, good) ? "   (current is NOT the last good release)" : "");
		buf_done(&ct);
		buf_done(&gt);
		if (json_is_integer(run)) {
			json_t *rj = json_object_get(ans, "running"), *steps = json_object_get(rj, "steps");
			json_t *last = json_array_get(steps, json_array_size(steps) - 1);
			char took[32] = "";
			if (json_is_integer(json_object_get(rj, "duration_ms")))
				time_fmt_duration(json_integer_value(json_object_get(rj, "duration_ms")), took,
						  sizeof(took));
			printf("running:    job %lld", (long long)json_integer_value(run));
			if (took[0])
				printf(", %s so far", took);
			if (last)
				printf(", at %s %s on %s",
				       json_string_value(json_object_get(last, "step")) ?: "?",
				       json_string_value(json_object_get(last, "state")) ?: "?",
				       json_string_value(json_object_get(last, "host")) ?: "?");
			printf("   ('cairn deploy --follow %lld' follows it)\n",
			       (long long)json_integer_value(run));
		}
		if (json_array_size(json_object_get(ans, "queued_jobs")))
			printf("queued:     %zu job(s)\n", json_array_size(json_object_get(ans, "queued_jobs")));
		size_t i, k;
		json_t *h, *in;
		json_array_foreach(json_object_get(ans, "hosts"), i, h)
		{
			const char *why = json_string_value(json_object_get(h, "error"));
			if (json_is_true(json_object_get(h, "ok")))
				printf("host %s:\n", json_string_value(json_object_get(h, "host")));
			else
				printf("host %s: UNREACHABLE: %s\n",
				       json_string_value(json_object_get(h, "host")),
				       why ? why : "its agent did not answer");
			json_array_foreach(json_object_get(h, "instances"), k, in)
			{
				const char *rel = json_string_value(json_object_get(in, "release"));
				const char *since = json_string_value(json_object_get(in, "started_at"));
				const char *ist = json_string_value(json_object_get(in, "state"));
				char up[48] = "";
				if (ist && !strcmp(ist, "running"))
					uptime(since, up, sizeof(up));
				printf("  %-12s %-14.12s pid %-7lld port %-6lld %-9s since %s%s%s\n",
				       json_string_value(json_object_get(in, "id")),
				       rel && strlen(rel) > 7 ? rel + 7 : "?",
				       (long long)json_integer_value(json_object_get(in, "pid")),
				       (long long)json_integer_value(json_object_get(in, "port")),
				       json_string_value(json_object_get(in, "state")),
				       since ?: "?", up,
				       cur && rel && strcmp(rel, cur) ? "   (not the current release)" : "");
				/* a crash-looping instance: why, in its own words */
				const char *iwhy = json_string_value(json_object_get(in, "why"));
				if (iwhy)
					printf("    why: %s\n", iwhy);
			}
			json_t *px = json_object_get(h, "proxy"), *t;
			if (px) {
				printf("  proxy %s (%s): %zu upstreams%s\n",
				       json_string_value(json_object_get(px, "listen")) ?: "?",
				       json_string_value(json_object_get(px, "mode")) ?: "?",
				       json_array_size(json_object_get(px, "upstreams")),
				       json_is_true(json_object_get(px, "stopped"))
					   ? "   STOPPED (emergency): users get 503 / refused"
					   : "");
			}
			json_array_foreach(json_object_get(px, "releases"), k, t)
			{
				const char *rel = json_string_value(json_object_get(t, "release"));
				json_t *tot = json_object_get(t, "total"), *sc = json_object_get(tot, "status");
				if (!tot)
					continue;
				printf("  traffic %-14.12s %lld requests: %lld 2xx %lld 3xx %lld 4xx %lld "
				       "5xx, p50 %.1f ms, p99 %.1f ms\n",
				       rel && strlen(rel) > 7 ? rel + 7 : "?",
				       (long long)json_integer_value(json_object_get(tot, "requests")),
				       (long long)json_integer_value(json_object_get(sc, "2xx")),
				       (long long)json_integer_value(json_object_get(sc, "3xx")),
				       (long long)json_integer_value(json_object_get(sc, "4xx")),
				       (long long)json_integer_value(json_object_get(sc, "5xx")),
				       json_real_value(json_object_get(tot, "p50_ms")),
				       json_real_value(json_object_get(tot, "p99_ms")));
			}
		}
		json_t *ups = json_object_get(ans, "upstreams");
		if (ups && !json_array_size(json_object_get(ans, "hosts"))) {
			char *t = json_dumps(ups, JSON_COMPACT); /* no host answered: what was recorded */
			printf("upstreams:  %s\n", t ? t : "");
			free(t);
		}
	}
	json_decref(ans);
	return host_down ? 1 : 0;
}

static int run_status(int argc, char **argv)
{
	return get(&cli_cmd_status, argc, argv, false);
}

static int run_history(int argc, char **argv)
{
	return get(&cli_cmd_history, argc, argv, true);
}
