/* cli job: `cairn job N` (also `cairn history N`) — one deploy job as the controller recorded
 * it: who asked and why, how it ended and why, and every step per host with its timing and
 * what it found (gate numbers, the failing answer, the new instances' last log lines). */
#include "cli/cli.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static int run_job(int argc, char **argv);

const struct cli_command cli_cmd_job = {
	.name = "job",
	.run = run_job,
	.summary = "one deploy job: its steps with timings, gate numbers and log lines",
	.help = "NAME\n"
		"    cairn job - one deploy job in detail\n\n"
		"SYNOPSIS\n"
		"    cairn job N [--addr HOST:PORT --token-file FILE] [--json]\n"
		"    cairn history N                 (the same)\n\n"
		"DESCRIPTION\n"
		"    Shows job N as the controller recorded it: its kind, release, the release it\n"
		"    replaced, its state, the reason it was asked for (--reason) beside the reason\n"
		"    it failed or rolled back, when it was asked for and how long it ran; then every\n"
		"    step on every host in order, with its attempt, state and duration, and what\n"
		"    the step found: healthy instances, acceptance checks, the upstreams switched\n"
		"    to, the bake's verdict with the new and previous release's requests, 5xx, p50\n"
		"    and p99; for a failed step its error (the failing answer of an acceptance\n"
		"    check, an instance's last exit) and the new instances' last log lines.\n"
		"    A job still running is shown as far as it got; 'cairn deploy --follow N'\n"
		"    follows it to the end.\n\n"
		"OPTIONS\n"
		"    --addr, --token-file the controller on TCP (default: STATE/cairn.sock)\n"
		"    --state DIR          state directory (where cairn.sock is)\n"
		"    --json               the job as the API gives it (GET /v1/jobs/N), steps included\n\n"
		"EXIT STATUS\n"
		"    0 shown, 1 the controller could not be asked, 2 usage or no job N.\n\n"
		"EXAMPLES\n"
		"    cairn job 12\n"
		"    cairn job 12 --json | jq '.steps[] | select(.state == \"failed\")'\n",
};

static void dur(json_t *ms, char *out, size_t n)
{
	if (json_is_integer(ms))
		time_fmt_duration(json_integer_value(ms), out, n);
	else
		snprintf(out, n, "-");
}

static void traffic_line(const char *label, json_t *t)
{
	if (!t)
		return;
	printf("      %-9s %lld requests, %lld 5xx, p50 %.1f ms, p99 %.1f ms\n", label,
	       (long long)json_integer_value(json_object_get(t, "requests")),
	       (long long)json_integer_value(json_object_get(t, "errors_5xx")),
	       json_number_value(json_object_get(t, "p50_ms")),
	       json_number_value(json_object_get(t, "p99_ms")));
}

/* What a step found, one fact a line, indented under it. */
static void step_detail(const char *step, json_t *d)
{
	const char *err = json_string_value(json_object_get(d, "error"));
	const char *s;
	json_t *v;
	size_t i, k;

	if (err)
		printf("      error:    %s\n", err);
	if ((v = json_object_get(d, "healthy")))
		printf("      healthy:  %lld instance(s)\n", (long long)json_integer_value(v));
	if ((v = json_object_get(d, "checks")))
		printf("      checks:   %lld × %lld instance(s) passed\n", (long long)json_integer_value(v),
		       (long long)json_integer_value(json_object_get(d, "instances")));
	if (!strcmp(step, "switch") && (v = json_object_get(d, "upstreams")))
		printf("      proxy:    %s (%s) → %zu upstream(s), switched in %.2f ms\n",
		       json_string_value(json_object_get(d, "listen")) ?: "?",
		       json_string_value(json_object_get(d, "mode")) ?: "?", json_array_size(v),
		       (double)json_integer_value(json_object_get(d, "switch_us")) / 1000.0);
	if ((s = json_string_value(json_object_get(d, "verdict"))))
		printf("      verdict:  %s after %.1f s: %s\n", s,
		       (double)json_integer_value(json_object_get(d, "baked_ms")) / 1000.0,
		       json_string_value(json_object_get(d, "reason")) ?: "");
	else if (!err && (s = json_string_value(json_object_get(d, "reason"))))
		printf("      reason:   %s\n", s);
	traffic_line("new:", json_object_get(d, "new"));
	traffic_line("previous:", json_object_get(d, "previous"));
	if ((v = json_object_get(d, "stopped")) && json_is_integer(v))
		printf("      stopped:  %lld old instance(s)\n", (long long)json_integer_value(v));
	json_array_foreach(json_object_get(d, "logs"), i, v)
	{
		json_t *ln;
		printf("      log of %s (last lines):\n",
		       json_string_value(json_object_get(v, "instance")) ?: "?");
		json_array_foreach(json_object_get(v, "last_lines"), k, ln)
			printf("        | %s\n", json_string_value(ln) ?: "");
	}
}

int cli_job_print(json_t *j)
{
	char took[32];
	const char *err = json_string_value(json_object_get(j, "error"));
	const char *reason = json_string_value(json_object_get(j, "reason"));
	const char *from = json_string_value(json_object_get(j, "from_release"));
	size_t i;
	json_t *s;

	dur(json_object_get(j, "duration_ms"), took, sizeof(took));
	printf("job %lld: %s of %s to %s — %s\n", (long long)json_integer_value(json_object_get(j, "id")),
	       json_string_value(json_object_get(j, "kind")) ?: "?",
	       json_string_value(json_object_get(j, "app")) ?: "?",
	       json_string_value(json_object_get(j, "release")) ?: "?",
	       json_string_value(json_object_get(j, "state")) ?: "?");
	if (from)
		printf("  replacing: %s\n", from);
	printf("  asked:     %s%s%s%s\n", json_string_value(json_object_get(j, "created_at")) ?: "?",
	       reason && *reason ? " — reason: \"" : "", reason && *reason ? reason : "",
	       reason && *reason ? "\"" : "");
	if (json_is_string(json_object_get(j, "started_at")))
		printf("  ran:       %s → %s (%s%s)\n",
		       json_string_value(json_object_get(j, "started_at")),
		       json_string_value(json_object_get(j, "finished_at")) ?: "still running", took,
		       json_is_true(json_object_get(j, "terminal")) ? "" : " so far");
	if (err)
		printf("  why:       %s\n", err);
	if (!json_array_size(json_object_get(j, "steps"))) {
		printf("  no step has run yet\n");
		return 0;
	}
	printf("  %-16s %-15s %-3s %-8s %s\n", "HOST", "STEP", "TRY", "STATE", "TOOK");
	json_array_foreach(json_object_get(j, "steps"), i, s)
	{
		const char *step = json_string_value(json_object_get(s, "step")) ?: "?";
		dur(json_object_get(s, "duration_ms"), took, sizeof(took));
		printf("  %-16s %-15s %-3lld %-8s %s\n",
		       json_string_value(json_object_get(s, "host")) ?: "?", step,
		       (long long)json_integer_value(json_object_get(s, "attempt")),
		       json_string_value(json_object_get(s, "state")) ?: "?", took);
		step_detail(step, json_object_get(s, "detail"));
	}
	return 0;
}

int cli_job_show(const struct cli_ctx *ctx, const struct cli_api_opts *ao, const char *arg)
{
	struct cli_api a;
	struct err e;
	json_t *j = NULL;
	char path[64], *end;
	long status = 0;
	long long id = strtoll(arg, &end, 10);

	if (*end || id <= 0) {
		err_set(&e, CAIRN_EINPUT, "'%s' is not a job number; 'cairn history' lists them", arg);
		return cli_fail(ctx, &e);
	}
	if (cli_api_open(ctx, ao, &a, &e) < 0)
		return cli_fail(ctx, &e);
	snprintf(path, sizeof(path), "/v1/jobs/%lld", id);
	int r = cli_api_call(&a, "GET", path, NULL, NULL, &status, &j, &e);
	cli_api_done(&a);
	if (r < 0) {
		if (status == 404)
			err_prefix(&e, "no job %lld ('cairn history' lists the app's jobs)", id);
		return cli_fail(ctx, &e);
	}
	if (ctx->json) {
		json_dumpf(j, stdout, JSON_COMPACT);
		fputc('\n', stdout);
	} else {
		cli_job_print(j);
	}
	json_decref(j);
	return 0;
}

static int run_job(int argc, char **argv)
{
	static const struct option opts[] = { CLI_COMMON_OPTS, CLI_API_LONGOPTS, { 0 } };
	struct cli_ctx ctx = { .cmd = "job" };
	struct cli_api_opts ao = { 0 };
	const char *app = NULL;
	int c, r;

	while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT, opts, NULL)) != -1) {
		if (cli_api_opt(&ao, &app, c, optarg))
			continue;
		if ((r = cli_common_opt(&ctx, &cli_cmd_job, c, optarg)) >= 100)
			return r - 100;
		if (r == 0)
			return cli_usage(&cli_cmd_job, "unexpected option");
	}
	if (argc - optind != 1)
		return cli_usage(&cli_cmd_job, "name exactly one job number N ('cairn history' lists them)");
	return cli_job_show(&ctx, &ao, argv[optind]);
}
