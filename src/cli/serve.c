/* cli serve: `cairn serve` — runs the controller daemon (src/controller) in the foreground. */
#include "cli/cli.h"

#include "controller/controller.h"
#include "store/store.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int run_serve(int argc, char **argv);

const struct cli_command cli_cmd_serve = {
	.name = "serve",
	.run = run_serve,
	.summary = "run the controller: deploy jobs and the HTTP API",
	.help = "NAME\n"
		"    cairn serve - run the controller\n\n"
		"SYNOPSIS\n"
		"    cairn serve [--state DIR] [--listen HOST:PORT --token-file FILE] [--no-agent]\n"
		"                [--queue-max N] [-c FILE]\n\n"
		"DESCRIPTION\n"
		"    Runs the controller in the foreground until SIGTERM or SIGINT. It serves the\n"
		"    HTTP API (docs/controller.md) on DIR/cairn.sock (mode 0600) and, with --listen,\n"
		"    on TCP as well, where every request needs 'Authorization: Bearer TOKEN' with\n"
		"    the token in FILE (created with a random token, mode 0600, when missing).\n"
		"    Deploys are durable jobs in DIR/state.db (SQLite, WAL): a restart, even after\n"
		"    kill -9, resumes or rolls back every running job from what was recorded and\n"
		"    never runs a recorded step twice. Starts the local agent ('cairn agent\n"
		"    --daemon') when none answers on DIR/agent.sock. One controller per state\n"
		"    directory (DIR/controller.lock).\n\n"
		"    Hosts with ssh: in a release's cairn.yml are reached through one OpenSSH\n"
		"    connection per host (BatchMode, multiplexed) that forwards the agent's\n"
		"    socket to DIR/hosts/NAME.sock; the agent there is started with 'cairn agent\n"
		"    --daemon --if-absent'. The connections end with the controller\n"
		"    (docs/hosts.md).\n\n"
		"    With -c FILE whose faults: section declares proxies or faults.listen, it also\n"
		"    runs those fault-injection proxies with their toxics, and the\n"
		"    Toxiproxy-compatible API on faults.listen (docs/faults.md); it prints\n"
		"    'cairn serve: fault API on ADDR' once that answers.\n\n"
		"OPTIONS\n"
		"    --state DIR          state directory (else CAIRN_STATE, XDG_STATE_HOME/cairn)\n"
		"    --listen HOST:PORT   also serve on TCP (bearer token required)\n"
		"    --token-file FILE    the token for TCP clients\n"
		"    --no-agent           do not start a local agent\n"
		"    --queue-max N        deploys that may wait per app (default 8); more get 409\n"
		"    -c, --config FILE    a cairn.yml (or a file of only faults:) whose faults:\n"
		"                         proxies and API to run\n\n"
		"ENVIRONMENT\n"
		"    CAIRN_SSH_CONFIG=FILE   every ssh call uses 'ssh -F FILE' (keys, known_hosts)\n\n"
		"EXIT STATUS\n"
		"    0 after a clean shutdown, 1 when it could not start, 2 usage or an error in\n"
		"    -c FILE.\n\n"
		"EXAMPLES\n"
		"    cairn serve &\n"
		"    cairn serve --listen 127.0.0.1:7070 --token-file /etc/cairn/token\n"
		"    cairn serve -c cairn.yml   # plus its faults: proxies and fault API\n",
};

static int run_serve(int argc, char **argv)
{
	static const struct option opts[] = {
		CLI_COMMON_OPTS,
		{ "listen", required_argument, NULL, 'l' },
		{ "token-file", required_argument, NULL, 't' },
		{ "no-agent", no_argument, NULL, 'n' },
		{ "queue-max", required_argument, NULL, 'q' },
		{ 0 },
	};
	struct cli_ctx ctx = { .cmd = "serve" };
	struct controller_opts o = { 0 };
	struct err e;
	char self[4096];
	int c, r;

	while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT, opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			o.listen = optarg;
			break;
		case 't':
			o.token_file = optarg;
			break;
		case 'n':
			o.no_agent = true;
			break;
		case 'q':
			o.queue_max = atoi(optarg);
			if (o.queue_max <= 0 || o.queue_max > 10000)
				return cli_usage(&cli_cmd_serve, "--queue-max takes 1 to 10000");
			break;
		default:
			if ((r = cli_common_opt(&ctx, &cli_cmd_serve, c, optarg)) >= 100)
				return r - 100;
			if (r == 0)
				return cli_usage(&cli_cmd_serve, "unexpected option");
		}
	}
	if (optind < argc)
		return cli_usage(&cli_cmd_serve, "unexpected argument '%s'", argv[optind]);
	if (o.listen && !o.token_file)
		return cli_usage(&cli_cmd_serve, "--listen needs --token-file: TCP clients must "
						 "present a token");
	char *dir = store_state_dir(ctx.state_flag);
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	self[n > 0 ? n : 0] = '\0';
	o.state_dir = dir;
	o.self_exe = n > 0 ? self : "cairn";
	o.faults_config = ctx.config_path;
	r = controller_serve(&o, &e);
	free(dir);
	if (r < 0)
		return cli_fail(&ctx, &e);
	return 0;
}
