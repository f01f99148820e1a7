/* cli deploy: `cairn deploy`, `cairn rollback`, `cairn stop --emergency` and `cairn unlock` —
 * API clients of the controller. A deploy is a job the controller records and runs; the CLI
 * only asks for it (with an Idempotency-Key, so its own retries never start a second one). */
#include "cli/cli.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <signal.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CLI_WAIT_MS (2LL * 3600 * 1000) /* --wait gives up after this (the job goes on) */

static int run_deploy(int argc, char **argv);
static int run_rollback(int argc, char **argv);
static int run_stop(int argc, char **argv);
static int run_unlock(int argc, char **argv);

#define API_OPTS_HELP                                                                              \
	"    --app APP            the app (default: app of ./cairn.yml)\n" API_CONN_HELP
#define API_CONN_HELP                                                                              \
	"    --addr HOST:PORT     controller on TCP (else CAIRN_ADDR, else STATE/cairn.sock)\n"    \
	"    --token-file FILE    bearer token for --addr (else CAIRN_TOKEN_FILE)\n"               \
	"    --state DIR          state directory (where cairn.sock is)\n"                         \
	"    --json               print the job (or the answer) as JSON\n"

const struct cli_command cli_cmd_deploy = {
	.name = "deploy",
	.run = run_deploy,
	.summary = "start a deploy job (--wait: follow it to the end)",
	.help = "NAME\n"
		"    cairn deploy - ask the controller to deploy a release\n\n"
		"SYNOPSIS\n"
		"    cairn deploy [REF] [--wait] [--reason TEXT] [--force] [--idempotency-key KEY]\n"
		"                 [--app APP] [--addr HOST:PORT --token-file FILE] [--json]\n"
		"    cairn deploy --follow N [--json]\n\n"
		"DESCRIPTION\n"
		"    Records a deploy job of release REF (default: the app's newest release) and\n"
		"    prints it; the controller runs it host by host (ensure objects, activate,\n"
		"    start, health, accept, switch, bake, clean up) and rolls back on failure.\n"
		"    The request carries an Idempotency-Key (random, or --idempotency-key): sent\n"
		"    twice, it still makes one job. Deploying the release that is already current\n"
		"    and good does nothing unless --force. Only one deploy of an app runs at a\n"
		"    time; more wait in its queue (at most 8).\n"
		"    --wait follows the job per host; Ctrl-C stops following, never the job: it\n"
		"    says so and how to follow it again. --follow N re-attaches to job N (a deploy\n"
		"    or rollback started elsewhere, or one you stopped following) and follows it\n"
		"    to the end like --wait; 'cairn job N' shows it in detail afterwards.\n\n"
		"OPTIONS\n"
		"    --wait               follow the job's progress until it ends\n"
		"    --follow N           follow the running (or finished) job N instead\n"
		"    --reason TEXT        why (kept in the history)\n"
		"    --force              deploy even if REF is current and good\n"
		"    --idempotency-key K  use K instead of a random key (safe retries from scripts)\n"
		API_OPTS_HELP "\n"
		"EXIT STATUS\n"
		"    0 recorded (with --wait / --follow: succeeded), 1 the job failed, rolled back\n"
		"    or was cancelled, or the controller refused it, 2 usage, unknown REF or no\n"
		"    job N, 130 interrupted (the job goes on).\n\n"
		"EXAMPLES\n"
		"    cairn deploy v2 --wait --reason 'fix #42'\n"
		"    cairn deploy --json | jq .id\n"
		"    cairn deploy --follow 12\n",
};

const struct cli_command cli_cmd_rollback = {
	.name = "rollback",
	.run = run_rollback,
	.summary = "go back to the last good release (or --to REF)",
	.help = "NAME\n"
		"    cairn rollback - deploy the previous good release again\n\n"
		"SYNOPSIS\n"
		"    cairn rollback [--to REF] [--wait] [--reason TEXT] [--app APP] [--json]\n\n"
		"DESCRIPTION\n"
		"    Records a rollback job: the newest release that deployed successfully and is\n"
		"    not the current one (or REF) is activated again from the store. Nothing is\n"
		"    rebuilt. It runs the same steps as a deploy.\n\n"
		"OPTIONS\n"
		"    --to REF             the release to go back to\n"
		"    --wait               follow it until it ends\n"
		"    --reason TEXT        why\n" API_OPTS_HELP "\n"
		"EXIT STATUS\n"
		"    0 recorded (with --wait: succeeded), 1 failed or refused, 2 usage.\n\n"
		"EXAMPLES\n"
		"    cairn rollback --wait\n"
		"    cairn rollback --to v1\n",
};

const struct cli_command cli_cmd_stop = {
	.name = "stop",
	.run = run_stop,
	.summary = "emergency stop: cancel jobs, kill the app's instances",
	.help = "NAME\n"
		"    cairn stop - the kill switch\n\n"
		"SYNOPSIS\n"
		"    cairn stop --emergency APP [--reason TEXT] [--json]\n\n"
		"DESCRIPTION\n"
		"    Cancels the app's queued deploys and its running deploy (whatever step it is in:\n"
		"    it does not roll back), and has the agent of every host the app's releases name\n"
		"    kill all of the app's instances at once (SIGKILL), 'starting' ones included; its\n"
		"    proxy answers 503. A step in flight when the stop came (a start, a probe) is\n"
		"    waited for (up to 10 s) and whatever it started is killed too: when the command\n"
		"    returns, no instance of the app runs. The stop is recorded in 'cairn history'\n"
		"    (kind stop: who, when, --reason) and 'cairn status' says STOPPED.\n"
		"    The app serves nothing afterwards; deploy a release to bring it back — the\n"
		"    current one too: after a stop, deploying it is not a no-op.\n\n"
		"OPTIONS\n"
		"    APP, --app APP       required: there is no default from ./cairn.yml (a kill\n"
		"                         switch names what it stops)\n"
		"    --emergency          required: says you mean it\n"
		"    --reason TEXT        why (kept in the history)\n" API_CONN_HELP "\n"
		"EXIT STATUS\n"
		"    0 stopped everywhere, 1 some host could not be reached, 2 usage.\n\n"
		"EXAMPLES\n"
		"    cairn stop --emergency urlshort --reason 'leaking data'\n",
};

const struct cli_command cli_cmd_unlock = {
	.name = "unlock",
	.run = run_unlock,
	.summary = "break an app's deploy lease (rarely needed)",
	.help = "NAME\n"
		"    cairn unlock - break the lease that lets one deploy of an app run\n\n"
		"SYNOPSIS\n"
		"    cairn unlock APP [--json]\n\n"
		"DESCRIPTION\n"
		"    A running deploy holds its app's lease and renews it every 3 s; a lease not\n"
		"    renewed for 15 s expires by itself, and a restarted controller takes over its\n"
		"    predecessor's leases at once. Use unlock only when a lease is held by a\n"
		"    controller you know is gone but whose lease has not expired.\n"
		"    What it risks: if the holder still runs, it stops at its next step boundary,\n"
		"    but a step it is inside may still finish while another runner resumes the\n"
		"    job — two runners may act on the same host for that one step.\n\n"
		"OPTIONS\n" API_OPTS_HELP "\n"
		"EXIT STATUS\n"
		"    0 broken (or there was none), 1 the controller refused, 2 usage.\n\n"
		"EXAMPLES\n"
		"    cairn unlock urlshort\n",
};

static void random_key(char out[40])
{
	unsigned char r[16];
	RAND_bytes(r, sizeof(r));
	r[6] = (r[6] & 0x0f) | 0x40;
	r[8] = (r[8] & 0x3f) | 0x80;
	snprintf(out, 40, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0],
		 r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13],
		 r[14], r[15]);
}

/* Ctrl-C while following: the job is the controller's and goes on; say so and how to get
 * back to it. The message is made before the handler is armed (write(2) only in it). */
static char interrupt_msg[256];

static void on_interrupt(int sig)
{
	(void)sig;
	ssize_t w = write(STDERR_FILENO, interrupt_msg, strlen(interrupt_msg));
	(void)w;
	_exit(130);
}

static void arm_interrupt(int64_t job)
{
	struct sigaction sa;
	snprintf(interrupt_msg, sizeof(interrupt_msg),
		 "\ncairn: stopped following; job %lld goes on. Follow it again with 'cairn deploy "
		 "--follow %lld', see it with 'cairn job %lld'\n",
		 (long long)job, (long long)job, (long long)job);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_interrupt;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

static void print_job(const struct cli_ctx *ctx, json_t *job, long status)
{
	if (ctx->json) {
		json_dumpf(job, stdout, JSON_COMPACT);
		fputc('\n', stdout);
		return;
	}
	const char *rel = json_string_value(json_object_get(job, "release"));
	const char *note = json_string_value(json_object_get(job, "note"));
	printf("job %lld: %s %s of %s to %.19s%s\n", (long long)json_integer_value(json_object_get(job, "id")),
	       json_string_value(json_object_get(job, "state")),
	       json_string_value(json_object_get(job, "kind")),
	       json_string_value(json_object_get(job, "app")), rel ? rel : "?",
	       status == 200 ? " (existing job)" : "");
	if (note)
		printf("  %s\n", note);
}

static int newest_release(struct cli_api *a, const char *app, char **out, struct err *e)
{
	char path[128];
	json_t *ans;
	long st;
	snprintf(path, sizeof(path), "/v1/apps/%s", app);
	int r = cli_api_call(a, "GET", path, NULL, NULL, &st, &ans, e);
	if (r < 0)
		return r;
	json_t *rels = json_object_get(ans, "releases");
	size_t n = json_array_size(rels);
	if (!n) {
		json_decref(ans);
		return err_set(e, CAIRN_ENOTFOUND, "%s has no release; 'cairn build' makes one", app);
	}
	*out = xstrdup(json_string_value(json_object_get(json_array_get(rels, n - 1), "id")));
	json_decref(ans);
	return 0;
}

/* deploy --follow N: re-attach to job N and follow it to the end, as --wait does */
static int follow_existing(const struct cli_command *cmd, const struct cli_ctx *ctx,
			   const struct cli_api_opts *ao, const char *arg, bool extra)
{
	struct cli_api a;
	struct err e;
	json_t *job = NULL;
	char path[64], state[32] = "", *end;
	long status = 0;
	long long id = strtoll(arg, &end, 10);
	int r;

	if (extra)
		return cli_usage(cmd, "--follow N takes no REF, --wait, --force, --reason or key");
	if (*end || id <= 0)
		return cli_usage(cmd, "--follow takes a job number ('cairn history' lists them)");
	if (cli_api_open(ctx, ao, &a, &e) < 0)
		return cli_fail(ctx, &e);
	snprintf(path, sizeof(path), "/v1/jobs/%lld", id);
	if ((r = cli_api_call(&a, "GET", path, NULL, NULL, &status, &job, &e)) < 0) {
		if (status == 404)
			err_prefix(&e, "no job %lld to follow ('cairn history' lists them)", id);
		goto out;
	}
	if (!ctx->json)
		print_job(ctx, job, 0);
	arm_interrupt(id);
	if ((r = cli_follow_job(&a, ctx, id, CLI_WAIT_MS, state, &e)) < 0)
		goto out;
	json_decref(job);
	job = NULL;
	if ((r = cli_api_call(&a, "GET", path, NULL, NULL, &status, &job, &e)) < 0)
		goto out;
	if (ctx->json)
		print_job(ctx, job, 0);
	r = strcmp(state, "succeeded") ? 1 : 0;
out:
	json_decref(job);
	cli_api_done(&a);
	return r < 0 ? cli_fail(ctx, &e) : r;
}

/* deploy and rollback: POST, print, and with --wait follow to the end */
static int submit(const struct cli_command *cmd, int argc, char **argv, bool rollback)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTS, CLI_API_LONGOPTS,
		{ "wait", no_argument, NULL, 'w' },
		{ "reason", required_argument, NULL, 'r' },
		{ "force", no_argument, NULL, 'f' },
		{ "to", required_argument, NULL, 't' },
		{ "idempotency-key", required_argument, NULL, 'k' },
		{ "follow", required_argument, NULL, 'F' },
		{ 0 },
	};
	struct cli_ctx ctx = { .cmd = cmd->name };
	struct cli_api_opts ao = { 0 };
	struct cli_api a;
	const char *app_flag = NULL, *reason = "", *to = NULL, *key = NULL, *follow = NULL;
	bool wait = false, force = false;
	char *app = NULL, *ref = NULL, keybuf[40], path[128];
	struct err e;
	json_t *job = NULL;
	long status = 0;
	int c, r;

	while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT, opts, NULL)) != -1) {
		if (cli_api_opt(&ao, &app_flag, c, optarg))
			continue;
		switch (c) {
		case 'w':
			wait = true;
			break;
		case 'r':
			reason = optarg;
			break;
		case 'f':
			force = true;
			break;
		case 't':
			to = optarg;
			break;
		case 'k':
			key = optarg;
			break;
		case 'F':
			if (rollback)
				return cli_usage(cmd, "--follow is 'cairn deploy --follow N'");
			follow = optarg;
			break;
		default:
			if ((r = cli_common_opt(&ctx, cmd, c, optarg)) >= 100)
				return r - 100;
			if (r == 0)
				return cli_usage(cmd, "unexpected option");
		}
	}
	if ((rollback && (force || optind < argc)) || (!rollback && to) || argc - optind > 1)
		return cli_usage(cmd, "unexpected argument");
	if (follow)
		return follow_existing(cmd, &ctx, &ao, follow, optind < argc || wait || force || key ||
								       *reason);
	if (cli_app_name(&ctx, app_flag, &app, &e) < 0)
		return cli_fail(&ctx, &e);
	if ((r = cli_api_open(&ctx, &ao, &a, &e)) < 0) {
		free(app);
		return cli_fail(&ctx, &e);
	}
	if (!rollback && optind < argc)
		ref = xstrdup(argv[optind]);
	else if (!rollback && newest_release(&a, app, &ref, &e) < 0)
		goto fail;
	if (!key) {
		random_key(keybuf);
		key = keybuf;
	}
	json_t *body = rollback ? json_pack("{s:s}", "reason", reason)
				: json_pack("{s:s,s:s,s:b}", "release", ref, "reason", reason, "force", force);
	if (rollback && to)
		json_object_set_new(body, "to", json_string(to));
	snprintf(path, sizeof(path), "/v1/apps/%s/%s", app, rollback ? "rollback" : "deploys");
	/* a 409 in_progress means our own earlier attempt is still being recorded: ask again */
	for (int tries = 0;; tries++) {
		r = cli_api_call(&a, "POST", path, json_incref(body), key, &status, &job, &e);
		if (!(r < 0 && status == 409 && strstr(e.msg, "in_progress") && tries < 50))
			break;
		struct timespec ts = { 0, 100 * 1000000L };
		nanosleep(&ts, NULL);
	}
	json_decref(body);
	if (r < 0)
		goto fail;
	int64_t id = json_integer_value(json_object_get(job, "id"));
	if (!wait || !ctx.json)
		print_job(&ctx, job, status);
	if (wait) {
		char state[32] = "";
		arm_interrupt(id);
		if (cli_follow_job(&a, &ctx, id, CLI_WAIT_MS, state, &e) < 0)
			goto fail;
		json_decref(job);
		job = NULL;
		snprintf(path, sizeof(path), "/v1/jobs/%lld", (long long)id);
		if (cli_api_call(&a, "GET", path, NULL, NULL, &status, &job, &e) < 0)
			goto fail;
		if (ctx.json)
			print_job(&ctx, job, 0);
		r = strcmp(state, "succeeded") ? 1 : 0;
	} else {
		r = 0;
	}
	json_decref(job);
	cli_api_done(&a);
	free(app);
	free(ref);
	return r;
fail:
	json_decref(job);
	cli_api_done(&a);
	free(app);
	free(ref);
	return cli_fail(&ctx, &e);
}

static int run_deploy(int argc, char **argv)
{
	return submit(&cli_cmd_deploy, argc, argv, false);
}

static int run_rollback(int argc, char **argv)
{
	return submit(&cli_cmd_rollback, argc, argv, true);
}

/* who asks for a stop: user@host, as this process knows it */
static json_t *stop_body(const char *reason)
{
	char host[64] = "", by[160];
	struct passwd *pw = getpwuid(getuid());
	gethostname(host, sizeof(host) - 1);
	if (pw && pw->pw_name)
		snprintf(by, sizeof(by), "%.63s@%.63s", pw->pw_name, host);
	else
		snprintf(by, sizeof(by), "uid %d@%.63s", (int)getuid(), host);
	by[95] = '\0'; /* STORE_OWNER_MAX */
	return json_pack("{s:s,s:s}", "reason", reason ? reason : "", "by", by);
}

/* stop and unlock: one request about APP */
static int app_request(const struct cli_command *cmd, int argc, char **argv, bool stop)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTS, CLI_API_LONGOPTS,
		{ "emergency", no_argument, NULL, 'E' },
		{ "reason", required_argument, NULL, 'r' },
		{ 0 },
	};
	struct cli_ctx ctx = { .cmd = cmd->name };
	struct cli_api_opts ao = { 0 };
	struct cli_api a;
	const char *app = NULL, *reason = NULL;
	bool emergency = false;
	char path[128];
	struct err e;
	json_t *ans = NULL;
	long status;
	int c, r;

	while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT, opts, NULL)) != -1) {
		if (cli_api_opt(&ao, &app, c, optarg))
			continue;
		if (c == 'E') {
			emergency = true;
			continue;
		}
		if (c == 'r' && stop) {
			reason = optarg;
			continue;
		}
		if ((r = cli_common_opt(&ctx, cmd, c, optarg)) >= 100)
			return r - 100;
		if (r == 0)
			return cli_usage(cmd, "unexpected option");
	}
	if (optind < argc)
		app = argv[optind++];
	if (!app || optind < argc)
		return cli_usage(cmd, "name exactly one APP");
	if (stop && !emergency)
		return cli_usage(cmd, "stop kills every instance of %s: say --emergency", app);
	if ((r = cli_api_open(&ctx, &ao, &a, &e)) < 0)
		return cli_fail(&ctx, &e);
	snprintf(path, sizeof(path), "/v1/apps/%s/%s", app, stop ? "stop" : "lease");
	r = cli_api_call(&a, stop ? "POST" : "DELETE", path, stop ? stop_body(reason) : NULL, NULL,
			 &status, &ans, &e);
	cli_api_done(&a);
	if (r < 0)
		return cli_fail(&ctx, &e);
	if (ctx.json) {
		json_dumpf(ans, stdout, JSON_COMPACT);
		fputc('\n', stdout);
	} else if (stop) {
		size_t i;
		json_t *h;
		printf("%s: emergency stop; cancelled %zu queued job(s)\n", app,
		       json_array_size(json_object_get(ans, "cancelled_jobs")));
		json_array_foreach(json_object_get(ans, "hosts"), i, h)
		{
			bool ok = json_is_true(json_object_get(h, "ok"));
			printf("  %-16s %s %s\n", json_string_value(json_object_get(h, "host")),
			       ok ? "stopped" : "FAILED:", ok ? "" : json_string_value(json_object_get(h, "detail")));
			r |= !ok;
		}
		if (json_is_integer(json_object_get(ans, "job")))
			printf("  recorded as job %lld ('cairn history'); deploy a release to bring %s back\n",
			       (long long)json_integer_value(json_object_get(ans, "job")), app);
		if (json_is_string(json_object_get(ans, "warning")))
			printf("  warning: %s\n", json_string_value(json_object_get(ans, "warning")));
	} else if (json_is_true(json_object_get(ans, "broken"))) {
		json_t *h = json_object_get(ans, "holder");
		printf("%s: broke the lease held by %s (job %lld)\n  risk: %s\n", app,
		       json_string_value(json_object_get(h, "owner")),
		       (long long)json_integer_value(json_object_get(h, "job")),
		       json_string_value(json_object_get(ans, "risk")));
	} else {
		printf("%s: no lease was held; nothing to do\n", app);
	}
	json_decref(ans);
	return r ? 1 : 0;
}

static int run_stop(int argc, char **argv)
{
	return app_request(&cli_cmd_stop, argc, argv, true);
}

static int run_unlock(int argc, char **argv)
{
	return app_request(&cli_cmd_unlock, argc, argv, false);
}
