/* cli agent: `cairn agent` — runs the host agent (foreground or --daemon), `--stop-all`,
 * `status`, and the internal `log-writer`. Talks to a running agent only through the agent
 * client (src/agent/client.c). */
#include "cli/cli.h"

#include "agent/agent.h"
#include "store/store.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int run_agent(int argc, char **argv);

const struct cli_command cli_cmd_agent = {
    .name = "agent",
    .run = run_agent,
    .summary = "run the host agent: release dirs, supervised instances, logs",
    .help =
	"NAME\n"
	"    cairn agent - run the host agent: release dirs, supervised instances, logs\n\n"
	"SYNOPSIS\n"
	"    cairn agent [--state DIR] [--foreground | --daemon [--if-absent]]\n"
	"    cairn agent --stop-all [--state DIR] [--json]\n"
	"    cairn agent status [--state DIR] [--json]\n\n"
	"DESCRIPTION\n"
	"    The agent owns one host. It serves HTTP/JSON on the unix socket\n"
	"    <state>/agent.sock (mode 0600; API in docs/agent.md), materialises releases\n"
	"    read-only under <state>/releases/ after verifying every digest, and supervises\n"
	"    instances: restarts with backoff, 'failed' after a crash loop (5 exits within\n"
	"    30s), stop signal then SIGKILL of the whole process group. Each instance's\n"
	"    stdout and stderr go to <state>/logs/<app>/<instance>.log through a small\n"
	"    log-writer process (timestamped lines, rotated at 10 MiB, 3 files kept).\n\n"
	"    SIGTERM or SIGINT stops the agent but leaves every instance running: the next\n"
	"    agent re-adopts them from <state>/agent/instances.json (same pid and start\n"
	"    time). Only one agent runs per state directory; a second one exits 1.\n\n"
	"    --stop-all stops every instance (stop signal, stop timeout, SIGKILL), through\n"
	"    the running agent, or directly from the instance table when none runs.\n"
	"    'status' asks the running agent for itself and its instances.\n\n"
	"OPTIONS\n"
	"    --state DIR     state directory (default $CAIRN_STATE, $XDG_STATE_HOME/cairn,\n"
	"                    /var/lib/cairn for root)\n"
	"    --foreground    run in the foreground, log to stderr (the default)\n"
	"    --daemon        detach (setsid); log to <state>/logs/agent.log; returns once\n"
	"                    the socket answers. A small keeper process stays the agent's\n"
	"                    parent: when the agent dies of anything but SIGTERM/SIGINT it\n"
	"                    starts the next one at once, handing it the API socket and every\n"
	"                    proxy's listener, so clients wait instead of being refused\n"
	"    --if-absent     with --daemon: when an agent already answers on this state\n"
	"                    directory, say so and exit 0 (the controller starts remote\n"
	"                    agents this way: running it twice is harmless)\n"
	"    --stop-all      stop every instance and exit\n"
	"    --json          machine output (status, --stop-all)\n\n"
	"ENVIRONMENT\n"
	"    CAIRN_LOG=debug|info|warn|error   the agent's log level (default warn)\n\n"
	"EXIT STATUS\n"
	"    0 ok (the agent stopped cleanly), 1 another agent already runs / no agent answers\n"
	"    (status) / stopping failed, 2 usage error.\n\n"
	"EXAMPLES\n"
	"    cairn agent --daemon\n"
	"    cairn agent --daemon --if-absent --state /var/lib/cairn\n"
	"    cairn agent status --json\n"
	"    cairn agent --stop-all\n",
};

static char *socket_path(const struct cli_ctx *ctx)
{
	char *dir = store_state_dir(ctx->state_flag);
	char *p = fs_join(dir, AGENT_SOCKET_NAME);
	free(dir);
	return p;
}

static int call(const struct cli_ctx *ctx, const char *method, const char *path, json_t *body,
		int64_t timeout_ms, json_t **out, struct err *e)
{
	struct agent_client *c = NULL;
	char *sock = socket_path(ctx);
	int r = agent_client_new_unix(sock, timeout_ms, &c, e);
	if (r == 0)
		r = agent_client_call(c, method, path, body, NULL, out, e);
	agent_client_free(c);
	free(sock);
	return r;
}

#define KEEPER_WAIT_MS 10000 /* how long a restart by the keeper may take */

/* --if-absent: does an agent answer on this state directory already (or in a moment: its
 * keeper is restarting it)? Says so on stderr. */
static bool already_running(const struct cli_ctx *ctx)
{
	json_t *ag = NULL;
	struct err e = {0};
	char *dir = store_state_dir(ctx->state_flag);
	int64_t until = time_mono_ns() / 1000000 + KEEPER_WAIT_MS;
	bool yes;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	/* a keeper restarting its agent: the agent is there in a moment */
	while (!(yes = call(ctx, "GET", "/v1/agent", NULL, 5000, &ag, &e) == 0) &&
	       agent_keeper_present(dir) && time_mono_ns() / 1000000 < until) {
		struct timespec ts = {0, 20 * 1000000L};
		err_clear(&e);
		nanosleep(&ts, NULL);
	}
	free(dir);
	if (yes)
		fprintf(stderr, "cairn agent: an agent already serves %s (pid %lld); nothing to do\n",
			json_string_value(json_object_get(ag, "state_dir")) ?: "?",
			(long long)json_integer_value(json_object_get(ag, "pid")));
	json_decref(ag);
	curl_global_cleanup();
	return yes;
}

static int cmd_status(const struct cli_ctx *ctx)
{
	json_t *ag = NULL, *list = NULL;
	struct err e = {0};
	int r;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	r = call(ctx, "GET", "/v1/agent", NULL, 5000, &ag, &e);
	if (r == 0)
		r = call(ctx, "GET", "/v1/instances", NULL, 5000, &list, &e);
	if (r < 0) {
		if (e.code == ECONNREFUSED || e.code == EIO)
			e.code = CAIRN_ECHECK;
		curl_global_cleanup();
		json_decref(ag);
		return cli_fail(ctx, &e);
	}
	if (ctx->json) {
		json_object_set(ag, "instances", json_object_get(list, "instances"));
		json_dumpf(ag, stdout, JSON_COMPACT);
		fputc('\n', stdout);
	} else {
		size_t i;
		json_t *in;
		printf("agent pid %lld, up since %s, state %s\n",
		       (long long)json_integer_value(json_object_get(ag, "pid")),
		       json_string_value(json_object_get(ag, "started_at")),
		       json_string_value(json_object_get(ag, "state_dir")));
		printf("%-12s %-16s %-12s %-9s %7s %6s %8s\n", "INSTANCE", "APP", "RELEASE",
		       "STATE", "PID", "PORT", "RESTARTS");
		json_array_foreach(json_object_get(list, "instances"), i, in)
		{
			const char *rel = json_string_value(json_object_get(in, "release"));
			printf("%-12s %-16s %-12.12s %-9s %7lld %6lld %8lld\n",
			       json_string_value(json_object_get(in, "id")),
			       json_string_value(json_object_get(in, "app")),
			       rel && strlen(rel) > 7 ? rel + 7 : "",
			       json_string_value(json_object_get(in, "state")),
			       (long long)json_integer_value(json_object_get(in, "pid")),
			       (long long)json_integer_value(json_object_get(in, "port")),
			       (long long)json_integer_value(json_object_get(in, "restarts")));
		}
	}
	json_decref(ag);
	json_decref(list);
	curl_global_cleanup();
	return 0;
}

static int cmd_stop_all(const struct cli_ctx *ctx)
{
	json_t *ans = NULL;
	struct err e = {0};
	int stopped = 0, r;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	r = call(ctx, "POST", "/v1/agent/stop-all", NULL, 24LL * 3600 * 1000, &ans, &e);
	curl_global_cleanup();
	if (r == 0) {
		stopped = (int)json_integer_value(json_object_get(ans, "stopped"));
		json_decref(ans);
	} else if (e.code == ECONNREFUSED) {
		char *dir = store_state_dir(ctx->state_flag);
		err_clear(&e);
		r = agent_stop_all_offline(dir, &stopped, &e);
		free(dir);
	}
	if (r < 0)
		return cli_fail(ctx, &e);
	if (ctx->json)
		printf("{\"stopped\":%d}\n", stopped);
	else
		printf("stopped %d instance%s\n", stopped, stopped == 1 ? "" : "s");
	return 0;
}

static int daemonize(const char *state_dir, int *out_ready_fd, struct err *e)
{
	char *logs = fs_join(state_dir, "logs"), *logf = fs_join(logs, "agent.log");
	int p[2], r = fs_mkdir_p(logs, 0700, e), fd;
	pid_t pid;

	if (r < 0)
		goto done;
	fd = open(logf, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0 || pipe2(p, O_CLOEXEC) < 0) {
		r = err_set(e, errno, "cannot open %s: %s", logf, strerror(errno));
		goto done;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		r = err_set(e, errno, "fork: %s", strerror(errno));
		goto done;
	}
	if (pid > 0) { /* the parent returns once the agent listens, or says why not */
		char c;
		close(p[1]);
		ssize_t n = read(p[0], &c, 1);
		if (n != 1)
			r = err_set(e, CAIRN_ECHECK, "the agent did not start; see %s", logf);
		else
			r = 1;
		goto done;
	}
	close(p[0]);
	setsid();
	int nul = open("/dev/null", O_RDONLY);
	dup2(nul, 0);
	dup2(fd, 1);
	dup2(fd, 2);
	close(nul);
	close(fd);
	*out_ready_fd = p[1];
	r = 0;
done:
	free(logs);
	free(logf);
	return r;
}

static void announce(void *ctx, const char *sock, size_t n)
{
	UNUSED(ctx);
	fprintf(stderr,
		"cairn agent: listening on %s (pid %d), %zu instance%s in its table; SIGTERM or "
		"Ctrl-C stops the agent and leaves instances running\n",
		sock, (int)getpid(), n, n == 1 ? "" : "s");
}

static int run_agent(int argc, char **argv)
{
	static const struct option opts[] = {CLI_COMMON_OPTS,
					     {"foreground", no_argument, NULL, 'f'},
					     {"daemon", no_argument, NULL, 'd'},
					     {"stop-all", no_argument, NULL, 'A'},
					     {"if-absent", no_argument, NULL, 'I'},
					     {0}};
	struct cli_ctx ctx = {.cmd = "agent"};
	bool daemon = false, stop_all = false, status = false, if_absent = false;
	struct agent_opts o = {.ready_fd = -1};
	struct err e = {0};
	int c, r;

	if (argc >= 2 && !strcmp(argv[1], "log-writer"))
		return agent_log_writer_main(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "status")) {
		status = true;
		argc--;
		argv++;
	}
	while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT, opts, NULL)) != -1) {
		int k = cli_common_opt(&ctx, &cli_cmd_agent, c, optarg);
		if (k >= 100)
			return k - 100;
		if (k == 1)
			continue;
		if (c == 'f')
			daemon = false;
		else if (c == 'd')
			daemon = true;
		else if (c == 'A')
			stop_all = true;
		else if (c == 'I')
			if_absent = true;
	}
	if (if_absent && !daemon)
		return cli_usage(&cli_cmd_agent, "--if-absent goes with --daemon");
	if (optind < argc)
		return cli_usage(&cli_cmd_agent, "unexpected argument '%s'", argv[optind]);
	if (status)
		return cmd_status(&ctx);
	if (stop_all)
		return cmd_stop_all(&ctx);
	char *dir = store_state_dir(ctx.state_flag);
	if (daemon && if_absent && already_running(&ctx)) {
		free(dir);
		return 0;
	}
	if (daemon) {
		r = daemonize(dir, &o.ready_fd, &e);
		/* another agent may have won the race for the state directory: that is fine too */
		if (r < 0 && if_absent && already_running(&ctx))
			r = 1;
		if (r != 0) {
			free(dir);
			return r > 0 ? 0 : cli_fail(&ctx, &e);
		}
	}
	o.state_dir = dir;
	o.on_ready = announce;
	/* --daemon: the keeper forks the agent, and forks the next one if it dies */
	r = daemon ? agent_keeper_run(&o, &e) : agent_run(&o, &e);
	free(dir);
	if (r < 0)
		return cli_fail(&ctx, &e);
	return 0;
}
