/* cli proxy: `cairn proxy` — one reverse proxy in the foreground (HTTP/1.1 per-request routing,
 * or the TCP engine) until SIGINT/SIGTERM. SIGHUP re-reads --upstreams-file and switches to it;
 * SIGUSR1 prints the counters. Signals are taken with sigwait in the main thread only. */
#include "cli/cli.h"

#include "proxy/proxy.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static const char help[] =
	"NAME\n"
	"    cairn proxy - run a reverse proxy in front of an app's instances\n"
	"\n"
	"SYNOPSIS\n"
	"    cairn proxy --listen ADDR (--upstream [LABEL=]ADDR... | --upstreams-file FILE)\n"
	"                [--mode http|tcp] [--threads N] [--json] [limits and timeouts]\n"
	"\n"
	"DESCRIPTION\n"
	"    Runs the proxy cairn's agent puts in front of an app during rollouts, in the\n"
	"    foreground until SIGINT or SIGTERM. Its first line on stdout is the bound\n"
	"    address: 'listening on 127.0.0.1:PORT' (with --json: {\"listen\":\"...\"}).\n"
	"\n"
	"    --mode http (the default) routes each request: round robin over the upstreams,\n"
	"    keep-alive connections to them, X-Forwarded-For/-Proto/-Host added, and JSON\n"
	"    answers of its own: 400 bad request, 408 slow request head, 413 body too large,\n"
	"    431 head too large, 502 upstream refused or closed, 503 no upstream, 504\n"
	"    upstream too slow. --mode tcp forwards connections (bytes, spliced).\n"
	"\n"
	"    SIGHUP re-reads --upstreams-file (one upstream a line, [LABEL=]HOST:PORT, '#'\n"
	"    comments; an empty file means no upstream) and switches atomically: the next\n"
	"    request of every connection goes to the new set. Once switched it prints\n"
	"    'upstreams: N'. SIGUSR1 prints the counters of each label (release): requests,\n"
	"    status classes and latency percentiles since start and over the last minute.\n"
	"    See docs/proxy.md.\n"
	"\n"
	"OPTIONS\n"
	"    --listen ADDR          where clients connect (HOST:PORT, port 0 for any)\n"
	"    --upstream [LABEL=]ADDR  an upstream; repeatable. LABEL names its counters\n"
	"                           (default: the address)\n"
	"    --upstreams-file FILE  upstreams from FILE, re-read on SIGHUP\n"
	"    --mode http|tcp        per-request HTTP/1.1 proxy (default) or TCP forwarding\n"
	"    --threads N            event-loop threads, 1..64 (default 1)\n"
	"    --header-timeout DUR   the whole request head within (default 10s) → 408\n"
	"    --idle-timeout DUR     keep-alive client idle between requests (default 60s)\n"
	"    --connect-timeout DUR  one upstream connect (default 5s), then the next\n"
	"    --upstream-timeout DUR request sent → response head, and silence inside a\n"
	"                           response (default 60s) → 504\n"
	"    --drain-timeout DUR    requests in flight at shutdown may finish within (30s)\n"
	"    --max-header-bytes N   request head limit (default 65536) → 431\n"
	"    --max-body-bytes N     request body limit (default 67108864, -1 none) → 413\n"
	"    --json                 JSON lines on stdout\n"
	"    -h, --help             show this page\n"
	"\n"
	"EXIT STATUS\n"
	"    0   stopped by SIGINT or SIGTERM\n"
	"    1   the proxy could not run (address in use, out of resources)\n"
	"    2   usage error, or an unreadable --upstreams-file\n"
	"\n"
	"EXAMPLES\n"
	"    cairn proxy --listen 127.0.0.1:8080 --upstream v1=127.0.0.1:9001 \\\n"
	"                --upstream v1=127.0.0.1:9002\n"
	"    cairn proxy --listen :8080 --upstreams-file ups.txt --threads 2 &\n"
	"    echo 'v2=127.0.0.1:9003' > ups.txt; kill -HUP %1   # switch to v2\n"
	"    kill -USR1 %1                                      # print the counters\n";

static int run(int argc, char **argv);

const struct cli_command cli_cmd_proxy = {
	.name = "proxy",
	.run = run,
	.summary = "run a reverse proxy (HTTP per-request or TCP) in the foreground",
	.help = help,
};

#define UPS_MAX 256

struct ups {
	struct proxy_upstream v[UPS_MAX];
	char *own[UPS_MAX]; /* owned: the strings v[] points into */
	size_t n;
};

static void ups_clear(struct ups *u)
{
	for (size_t i = 0; i < u->n; i++)
		free(u->own[i]);
	u->n = 0;
}

static int ups_add(struct ups *u, const char *spec, struct err *e)
{
	if (u->n == UPS_MAX)
		return err_set(e, CAIRN_EINPUT, "more than %d upstreams", UPS_MAX);
	char *s = xstrdup(spec);
	char *eq = strchr(s, '=');
	u->own[u->n] = s;
	u->v[u->n].label = NULL;
	u->v[u->n].addr = s;
	if (eq) {
		*eq = '\0';
		u->v[u->n].label = s;
		u->v[u->n].addr = eq + 1;
	}
	char host[256], port[16];
	if (net_split_hostport(u->v[u->n].addr, host, sizeof host, port, sizeof port) < 0 || !*port) {
		free(s);
		return err_set(e, CAIRN_EINPUT, "upstream '%s' is not [LABEL=]HOST:PORT", spec);
	}
	u->n++;
	return 0;
}

static int ups_read_file(struct ups *u, const char *path, struct err *e)
{
	struct buf b;
	int r;
	buf_init(&b, 1 << 20);
	if ((r = fs_read_file(path, &b, e)) < 0) {
		buf_done(&b);
		return r;
	}
	ups_clear(u);
	char *save = NULL;
	int line = 0;
	for (char *l = strtok_r(b.data ? b.data : (char[]){ 0 }, "\n", &save); l;
	     l = strtok_r(NULL, "\n", &save)) {
		line++;
		char *hash = strchr(l, '#');
		if (hash)
			*hash = '\0';
		struct slice t = slice_trim(slice_from(l));
		if (!t.n)
			continue;
		char *spec = xstrndup(t.p, t.n);
		r = ups_add(u, spec, e);
		free(spec);
		if (r < 0) {
			e->code = CAIRN_EINPUT;
			snprintf(e->file, sizeof e->file, "%s", path);
			buf_done(&b);
			return r;
		}
	}
	buf_done(&b);
	return 0;
}

static void print_stats_http(const struct cli_ctx *ctx, struct hproxy *h)
{
	char labels[64][PROXY_TOXIC_NAME_MAX];
	size_t n = hproxy_labels(h, labels, ARRAY_SIZE(labels));
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		struct proxy_http_stats t, w;
		if (hproxy_stats(h, labels[i], 0, &t) < 0)
			continue;
		if (hproxy_stats(h, labels[i], 60000, &w) < 0)
			memset(&w, 0, sizeof w);
		double p50 = proxy_http_percentile_us(&t, 50), p99 = proxy_http_percentile_us(&t, 99);
		if (ctx->json) {
			json_array_append_new(
				arr, json_pack("{s:s, s:I, s:{s:I, s:I, s:I, s:I, s:I}, s:f, s:f,"
					       " s:{s:I, s:I, s:f}}",
					       "label", t.label, "requests", (json_int_t)t.requests,
					       "status", "1xx", (json_int_t)t.status[1], "2xx",
					       (json_int_t)t.status[2], "3xx", (json_int_t)t.status[3],
					       "4xx", (json_int_t)t.status[4], "5xx",
					       (json_int_t)t.status[5], "p50_us", p50, "p99_us", p99,
					       "last_minute", "requests", (json_int_t)w.requests, "5xx",
					       (json_int_t)w.status[5], "p99_us",
					       proxy_http_percentile_us(&w, 99)));
			continue;
		}
		printf("%s: %llu requests (2xx %llu, 3xx %llu, 4xx %llu, 5xx %llu), p50 %.0f us,"
		       " p99 %.0f us; last minute %llu requests, 5xx %llu\n",
		       t.label, (unsigned long long)t.requests, (unsigned long long)t.status[2],
		       (unsigned long long)t.status[3], (unsigned long long)t.status[4],
		       (unsigned long long)t.status[5], p50, p99, (unsigned long long)w.requests,
		       (unsigned long long)w.status[5]);
	}
	if (ctx->json) {
		json_t *o = json_pack("{s:o}", "labels", arr);
		json_dumpf(o, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(o);
	} else {
		json_decref(arr);
		if (!n)
			printf("no requests yet\n");
	}
	fflush(stdout);
}

static void print_stats_tcp(const struct cli_ctx *ctx, struct proxy_engine *eng, int64_t id)
{
	struct proxy_stats s;
	if (proxy_engine_stats(eng, id, &s) < 0)
		return;
	if (ctx->json)
		printf("{\"conns_total\":%llu,\"conns_active\":%llu,\"bytes_up\":%llu,"
		       "\"bytes_down\":%llu}\n",
		       (unsigned long long)s.conns_total, (unsigned long long)s.conns_active,
		       (unsigned long long)s.bytes_up, (unsigned long long)s.bytes_down);
	else
		printf("connections %llu (active %llu), bytes up %llu, down %llu\n",
		       (unsigned long long)s.conns_total, (unsigned long long)s.conns_active,
		       (unsigned long long)s.bytes_up, (unsigned long long)s.bytes_down);
	fflush(stdout);
}

struct args {
	const char *listen, *file, *mode;
	int threads;
	struct hproxy_opts o;
	struct ups ups;
};

static int serve(const struct cli_ctx *ctx, struct args *a)
{
	bool tcp = !strcmp(a->mode, "tcp");
	struct hproxy *h = NULL;
	struct proxy_engine *eng = NULL;
	int64_t id = 0;
	char addr[NET_ADDR_STRLEN];
	struct err e;
	sigset_t ss;
	struct rlimit rl;
	int sig, rc = 0;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	sigemptyset(&ss);
	sigaddset(&ss, SIGINT);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGHUP);
	sigaddset(&ss, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &ss, NULL); /* before any thread starts: they inherit it */
	if (tcp) {
		struct proxy_engine_opts eo = { .threads = a->threads };
		if (proxy_engine_new(&eo, &eng, &e) < 0)
			return cli_fail(ctx, &e);
		id = proxy_engine_add(eng, a->listen, a->ups.v, a->ups.n, true, addr, &e);
		if (id < 0) {
			proxy_engine_free(eng);
			return cli_fail(ctx, &e);
		}
	} else {
		a->o.threads = a->threads;
		if (hproxy_new(&a->o, a->listen, addr, &h, &e) < 0)
			return cli_fail(ctx, &e);
		if (hproxy_set_upstreams(h, a->ups.v, a->ups.n, &e) < 0) {
			hproxy_free(h);
			return cli_fail(ctx, &e);
		}
	}
	if (ctx->json)
		printf("{\"listen\":\"%s\",\"mode\":\"%s\"}\n", addr, a->mode); /* no quoting needed */
	else
		printf("listening on %s\n", addr);
	fflush(stdout);
	for (;;) {
		if (sigwait(&ss, &sig) != 0)
			continue;
		if (sig == SIGINT || sig == SIGTERM)
			break;
		if (sig == SIGUSR1) {
			if (tcp)
				print_stats_tcp(ctx, eng, id);
			else
				print_stats_http(ctx, h);
			continue;
		}
		if (!a->file)
			continue; /* SIGHUP without a file: nothing to re-read */
		if (ups_read_file(&a->ups, a->file, &e) < 0 ||
		    (tcp ? proxy_engine_set_upstreams(eng, id, a->ups.v, a->ups.n, &e)
			 : hproxy_set_upstreams(h, a->ups.v, a->ups.n, &e)) < 0) {
			err_prefix(&e, "upstreams not switched");
			cli_fail(ctx, &e);
			continue;
		}
		if (ctx->json)
			printf("{\"upstreams\":%zu}\n", a->ups.n);
		else
			printf("upstreams: %zu\n", a->ups.n);
		fflush(stdout);
	}
	hproxy_free(h);
	proxy_engine_free(eng);
	return rc;
}

static int dur_opt(const char *name, const char *arg, int64_t *out)
{
	if (time_parse_duration_ms(arg, out) < 0 || *out <= 0)
		return cli_usage(&cli_cmd_proxy, "%s wants a duration like 10s or 250ms, not '%s'",
				 name, arg);
	return 0;
}

static int run(int argc, char **argv)
{
	enum { O_FILE = 256, O_MODE, O_THREADS, O_HT, O_IT, O_CT, O_UT, O_DT, O_MH, O_MB };
	static const struct option opts[] = { CLI_COMMON_OPTS,
					      { "listen", required_argument, NULL, 'l' },
					      { "upstream", required_argument, NULL, 'u' },
					      { "upstreams-file", required_argument, NULL, O_FILE },
					      { "mode", required_argument, NULL, O_MODE },
					      { "threads", required_argument, NULL, O_THREADS },
					      { "header-timeout", required_argument, NULL, O_HT },
					      { "idle-timeout", required_argument, NULL, O_IT },
					      { "connect-timeout", required_argument, NULL, O_CT },
					      { "upstream-timeout", required_argument, NULL, O_UT },
					      { "drain-timeout", required_argument, NULL, O_DT },
					      { "max-header-bytes", required_argument, NULL, O_MH },
					      { "max-body-bytes", required_argument, NULL, O_MB },
					      { NULL, 0, NULL, 0 } };
	struct cli_ctx ctx = { .cmd = cli_cmd_proxy.name };
	struct args a = { .mode = "http", .threads = 1 };
	struct err e;
	char *end;
	long long v;
	int c, r = 0;

	optind = 1;
	while (r == 0 && (c = getopt_long(argc, argv, "hl:u:", opts, NULL)) != -1) {
		int cr = cli_common_opt(&ctx, &cli_cmd_proxy, c, optarg);
		if (cr >= 100) {
			r = cr - 100;
			goto out;
		}
		if (cr == 1)
			continue;
		switch (c) {
		case 'l':
			a.listen = optarg;
			break;
		case 'u':
			if (ups_add(&a.ups, optarg, &e) < 0)
				r = cli_usage(&cli_cmd_proxy, "%s", e.msg);
			break;
		case O_FILE:
			a.file = optarg;
			break;
		case O_MODE:
			if (strcmp(optarg, "http") && strcmp(optarg, "tcp"))
				r = cli_usage(&cli_cmd_proxy, "--mode is http or tcp, not '%s'", optarg);
			a.mode = optarg;
			break;
		case O_THREADS:
			v = strtoll(optarg, &end, 10);
			if (*end || v < 1 || v > 64)
				r = cli_usage(&cli_cmd_proxy, "--threads wants 1..64, not '%s'", optarg);
			a.threads = (int)v;
			break;
		case O_HT: r = dur_opt("--header-timeout", optarg, &a.o.header_timeout_ms); break;
		case O_IT: r = dur_opt("--idle-timeout", optarg, &a.o.idle_timeout_ms); break;
		case O_CT: r = dur_opt("--connect-timeout", optarg, &a.o.connect_timeout_ms); break;
		case O_UT: r = dur_opt("--upstream-timeout", optarg, &a.o.upstream_timeout_ms); break;
		case O_DT: r = dur_opt("--drain-timeout", optarg, &a.o.drain_timeout_ms); break;
		case O_MH:
		case O_MB:
			errno = 0;
			v = strtoll(optarg, &end, 10);
			if (*end || errno || v < (c == O_MB ? -1 : 1024) || !*optarg) {
				r = cli_usage(&cli_cmd_proxy, "%s wants a byte count, not '%s'",
					      c == O_MB ? "--max-body-bytes" : "--max-header-bytes (>= 1024)",
					      optarg);
				break;
			}
			if (c == O_MH)
				a.o.max_header_bytes = (size_t)v;
			else
				a.o.max_body_bytes = v;
			break;
		default:
			r = cli_usage(&cli_cmd_proxy, "unknown option");
		}
	}
	if (r)
		goto out;
	if (optind < argc) {
		r = cli_usage(&cli_cmd_proxy, "takes no argument ('%s')", argv[optind]);
		goto out;
	}
	if (!a.listen) {
		r = cli_usage(&cli_cmd_proxy, "--listen ADDR is required (e.g. 127.0.0.1:8080)");
		goto out;
	}
	if (a.file && a.ups.n) {
		r = cli_usage(&cli_cmd_proxy, "give --upstream or --upstreams-file, not both");
		goto out;
	}
	if (a.file && ups_read_file(&a.ups, a.file, &e) < 0) {
		e.code = CAIRN_EINPUT;
		r = cli_fail(&ctx, &e);
		goto out;
	}
	if (!a.file && !a.ups.n) {
		r = cli_usage(&cli_cmd_proxy, "no upstream: give --upstream ADDR or --upstreams-file");
		goto out;
	}
	r = serve(&ctx, &a);
out:
	ups_clear(&a.ups);
	return r;
}
