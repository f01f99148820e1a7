/* cli check: `cairn check` (validate cairn.yml, print it resolved with --json), `cairn init`
 * (write a commented starter) and cli_load_config, which every command that reads the config
 * goes through. Parsing and validation belong to config/; this file only prints. */
#include "cli/cli.h"

#include "config/config.h"
#include "controller/controller.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int run_check(int argc, char **argv);
static int run_init(int argc, char **argv);

const struct cli_command cli_cmd_check = {
    .name = "check",
    .run = run_check,
    .summary = "validate cairn.yml; errors as FILE:LINE:COL",
    .help = "NAME\n"
	    "    cairn check - validate cairn.yml\n\n"
	    "SYNOPSIS\n"
	    "    cairn check [-c FILE] [--json]\n\n"
	    "DESCRIPTION\n"
	    "    Reads the config (FILE, else ./cairn.yml) and checks every key: known names,\n"
	    "    types, durations, percentages, ranges, app and host names, paths. The first\n"
	    "    problem is printed as FILE:LINE:COL: error: MESSAGE, pointing at the key or\n"
	    "    value at fault and saying what to write instead; unknown keys suggest the\n"
	    "    nearest known one. Nothing is started and no state is touched.\n"
	    "    When a controller answers (CAIRN_ADDR, else STATE/cairn.sock), it is asked\n"
	    "    what every other app's current release listens on: a listen another app has\n"
	    "    on one of the config's hosts is refused, naming that app (a port has one\n"
	    "    owner per host; 'cairn deploy' refuses it always).\n"
	    "    docs/config.md describes every key and its default.\n\n"
	    "OPTIONS\n"
	    "    -c, --config FILE   the config to check (default: ./cairn.yml)\n"
	    "    --json              print the resolved config (every default filled in,\n"
	    "                        durations in milliseconds as *_ms), or\n"
	    "                        {\"error\": {code, message, file, line, col}}\n\n"
	    "EXIT STATUS\n"
	    "    0 the config is valid, 1 its listen is another app's on one of its hosts,\n"
	    "    2 it is not valid (or cannot be read), or a usage error.\n\n"
	    "EXAMPLES\n"
	    "    cairn check\n"
	    "    cairn check -c deploy/cairn.yml\n"
	    "    cairn check --json | jq .rollout\n",
};

const struct cli_command cli_cmd_init = {
    .name = "init",
    .run = run_init,
    .summary = "write a commented cairn.yml for a directory",
    .help =
	"NAME\n"
	"    cairn init - write a commented starter cairn.yml\n\n"
	"SYNOPSIS\n"
	"    cairn init [DIR] [--force] [--json]\n\n"
	"DESCRIPTION\n"
	"    Writes DIR/cairn.yml (DIR defaults to the current directory) with every section\n"
	"    commented: what it does and its default. The app's name comes from the\n"
	"    directory's name; run.command (and build.command) from its layout:\n"
	"      manage.py               python3 -m gunicorn PROJECT.wsgi (Django)\n"
	"      app.py, main.py         python3 app.py\n"
	"      package.json            npm start (or node MAIN); npm ci to build with a lock\n"
	"      Gemfile + config.ru     bundle exec puma -C config/puma.rb\n"
	"      go.mod                  ./app, built with go build -o app .\n"
	"      Cargo.toml              ./target/release/NAME, built with cargo build --release\n"
	"    otherwise a placeholder to edit. Commands are argv lists, never run through a\n"
	"    shell, so an instance learns its port from the PORT environment variable; the\n"
	"    comments say how for each layout. health.http is written when the app speaks\n"
	"    HTTP: a Django or Rack layout, or a web framework or HTTP server named in its\n"
	"    top-level sources or dependency manifest (http.server, flask, express,\n"
	"    net/http, axum, ...); it probes a health route quoted in those files\n"
	"    (/healthz, /health, ...) or else /. Otherwise it is left commented (TCP mode).\n"
	"    The file always passes 'cairn check'.\n"
	"    An existing cairn.yml is never overwritten without --force.\n\n"
	"OPTIONS\n"
	"    --force    overwrite an existing DIR/cairn.yml\n"
	"    --json     {\"file\", \"app\", \"layout\", \"found\", \"run\": [...], \"build\": "
	"[...],\n"
	"               \"health_http\", \"http_evidence\"} (both null in TCP mode)\n\n"
	"EXIT STATUS\n"
	"    0 written, 1 it could not be written, 2 DIR/cairn.yml exists (without --force),\n"
	"    DIR is not a directory, or a usage error.\n\n"
	"EXAMPLES\n"
	"    cairn init\n"
	"    cairn init ~/src/urlshort && cairn check -c ~/src/urlshort/cairn.yml\n",
};

int cli_load_config(const struct cli_ctx *ctx, struct config **out, struct err *e)
{
	const char *path = ctx->config_path ? ctx->config_path : CONFIG_DEFAULT_NAME;
	int r;

	if (!fs_exists(path)) {
		if (ctx->config_path)
			return err_set(e, CAIRN_EINPUT,
				       "%s: no such file; pass the path of a "
				       "cairn.yml to -c",
				       path);
		return err_set(e, CAIRN_EINPUT,
			       "no cairn.yml in this directory; run 'cairn init' "
			       "to write one, or pass -c FILE");
	}
	if (fs_is_dir(path))
		return err_set(e, CAIRN_EINPUT, "%s is a directory; pass the cairn.yml file in it",
			       path);
	r = config_load(path, out, e);
	/* a config that cannot be read is bad input, whatever errno said why */
	if (r < 0 && e && e->code != ENOMEM && e->code != CAIRN_EINPUT)
		e->code = CAIRN_EINPUT;
	return r < 0 && e ? -e->code : r;
}

static void print_json(json_t *o)
{
	json_dumpf(o, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
	fputc('\n', stdout);
}

/* Other apps' ports on the config's hosts, when a controller answers (CAIRN_ADDR, else the
 * state's cairn.sock): -EADDRINUSE naming the app that has the listen, 0 none, 1 not asked
 * (*why says why when a controller was there to ask and did not answer; NULL: none is set up). */
static int check_ports(const struct cli_ctx *ctx, const struct config *c, const char **why,
		       struct err *e)
{
	struct cli_api_opts ao = { 0 };
	struct cli_api a;
	json_t *ans = NULL;
	long status;
	struct err ce;
	int r;
	*why = NULL;
	if (cli_api_open(ctx, &ao, &a, &ce) < 0)
		return 1;
	if (a.sock && access(a.sock, F_OK) < 0) {
		cli_api_done(&a);
		return 1;
	}
	*why = "no controller answers: other apps' ports were not checked (deploy checks them)";
	a.c.timeout_ms = 3000;
	r = cli_api_call(&a, "GET", "/v1/apps", NULL, NULL, &status, &ans, &ce);
	cli_api_done(&a);
	if (r < 0)
		return 1;
	*why = NULL;
	r = controller_ports_clash(json_object_get(ans, "ports"), c->app, c, e);
	json_decref(ans);
	return r;
}

static int run_check(int argc, char **argv)
{
	static const struct option opts[] = {CLI_COMMON_OPTS, {0}};
	struct cli_ctx ctx = {.cmd = "check"};
	struct config *c = NULL;
	struct err e;
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORT, opts, NULL)) != -1) {
		int k = cli_common_opt(&ctx, &cli_cmd_check, opt, optarg);
		if (k >= 100)
			return k - 100;
	}
	if (optind < argc)
		return cli_usage(&cli_cmd_check, "unexpected argument '%s'; pass the file with -c",
				 argv[optind]);
	if (cli_load_config(&ctx, &c, &e) < 0)
		return cli_fail(&ctx, &e);
	const char *ports_why = NULL;
	int asked = check_ports(&ctx, c, &ports_why, &e);
	if (asked < 0) {
		err_prefix(&e, "%s", c->file);
		config_free(c);
		return cli_fail(&ctx, &e);
	}
	if (ctx.json) {
		json_t *o = config_to_json(c);
		if (!o) {
			config_free(c);
			err_set(&e, ENOMEM, "out of memory");
			return cli_fail(&ctx, &e);
		}
		print_json(o);
		json_decref(o);
	} else {
		bool v6 = strchr(c->listen_host, ':') != NULL;
		printf("%s: ok (app %s, %zu host%s × %d instance%s, listen %s%s%s:%d)\n", c->file,
		       c->app, c->n_hosts, c->n_hosts == 1 ? "" : "s", c->instances,
		       c->instances == 1 ? "" : "s", v6 ? "[" : "", c->listen_host, v6 ? "]" : "",
		       c->listen_port);
		if (ports_why)
			fprintf(stderr, "cairn check: note: %s\n", ports_why);
		else if (asked == 0)
			printf("  ports: no other app listens there (asked the controller)\n");
	}
	config_free(c);
	return 0;
}

static json_t *argv_json(const struct strv *v)
{
	json_t *a = json_array();
	for (size_t i = 0; i < v->n; i++)
		json_array_append_new(a, json_string(v->v[i]));
	return a;
}

static void print_argv(const struct strv *v)
{
	struct buf b;
	buf_init(&b, 64 * 1024);
	buf_addc(&b, '[');
	for (size_t i = 0; i < v->n; i++) {
		if (i)
			buf_adds(&b, ", ");
		buf_add_quoted(&b, v->v[i]);
	}
	buf_addc(&b, ']');
	fputs(buf_str(&b), stdout);
	buf_done(&b);
}

static void print_guess(const char *path, const struct config_guess *g)
{
	printf("wrote %s\n", path);
	printf("  app:           %s (from the directory's name)\n", g->app);
	printf("  run.command:   ");
	print_argv(&g->run);
	if (g->found)
		printf(" (a %s app: found %s)\n", g->layout, g->found);
	else
		printf(" (no known layout found: edit it)\n");
	if (g->build.n) {
		printf("  build.command: ");
		print_argv(&g->build);
		putchar('\n');
	}
	if (g->http)
		printf("  health.http:   %s (HTTP mode: %s)\n", g->http, g->http_why);
	else
		printf("  health.http:   not set (TCP mode: no web framework or HTTP server found; "
		       "set it if the app speaks HTTP)\n");
	printf("next: read the comments in it, adjust, then run 'cairn check -c %s%s%s'\n",
	       strchr(path, ' ') ? "\"" : "", path, strchr(path, ' ') ? "\"" : "");
}

static int run_init(int argc, char **argv)
{
	static const struct option opts[] = {
	    CLI_COMMON_OPTS, {"force", no_argument, NULL, 'f'}, {0}};
	struct cli_ctx ctx = {.cmd = "init"};
	struct config_guess g = {0};
	const char *dir = ".";
	bool force = false;
	struct buf text;
	char *path = NULL;
	struct err e;
	int opt, rc = 0;

	optind = 1;
	while ((opt = getopt_long(argc, argv, CLI_COMMON_SHORT, opts, NULL)) != -1) {
		int k = cli_common_opt(&ctx, &cli_cmd_init, opt, optarg);
		if (k >= 100)
			return k - 100;
		if (k == 0 && opt == 'f')
			force = true;
	}
	if (optind < argc)
		dir = argv[optind++];
	if (optind < argc)
		return cli_usage(&cli_cmd_init, "unexpected argument '%s'", argv[optind]);
	if (!fs_is_dir(dir)) {
		err_set(&e, CAIRN_EINPUT, "%s is not a directory", dir);
		return cli_fail(&ctx, &e);
	}
	path = fs_join(dir, CONFIG_DEFAULT_NAME);
	buf_init(&text, CONFIG_MAX_BYTES);
	if (fs_exists(path) && !force) {
		err_set(&e, CAIRN_EINPUT,
			"%s already exists; pass --force to overwrite it, or check "
			"it with 'cairn check -c %s'",
			path, path);
		rc = cli_fail(&ctx, &e);
	} else if (config_starter_guess(dir, &g, &e) < 0 || config_starter(dir, &text, &e) < 0 ||
		   fs_write_atomic(path, buf_str(&text), text.len, 0644, &e) < 0) {
		rc = cli_fail(&ctx, &e);
	} else if (ctx.json) {
		json_t *o = json_pack("{s:s,s:s,s:s,s:s?,s:o,s:o,s:s?,s:s?}", "file", path, "app",
				      g.app, "layout", g.layout, "found", g.found, "run",
				      argv_json(&g.run), "build", argv_json(&g.build),
				      "health_http", g.http, "http_evidence", g.http_why);
		print_json(o);
		json_decref(o);
	} else {
		print_guess(path, &g);
	}
	config_guess_done(&g);
	buf_done(&text);
	free(path);
	return rc;
}
