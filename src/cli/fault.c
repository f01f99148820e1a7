/* cli fault: `cairn fault` — `serve` runs the proxy engine with the Toxiproxy-compatible API
 * until SIGINT/SIGTERM; the other verbs are clients of that API (fault-client.c). */
#include "cli/cli-fault.h"

#include "config/config.h"
#include "proxy/fault-config.h"
#include "proxy/proxy.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static const char help[] =
	"NAME\n"
	"    cairn fault - break the network on purpose: proxies with toxics, Toxiproxy-compatible\n"
	"\n"
	"SYNOPSIS\n"
	"    cairn fault serve [--listen ADDR] [--threads N] [--seed N] [--config FILE]\n"
	"                      [--proxy-metrics] [--allow-listen ADDR[/BITS]]...\n"
	"    cairn fault list [--addr ADDR] [--json]\n"
	"    cairn fault inspect PROXY\n"
	"    cairn fault create PROXY -l LISTEN -u UPSTREAM [--disabled]\n"
	"    cairn fault delete PROXY\n"
	"    cairn fault toggle PROXY\n"
	"    cairn fault toxic add PROXY -t TYPE [-n NAME] [--tox P] [-a KEY=VALUE]... [-u|-d]\n"
	"    cairn fault toxic update PROXY -n NAME [--tox P] [-a KEY=VALUE]...\n"
	"    cairn fault toxic remove PROXY -n NAME\n"
	"    cairn fault reset\n"
	"\n"
	"DESCRIPTION\n"
	"    'serve' runs TCP proxies and the Toxiproxy HTTP API (default 127.0.0.1:8474), so\n"
	"    existing Toxiproxy clients and test suites work unchanged. It binds to loopback\n"
	"    unless told otherwise and refuses browser user agents. Proxies listen on\n"
	"    loopback only (127.0.0.0/8, ::1; an empty host means 127.0.0.1), never on a port\n"
	"    below 1024, unless --allow-listen names more addresses; a proxy whose upstream\n"
	"    is the API itself, or leads back to the proxy, is refused. It prints one line,\n"
	"    'cairn fault: API listening on ADDR', once it accepts requests, and runs until\n"
	"    SIGINT or SIGTERM.\n"
	"\n"
	"    The other verbs are clients of that API and mirror toxiproxy-cli. Toxic types:\n"
	"    latency (latency, jitter ms), bandwidth (rate KB/s), slow_close (delay ms),\n"
	"    timeout (timeout ms), reset_peer (timeout ms), slicer (average_size,\n"
	"    size_variation bytes, delay us), limit_data (bytes), noop. 'down' is a disabled\n"
	"    proxy: 'cairn fault toggle'. Attributes are whole numbers from 0 to 2147483647\n"
	"    (limit_data bytes: to 2^53); the server refuses others and names it does not\n"
	"    know. Toxicity is the probability that a connection gets the toxic. See\n"
	"    docs/faults.md.\n"
	"\n"
	"OPTIONS\n"
	"    --addr ADDR        the API of a running 'cairn fault serve' (default\n"
	"                       127.0.0.1:8474, or $TOXIPROXY_URL); http:// is optional\n"
	"    --listen ADDR      serve: the API's address (default 127.0.0.1:8474)\n"
	"    --threads N        serve: proxy event-loop threads (default 1)\n"
	"    --seed N           serve: seed of the toxicity and jitter random numbers\n"
	"    -c, --config FILE  serve: proxies to create at start: a cairn.yml with a faults:\n"
	"                       section (a file of only faults: will do; its faults.listen is\n"
	"                       the API's address unless --listen is given), or a JSON array in\n"
	"                       /populate's format (toxiproxy-server -config)\n"
	"    --proxy-metrics    serve: GET /metrics answers bytes received and sent per proxy\n"
	"                       and direction (Prometheus text, Toxiproxy's metric names)\n"
	"    --allow-listen ADDR[/BITS]  serve: proxies may also listen on these addresses\n"
	"                       (repeatable; 10.0.0.5, 10.0.0.0/8, 0.0.0.0 = every IPv4\n"
	"                       interface, :: = every interface). Anyone who can reach such a\n"
	"                       proxy reaches its upstream; the API stays where --listen says\n"
	"    -l, --listen ADDR  create: the proxy's listen address (HOST:PORT, port 0 for any)\n"
	"    -u, --upstream ADDR  create: where connections go; toxic add: upstream stream\n"
	"    -d, --downstream   toxic add: the downstream stream (the default)\n"
	"    -t, --type TYPE    toxic add: the toxic type\n"
	"    -n, --toxicName NAME  the toxic's name (default TYPE_STREAM)\n"
	"    --tox, --toxicity P   probability 0..1 (default 1)\n"
	"    -a, --attribute KEY=VALUE  a toxic attribute; repeatable\n"
	"    --json             print the API's JSON instead of text\n"
	"    -h, --help         show this page\n"
	"\n"
	"EXIT STATUS\n"
	"    0   done\n"
	"    1   the API could not be reached, or failed (HTTP 5xx)\n"
	"    2   usage error, or the API refused the input (HTTP 4xx: unknown proxy or toxic,\n"
	"        a name that exists, a bad attribute)\n"
	"\n"
	"EXAMPLES\n"
	"    cairn fault serve --listen 127.0.0.1:8474 &\n"
	"    cairn fault serve -c cairn.yml &   # the proxies and toxics of its faults:\n"
	"    cairn fault create redis -l 127.0.0.1:26379 -u 127.0.0.1:6379\n"
	"    cairn fault toxic add redis -t latency -a latency=100 -a jitter=10\n"
	"    cairn fault toxic add redis -t reset_peer -u -a timeout=500 --tox 0.5\n"
	"    cairn fault toggle redis          # down: new clients are refused\n"
	"    cairn fault reset                 # everything up, every toxic gone\n";

static int run(int argc, char **argv);

const struct cli_command cli_cmd_fault = {
	.name = "fault",
	.run = run,
	.summary = "fault injection: proxies with toxics behind a Toxiproxy-compatible API",
	.help = help,
};

/* A JSON array is a populate file; anything else is read as cairn.yml. */
static bool is_json_config(const char *path)
{
	char head[256];
	FILE *fp = fopen(path, "r");
	size_t n = fp ? fread(head, 1, sizeof(head), fp) : 0;
	if (fp)
		fclose(fp);
	for (size_t i = 0; i < n; i++)
		if (!strchr(" \t\r\n", head[i]))
			return head[i] == '[';
	return false;
}

static int serve(const struct cli_ctx *ctx, const char *listen, int threads, uint64_t seed,
		 const char *config, bool proxy_metrics, const char *const *allow, size_t n_allow)
{
	struct config *yml = NULL;
	struct proxy_engine_opts o = { .threads = threads, .seed = seed };
	struct proxy_engine *eng = NULL;
	struct fault *f = NULL;
	struct fault_api *api = NULL;
	char addr[NET_ADDR_STRLEN];
	struct err e;
	sigset_t ss;
	int sig, rc = 0;
	struct rlimit rl;

	/* six descriptors per spliced connection: take what the hard limit allows */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	sigemptyset(&ss);
	sigaddset(&ss, SIGINT);
	sigaddset(&ss, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &ss, NULL); /* before any thread starts: they inherit it */
	if (config && !is_json_config(config)) {
		if (config_load_faults(config, &yml, &e) < 0)
			return cli_fail(ctx, &e);
		if (!listen)
			listen = yml->faults.listen;
	}
	if (!listen)
		listen = "127.0.0.1:8474";
	if (proxy_engine_new(&o, &eng, &e) < 0) {
		config_free(yml);
		return cli_fail(ctx, &e);
	}
	f = fault_new(eng);
	if (!f) {
		proxy_engine_free(eng);
		err_set(&e, ENOMEM, "out of memory");
		return cli_fail(ctx, &e);
	}
	fault_set_metrics(f, proxy_metrics);
	for (size_t i = 0; i < n_allow; i++)
		if (fault_allow_listen(f, allow[i], &e) < 0) {
			rc = cli_fail(ctx, &e);
			goto out;
		}
	if (yml && fault_apply_config(f, yml, &e) < 0) {
		rc = cli_fail(ctx, &e);
		goto out;
	}
	if (config && !yml && fault_load_config(f, config, &e) < 0) {
		rc = cli_fail(ctx, &e);
		goto out;
	}
	if (fault_api_start(f, listen, &api, addr, &e) < 0) {
		err_prefix(&e, "cannot serve the fault API (is another server on %s? pick another"
			       " with --listen)", listen);
		rc = cli_fail(ctx, &e);
		goto out;
	}
	if (ctx->json)
		printf("{\"listen\":\"%s\"}\n", addr);
	else
		printf("cairn fault: API listening on %s\n", addr);
	fflush(stdout);
	sigwait(&ss, &sig);
	fault_api_stop(api);
out:
	fault_free(f);
	proxy_engine_free(eng);
	config_free(yml);
	return rc;
}

static int run_serve(int argc, char **argv)
{
	static const struct option opts[] = { CLI_COMMON_OPTS,
					      { "listen", required_argument, NULL, 'l' },
					      { "threads", required_argument, NULL, 'T' },
					      { "seed", required_argument, NULL, 's' },
					      { "proxy-metrics", no_argument, NULL, 'M' },
					      { "allow-listen", required_argument, NULL, 'A' },
					      { NULL, 0, NULL, 0 } };
	struct cli_ctx ctx = { .cmd = cli_cmd_fault.name };
	const char *listen = NULL; /* --listen, else faults.listen of -c FILE, else 127.0.0.1:8474 */
	long threads = 1;
	unsigned long long seed = 0;
	bool proxy_metrics = false;
	const char *allow[64]; /* --allow-listen, borrowed from argv */
	size_t n_allow = 0;
	char *end;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "hc:l:", opts, NULL)) != -1) {
		int r = cli_common_opt(&ctx, &cli_cmd_fault, c, optarg);
		if (r >= 100)
			return r - 100;
		if (r == 1 && c != 'c')
			continue;
		switch (c) {
		case 'c': /* -c/--config: the populate file */
			break;
		case 'l':
			listen = optarg;
			break;
		case 'M':
			proxy_metrics = true;
			break;
		case 'A':
			if (n_allow == ARRAY_SIZE(allow))
				return cli_usage(&cli_cmd_fault, "--allow-listen: at most %zu entries",
						 ARRAY_SIZE(allow));
			allow[n_allow++] = optarg;
			break;
		case 'T':
			threads = strtol(optarg, &end, 10);
			if (*end || threads < 1 || threads > 64)
				return cli_usage(&cli_cmd_fault, "--threads wants 1..64, not '%s'", optarg);
			break;
		case 's':
			errno = 0;
			seed = strtoull(optarg, &end, 10);
			if (*end || errno)
				return cli_usage(&cli_cmd_fault, "--seed wants a number, not '%s'", optarg);
			break;
		default:
			return cli_usage(&cli_cmd_fault, "unknown option");
		}
	}
	if (optind < argc)
		return cli_usage(&cli_cmd_fault, "serve takes no argument ('%s')", argv[optind]);
	return serve(&ctx, listen, (int)threads, seed, ctx.config_path, proxy_metrics, allow,
		     n_allow);
}

static int run(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		cli_print_help(&cli_cmd_fault, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "serve"))
		return run_serve(argc - 1, argv + 1);
	struct cli_ctx ctx = { .cmd = cli_cmd_fault.name };
	const char *addr = getenv("TOXIPROXY_URL");
	if (!addr || !addr[0])
		addr = "127.0.0.1:8474";
	/* the client-wide options may sit anywhere; take them out before the verb parses */
	int n = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json")) {
			ctx.json = true;
		} else if (!strcmp(argv[i], "--addr") && i + 1 < argc) {
			addr = argv[++i];
		} else if (!strncmp(argv[i], "--addr=", 7)) {
			addr = argv[i] + 7;
		} else if (!strcmp(argv[i], "--addr")) {
			return cli_usage(&cli_cmd_fault, "--addr wants HOST:PORT");
		} else {
			argv[1 + n++] = argv[i];
		}
	}
	return cli__fault_client(&ctx, addr, n, argv + 1);
}
