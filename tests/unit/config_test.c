/* Unit tests for config/: defaults, every value type, the starter for each layout, and one
 * test per error kind asserting the exact FILE:LINE:COL and what the message says. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "config/config.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BASE "app: x\nrun:\n  command: [a]\nlisten: 1\n" /* lines 1-4 */

static struct config *parse_ok(const char *text)
{
	struct config *c = NULL;
	struct err e;
	if (config_parse("t.yml", NULL, text, strlen(text), &c, &e) < 0)
		fail_msg("unexpected error %d:%d: %s", e.line, e.col, e.msg);
	return c;
}

/* ---- values and defaults --------------------------------------------------------------------- */

static void test_defaults(void **state)
{
	struct config *c = parse_ok(BASE);
	char cwd[4096];
	(void)state;
	assert_string_equal(c->file, "t.yml");
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_string_equal(c->dir, cwd);
	assert_string_equal(c->app, "x");
	assert_int_equal(c->build.command.n, 0);
	assert_int_equal(c->build.exclude.n, 2);
	assert_string_equal(c->build.exclude.v[0], ".git");
	assert_string_equal(c->build.exclude.v[1], "__pycache__");
	assert_null(c->build.exclude.v[2]);
	assert_int_equal(c->build.pins, CONFIG_PINS_REQUIRE);
	assert_int_equal(c->run.command.n, 1);
	assert_string_equal(c->run.command.v[0], "a");
	assert_null(c->run.command.v[1]);
	assert_int_equal(c->run.n_env, 0);
	assert_int_equal(c->run.stop_timeout_ms, 10000);
	assert_int_equal(c->run.stop_signal, SIGTERM);
	assert_string_equal(c->listen_host, "127.0.0.1");
	assert_int_equal(c->listen_port, 1);
	assert_int_equal(c->n_hosts, 1);
	assert_string_equal(c->hosts[0].name, "local");
	assert_null(c->hosts[0].ssh);
	assert_int_equal(c->instances, 1);
	assert_null(c->health.http);
	assert_int_equal(c->health.interval_ms, 1000);
	assert_int_equal(c->health.timeout_ms, 2000);
	assert_int_equal(c->health.healthy_after, 2);
	assert_int_equal(c->health.start_deadline_ms, 60000);
	assert_int_equal(c->n_acceptance, 0);
	assert_int_equal(c->rollout.parallel, 1);
	assert_int_equal(c->rollout.bake_ms, 30000);
	assert_true(c->rollout.max_error_rate == 0.01);
	assert_int_equal(c->rollout.max_p99_ms, 0);
	assert_true(c->rollout.max_p99_ratio == 0);
	assert_int_equal(c->rollout.min_requests, 20);
	assert_true(c->rollout.auto_rollback);
	config_free(c);
}

/* The example of DESIGN.md, verbatim. */
static const char design_example[] =
    "app: urlshort\n"
    "build:\n"
    "  command: []                 # optional argv run once at build time\n"
    "  exclude: [\".git\", \"__pycache__\"]\n"
    "  pins: require\n"
    "run:\n"
    "  command: [\"python3\", \"app.py\"]   # argv; PORT is set per instance\n"
    "  env: { LOG_LEVEL: info }\n"
    "  stop_timeout: 10s\n"
    "listen: 8080                  # the proxy port on each host\n"
    "hosts: [local]                # or { name: web1, ssh: deploy@10.0.0.5 }\n"
    "instances: 2                  # per host\n"
    "health:   { http: /healthz, interval: 1s, timeout: 2s, healthy_after: 2, start_deadline: "
    "60s }\n"
    "acceptance:\n"
    "  - name: shorten\n"
    "    request: { method: POST, path: /shorten, body: '{\"url\":\"https://example.com\"}' }\n"
    "    expect:  { status: 200, body_contains: \"/s/\", max_latency: 300ms }\n"
    "rollout:\n"
    "  parallel: 1                 # hosts at a time\n"
    "  bake: 30s                   # watch real traffic before the old instances go\n"
    "  gates: { max_error_rate: 1%, max_p99: 500ms, max_p99_ratio: 2.0 }\n"
    "  auto_rollback: true\n";

static void test_design_example(void **state)
{
	struct config *c = parse_ok(design_example);
	(void)state;
	assert_string_equal(c->app, "urlshort");
	assert_int_equal(c->run.command.n, 2);
	assert_string_equal(c->run.command.v[1], "app.py");
	assert_int_equal(c->run.n_env, 1);
	assert_string_equal(c->run.env[0].key, "LOG_LEVEL");
	assert_string_equal(c->run.env[0].value, "info");
	assert_int_equal(c->listen_port, 8080);
	assert_int_equal(c->instances, 2);
	assert_string_equal(c->health.http, "/healthz");
	assert_int_equal(c->n_acceptance, 1);
	assert_string_equal(c->acceptance[0].name, "shorten");
	assert_string_equal(c->acceptance[0].method, "POST");
	assert_string_equal(c->acceptance[0].path, "/shorten");
	assert_string_equal(c->acceptance[0].body, "{\"url\":\"https://example.com\"}");
	assert_int_equal(c->acceptance[0].expect_status, 200);
	assert_string_equal(c->acceptance[0].expect_body_contains, "/s/");
	assert_int_equal(c->acceptance[0].expect_max_latency_ms, 300);
	assert_int_equal(c->rollout.max_p99_ms, 500);
	assert_true(c->rollout.max_p99_ratio == 2.0);
	assert_true(c->rollout.max_error_rate == 0.01);
	config_free(c);
}

static void test_values(void **state)
{
	struct config *c = parse_ok(
	    "app: my-app.v2_x\n"
	    "build: {command: [make, vendor], exclude: [node_modules], pins: warn}\n"
	    "run:\n"
	    "  command: [sleep, 10, true]\n"
	    "  env: {ZED: z, A_1: 42, FLAG: true, EMPTY: \"\"}\n"
	    "  stop_timeout: 1m30s\n"
	    "  stop_signal: SIGQUIT\n"
	    "listen: \"0.0.0.0:9090\"\n"
	    "hosts:\n"
	    "  - local\n"
	    "  - {name: web1, ssh: deploy@10.0.0.5}\n"
	    "  - name: web-2.example\n"
	    "    ssh: web2\n"
	    "    state: /srv/cairn-2\n"
	    "    cairn: /usr/local/bin/cairn\n"
	    "instances: 64\n"
	    "health: {http: /up, interval: 250ms, timeout: 250ms, healthy_after: 1, "
	    "start_deadline: 1h}\n"
	    "acceptance:\n"
	    "  - request: {path: /, headers: {X-Token: abc, accept: text/html}}\n"
	    "  - request: {method: delete, path: /x?y=1}\n"
	    "    expect: {status: 404}\n"
	    "rollout: {parallel: 3, bake: 0, gates: {max_error_rate: 0.5%, max_p99_ratio: 1, "
	    "min_requests: 5}, "
	    "auto_rollback: false}\n");
	(void)state;
	assert_string_equal(c->app, "my-app.v2_x");
	assert_int_equal(c->build.command.n, 2);
	assert_int_equal(c->build.exclude.n, 1);
	assert_string_equal(c->build.exclude.v[0], "node_modules");
	assert_int_equal(c->build.pins, CONFIG_PINS_WARN);
	assert_string_equal(c->run.command.v[1], "10");
	assert_string_equal(c->run.command.v[2], "true");
	/* sorted by key; numbers and booleans as their text */
	assert_int_equal(c->run.n_env, 4);
	assert_string_equal(c->run.env[0].key, "A_1");
	assert_string_equal(c->run.env[0].value, "42");
	assert_string_equal(c->run.env[1].key, "EMPTY");
	assert_string_equal(c->run.env[1].value, "");
	assert_string_equal(c->run.env[2].key, "FLAG");
	assert_string_equal(c->run.env[2].value, "true");
	assert_string_equal(c->run.env[3].key, "ZED");
	assert_int_equal(c->run.stop_timeout_ms, 90000);
	assert_int_equal(c->run.stop_signal, SIGQUIT);
	assert_string_equal(c->listen_host, "0.0.0.0");
	assert_int_equal(c->listen_port, 9090);
	assert_int_equal(c->n_hosts, 3);
	assert_string_equal(c->hosts[0].name, "local");
	assert_string_equal(c->hosts[1].name, "web1");
	assert_string_equal(c->hosts[1].ssh, "deploy@10.0.0.5");
	assert_string_equal(c->hosts[2].name, "web-2.example");
	assert_string_equal(c->hosts[2].ssh, "web2");
	assert_null(c->hosts[0].state);
	assert_null(c->hosts[0].cairn);
	assert_string_equal(c->hosts[1].state, CONFIG_REMOTE_STATE);
	assert_string_equal(c->hosts[1].cairn, "cairn");
	assert_string_equal(c->hosts[2].state, "/srv/cairn-2");
	assert_string_equal(c->hosts[2].cairn, "/usr/local/bin/cairn");
	assert_int_equal(c->instances, 64);
	assert_string_equal(c->health.http, "/up");
	assert_int_equal(c->health.interval_ms, 250);
	assert_int_equal(c->health.healthy_after, 1);
	assert_int_equal(c->health.start_deadline_ms, 3600000);
	assert_int_equal(c->n_acceptance, 2);
	assert_string_equal(c->acceptance[0].name, "GET /");
	assert_string_equal(c->acceptance[0].method, "GET");
	assert_int_equal(c->acceptance[0].expect_status, 200);
	assert_null(c->acceptance[0].body);
	assert_int_equal(c->acceptance[0].n_headers, 2);
	assert_string_equal(c->acceptance[0].headers[0].name, "accept");
	assert_string_equal(c->acceptance[0].headers[1].name, "X-Token");
	assert_string_equal(c->acceptance[1].method, "DELETE");
	assert_string_equal(c->acceptance[1].name, "DELETE /x?y=1");
	assert_int_equal(c->acceptance[1].expect_status, 404);
	assert_int_equal(c->rollout.parallel, 3);
	assert_int_equal(c->rollout.bake_ms, 0);
	assert_true(c->rollout.max_error_rate == 0.005);
	assert_true(c->rollout.max_p99_ratio == 1.0);
	assert_int_equal(c->rollout.min_requests, 5);
	assert_false(c->rollout.auto_rollback);
	config_free(c);
}

/* Single-quoted scalars: '' escapes (many in a row) and line folding, as YAML 1.2 says. */
#define QUOTES10 "''''''''''''''''''''" /* ten escaped quotes */
#define QUOTES20 QUOTES10 QUOTES10
static void test_single_quoted(void **state)
{
	struct config *c = parse_ok("app: x\n"
				    "run:\n"
				    "  command: ['it''s', '" QUOTES20 "', "
				    "'a\n\n     b  \n   c', ' lead ', '']\n"
				    "listen: 1\n");
	(void)state;
	assert_int_equal(c->run.command.n, 5);
	assert_string_equal(c->run.command.v[0], "it's");
	assert_string_equal(c->run.command.v[1], "''''''''''''''''''''");
	assert_string_equal(c->run.command.v[2], "a\nb c");
	assert_string_equal(c->run.command.v[3], " lead ");
	assert_string_equal(c->run.command.v[4], "");
	config_free(c);
}

static void test_listen_forms(void **state)
{
	static const struct {
		const char *listen, *host;
		int port;
	} cases[] = {
	    {"8080", "127.0.0.1", 8080},       {"\"127.0.0.1:8080\"", "127.0.0.1", 8080},
	    {"0.0.0.0:1", "0.0.0.0", 1},       {"\"[::1]:65535\"", "::1", 65535},
	    {"localhost:80", "localhost", 80},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *text =
		    xasprintf("app: x\nrun: {command: [a]}\nlisten: %s\n", cases[i].listen);
		struct config *c = parse_ok(text);
		assert_string_equal(c->listen_host, cases[i].host);
		assert_int_equal(c->listen_port, cases[i].port);
		config_free(c);
		free(text);
	}
}

static void test_empty_sections(void **state)
{
	/* sections left empty (everything under them commented out) keep their defaults */
	struct config *c = parse_ok(BASE "build:\n  # command: []\nhealth:\nrollout:\n"
					 "acceptance:\nhosts:\n");
	(void)state;
	assert_int_equal(c->build.exclude.n, 2);
	assert_int_equal(c->n_hosts, 1);
	assert_int_equal(c->rollout.bake_ms, 30000);
	config_free(c);
}

static void test_percent(void **state)
{
	double v;
	(void)state;
	assert_int_equal(config_parse_percent("1%", &v), 0);
	assert_true(v == 0.01);
	assert_int_equal(config_parse_percent("0.5%", &v), 0);
	assert_true(v == 0.005);
	assert_int_equal(config_parse_percent("0.01", &v), 0);
	assert_true(v == 0.01);
	assert_int_equal(config_parse_percent("100%", &v), 0);
	assert_true(v == 1.0);
	assert_int_equal(config_parse_percent("0%", &v), 0);
	assert_true(v == 0.0);
	assert_int_equal(config_parse_percent("101%", &v), -ERANGE);
	assert_int_equal(config_parse_percent("2", &v), -ERANGE);
	assert_int_equal(config_parse_percent("-1%", &v), -EINVAL);
	assert_int_equal(config_parse_percent("%", &v), -EINVAL);
	assert_int_equal(config_parse_percent("1e2%", &v), -EINVAL);
	assert_int_equal(config_parse_percent("inf", &v), -EINVAL);
	assert_int_equal(config_parse_percent("1 %", &v), -EINVAL);
	assert_int_equal(config_parse_percent("", &v), -EINVAL);
}

static void test_signal_names(void **state)
{
	(void)state;
	assert_string_equal(config_signal_name(SIGTERM), "SIGTERM");
	assert_string_equal(config_signal_name(SIGUSR2), "SIGUSR2");
	assert_null(config_signal_name(SIGKILL));
}

static void test_json(void **state)
{
	struct config *c = parse_ok(design_example);
	json_t *o = config_to_json(c);
	(void)state;
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "app")), "urlshort");
	assert_int_equal(
	    json_integer_value(json_object_get(json_object_get(o, "run"), "stop_timeout_ms")),
	    10000);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(o, "run"), "stop_signal")),
	    "SIGTERM");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(o, "listen"), "port")),
			 8080);
	assert_true(
	    json_is_null(json_object_get(json_array_get(json_object_get(o, "hosts"), 0), "ssh")));
	assert_true(
	    json_real_value(json_object_get(json_object_get(json_object_get(o, "rollout"), "gates"),
					    "max_error_rate")) == 0.01);
	json_decref(o);
	config_free(c);
}

/* ---- files ------------------------------------------------------------------------------------
 */

static char *tmpdir(void)
{
	struct err e;
	char *d = fs_mkdtemp("/tmp", &e);
	assert_non_null(d);
	return d;
}

static void write_file(const char *dir, const char *name, const char *text)
{
	char *p = fs_join(dir, name);
	struct err e;
	char *slash = strrchr(p, '/');
	*slash = '\0';
	assert_int_equal(fs_mkdir_p(p, 0755, &e), 0);
	*slash = '/';
	assert_int_equal(fs_write_atomic(p, text, strlen(text), 0644, &e), 0);
	free(p);
}

static void test_load(void **state)
{
	char *d = tmpdir(), *sub, *path, *real;
	struct config *c = NULL;
	struct buf big;
	struct err e;
	(void)state;
	write_file(d, "a/cairn.yml", BASE);
	sub = fs_join(d, "a");
	path = fs_join(sub, "cairn.yml");
	real = realpath(sub, NULL);
	assert_int_equal(config_load(path, &c, &e), 0);
	assert_string_equal(c->file, path);
	assert_string_equal(c->dir, real);
	config_free(c);
	c = NULL;

	/* a missing file: an error, nothing allocated */
	write_file(d, "b/keep", "");
	free(path);
	path = fs_join(d, "b/cairn.yml");
	assert_true(config_load(path, &c, &e) < 0);
	assert_null(c);
	assert_non_null(strstr(e.msg, "cairn.yml"));

	/* larger than CONFIG_MAX_BYTES: refused as input */
	buf_init(&big, CONFIG_MAX_BYTES + 64);
	assert_int_equal(buf_adds(&big, BASE), 0);
	while (big.len <= CONFIG_MAX_BYTES)
		assert_int_equal(buf_adds(&big, "# padding\n"), 0);
	write_file(d, "c/cairn.yml", buf_str(&big));
	free(path);
	path = fs_join(d, "c/cairn.yml");
	assert_int_equal(config_load(path, &c, &e), -CAIRN_EINPUT);
	assert_non_null(strstr(e.msg, "larger than"));
	assert_int_equal(config_parse("x.yml", NULL, buf_str(&big), big.len, &c, &e),
			 -CAIRN_EINPUT);
	buf_done(&big);

	fs_rm_rf(d);
	free(real);
	free(path);
	free(sub);
	free(d);
}

/* ---- the starter ------------------------------------------------------------------------------
 */

struct layout {
	const char *dirname;
	const char *files[4][2]; /* name, content */
	const char *layout;
	const char *run[6];
	const char *build[6];
};

static const struct layout layouts[] = {
    {"Flask App",
     {{"app.py", "print(1)\n"}, {"requirements.txt", "flask==3.0.0\n"}},
     "python",
     {"python3", "app.py"},
     {NULL}},
    {"svc", {{"main.py", ""}}, "python", {"python3", "main.py"}, {NULL}},
    {"mysite",
     {{"manage.py", ""}, {"mysite/wsgi.py", ""}, {"mysite/settings.py", ""}},
     "django",
     {"python3", "-m", "gunicorn", "mysite.wsgi"},
     {NULL}},
    {"web",
     {{"package.json", "{\"scripts\": {\"start\": \"node srv.js\"}}"}, {"package-lock.json", "{}"}},
     "node",
     {"npm", "start"},
     {"npm", "ci"}},
    {"web2",
     {{"package.json", "{\"main\": \"server.js\"}"}},
     "node",
     {"node", "server.js"},
     {NULL}},
    {"rack",
     {{"Gemfile", "gem 'puma'\n"}, {"config.ru", "run App\n"}},
     "ruby",
     {"bundle", "exec", "puma", "-C", "config/puma.rb"},
     {NULL}},
    {"gosvc",
     {{"go.mod", "module x\n"}, {"main.go", "package main\n"}},
     "go",
     {"./app"},
     {"go", "build", "-o", "app", "."}},
    {"rs",
     {{"Cargo.toml", "[workspace]\n\n[package]\nname = \"hello-bin\"\nversion = \"0.1.0\"\n"}},
     "rust",
     {"./target/release/hello-bin"},
     {"cargo", "build", "--release"}},
    {"_Weird Name!!", {{"README", ""}}, "unknown", {"./start"}, {NULL}},
    {"null", {{"x", ""}}, "unknown", {"./start"}, {NULL}},
};

static void assert_argv(const struct strv *v, const char *const want[])
{
	size_t n = 0;
	while (want[n])
		n++;
	assert_int_equal(v->n, n);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(v->v[i], want[i]);
}

static void test_starter_layouts(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(layouts) / sizeof(layouts[0]); i++) {
		const struct layout *l = &layouts[i];
		char *root = tmpdir(), *dir = fs_join(root, l->dirname), *path;
		struct config_guess g;
		struct config *c = NULL;
		struct buf b;
		struct err e;

		for (size_t f = 0; f < 4 && l->files[f][0]; f++) {
			char *rel = fs_join(l->dirname, l->files[f][0]);
			write_file(root, rel, l->files[f][1]);
			free(rel);
		}
		assert_int_equal(config_starter_guess(dir, &g, &e), 0);
		assert_string_equal(g.layout, l->layout);
		assert_argv(&g.run, l->run);
		assert_argv(&g.build, l->build);

		buf_init(&b, CONFIG_MAX_BYTES);
		assert_int_equal(config_starter(dir, &b, &e), 0);
		path = fs_join(dir, "cairn.yml");
		if (config_parse(path, dir, buf_str(&b), b.len, &c, &e) < 0)
			fail_msg("%s: starter fails: %d:%d %s\n%s", l->dirname, e.line, e.col,
				 e.msg, buf_str(&b));
		assert_string_equal(c->app, g.app);
		assert_argv(&c->run.command, l->run);
		assert_argv(&c->build.command, l->build);
		assert_int_equal(c->listen_port, 8080);
		assert_non_null(strstr(buf_str(&b), "PORT"));
		config_free(c);
		config_guess_done(&g);
		buf_done(&b);
		fs_rm_rf(root);
		free(path);
		free(dir);
		free(root);
	}
}

/* health.http from the app's files: a framework or HTTP server named → HTTP mode, probing a
 * quoted health route (or /); nothing named → TCP mode. Whole words only. */
static void test_starter_http(void **state)
{
	static const struct {
		const char *files[3][2];
		const char *http, *why;
	} cases[] = {
	    {{{"app.py", "from http.server import BaseHTTPRequestHandler\nX = \"/healthz\"\n"}},
	     "/healthz", "http.server in app.py"},
	    {{{"app.py", "print(1)\n"}, {"requirements.txt", "Flask==3.0.0\nflask-cors==1\n"}},
	     "/", "flask in requirements.txt"},
	    {{{"main.py", "import bottleneck\n"}}, NULL, NULL},
	    {{{"main.py", "import socket\n"}, {"health.py", "P = '/ping'\n"}}, NULL, NULL},
	    {{{"manage.py", ""}, {"site/wsgi.py", ""}}, "/", "Django (manage.py)"},
	    {{{"package.json", "{\"dependencies\": {\"express\": \"4.19.2\"}}"},
	      {"index.js", "app.get('/health', f)\n"}},
	     "/health", "\"express\" in package.json"},
	    {{{"go.mod", "module x\n"}, {"main.go", "import \"net/http\"\n"}}, "/",
	     "\"net/http\" in main.go"},
	    {{{"Cargo.toml", "[package]\nname = \"a\"\n[dependencies]\naxum = \"0.7\"\n"}}, "/",
	     "axum in Cargo.toml"},
	    {{{"README", "flask\n"}}, NULL, NULL},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *root = tmpdir();
		struct config_guess g;
		struct err e;
		for (size_t f = 0; f < 3 && cases[i].files[f][0]; f++)
			write_file(root, cases[i].files[f][0], cases[i].files[f][1]);
		assert_int_equal(config_starter_guess(root, &g, &e), 0);
		if (!cases[i].http) {
			assert_null(g.http);
			assert_null(g.http_why);
		} else {
			assert_non_null(g.http);
			assert_string_equal(g.http, cases[i].http);
			assert_non_null(strstr(g.http_why, cases[i].why));
		}
		config_guess_done(&g);
		fs_rm_rf(root);
		free(root);
	}
}

static void test_starter_app_names(void **state)
{
	static const char *const cases[][2] = {
	    {"Flask App", "flask-app"}, {"_Weird Name!!", "weird-name"},
	    {"null", "null"},		{"---", "app"},
	    {"a.b_c-d", "a.b_c-d"},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *root = tmpdir(), *dir = fs_join(root, cases[i][0]), *keep;
		struct config_guess g;
		struct err e;
		keep = fs_join(cases[i][0], "keep");
		write_file(root, keep, "");
		assert_int_equal(config_starter_guess(dir, &g, &e), 0);
		assert_string_equal(g.app, cases[i][1]);
		config_guess_done(&g);
		fs_rm_rf(root);
		free(keep);
		free(dir);
		free(root);
	}
}

/* ---- errors: one test each, exact position ----------------------------------------------------
 */

struct error_case {
	const char *name;
	const char *text;
	size_t len; /* 0: strlen(text) */
	int line, col;
	const char *want;  /* a substring of the message */
	const char *want2; /* a second one, or NULL */
	bool exact;	   /* `want` is the whole message */
};

static const struct error_case error_cases[] = {
    {"unknown_key_top", BASE "lsiten: 2\n", 0, 5, 1,
     "unknown key \"lsiten\"; did you mean \"listen\"?", NULL, true},
    {"unknown_key_run", "app: x\nrun:\n  comand: [a]\nlisten: 1\n", 0, 3, 3,
     "unknown key \"comand\" in run; did you mean \"command\"?", NULL, true},
    {"unknown_key_gates", BASE "rollout:\n  gates:\n    max_eror_rate: 1%\n", 0, 7, 5,
     "unknown key \"max_eror_rate\" in rollout.gates; did you mean \"max_error_rate\"?", NULL,
     true},
    {"unknown_key_request", BASE "acceptance:\n  - request:\n      pth: /x\n", 0, 7, 7,
     "unknown key \"pth\" in acceptance[0].request; did you mean \"path\"?", NULL, true},
    {"unknown_key_host", BASE "hosts:\n  - {name: web1, sssh: a@b}\n", 0, 6, 18,
     "in hosts[0]; did you mean \"ssh\"?", NULL, false},
    {"unknown_key_no_suggestion", BASE "frobnicate: 1\n", 0, 5, 1,
     "the keys allowed here are: app, build, run, listen, hosts, instances, health, "
     "acceptance, rollout, faults",
     NULL, false},
    {"duration_without_unit", "app: x\nrun:\n  command: [a]\n  stop_timeout: \"10\"\nlisten: 1\n",
     0, 4, 17,
     "run.stop_timeout: \"10\" is not a duration; write it with a unit, e.g. 10s or 500ms", NULL,
     true},
    {"duration_garbage", BASE "rollout:\n  bake: soon\n", 0, 6, 9,
     "rollout.bake: \"soon\" is not a duration", NULL, false},
    {"duration_hex", BASE "health: {interval: 0x10s}\n", 0, 5, 20,
     "health.interval: \"0x10s\" is not a duration", NULL, false},
    {"duration_zero_interval", BASE "health: {interval: 0}\n", 0, 5, 20,
     "health.interval must be more than 0", NULL, false},
    {"percent_bad", BASE "rollout:\n  gates: {max_error_rate: lots}\n", 0, 6, 27,
     "rollout.gates.max_error_rate: \"lots\" is not a percentage", NULL, false},
    {"percent_range", BASE "rollout:\n  gates: {max_error_rate: 150%}\n", 0, 6, 27,
     "must be between 0% and 100%", NULL, false},
    {"ratio_below_one", BASE "rollout: {gates: {max_p99_ratio: 0.5}}\n", 0, 5, 34,
     "max_p99_ratio must be at least 1", NULL, false},
    {"min_requests_zero", BASE "rollout: {gates: {min_requests: 0}}\n", 0, 5, 33,
     "rollout.gates.min_requests", NULL, false},
    {"type_map_for_list", "app: x\nrun:\n  command: {a: b}\nlisten: 1\n", 0, 3, 12,
     "run.command must be a list of strings (argv)", "found a mapping", false},
    {"type_list_for_map", "app: x\nrun: [a]\nlisten: 1\n", 0, 2, 6, "run must be a mapping of keys",
     "found a list", false},
    {"type_scalar_for_map", BASE "health: fast\n", 0, 5, 9, "health must be a mapping",
     "found \"fast\"", false},
    {"argv_as_shell_string", "app: x\nrun:\n  command: python3 app.py\nlisten: 1\n", 0, 3, 12,
     "never run through a shell", NULL, false},
    {"argv_empty", "app: x\nrun:\n  command: []\nlisten: 1\n", 0, 3, 12, "run.command is empty",
     NULL, false},
    {"argv_item_list", "app: x\nrun:\n  command: [a, [b]]\nlisten: 1\n", 0, 3, 16,
     "run.command[1] must be a string", "found a list", false},
    {"duplicate_key_top", "app: x\napp: y\n", 0, 2, 1, "duplicate key \"app\" (first at line 1)",
     NULL, true},
    {"duplicate_key_env",
     "app: x\nrun:\n  command: [a]\n  env:\n    A: 1\n    B: 2\n    A: 3\n"
     "listen: 1\n",
     0, 7, 5, "duplicate key \"A\" in run.env (first at line 5)", NULL, true},
    {"missing_app", "run:\n  command: [a]\nlisten: 1\n", 0, 1, 1, "missing required key \"app\"",
     NULL, false},
    {"missing_run", "app: x\nlisten: 1\n", 0, 1, 1, "missing required key \"run.command\"", NULL,
     false},
    {"missing_run_command", "app: x\nlisten: 1\nrun:\n  stop_timeout: 1s\n", 0, 4, 3,
     "missing required key \"command\" in run", NULL, false},
    {"missing_listen", "\n# a comment\napp: x\nrun:\n  command: [a]\n", 0, 3, 1,
     "missing required key \"listen\"", NULL, false},
    {"missing_request_path", BASE "acceptance:\n  - request: {method: GET}\n", 0, 6, 14,
     "missing required key \"path\" in acceptance[0].request", NULL, false},
    {"instances_range", BASE "instances: 65\n", 0, 5, 12,
     "instances: 65 is out of range; it must be between 1 and 64", NULL, true},
    {"instances_negative", BASE "instances: -1\n", 0, 5, 12, "instances: -1 is out of range", NULL,
     false},
    {"instances_not_number", BASE "instances: two\n", 0, 5, 12,
     "instances: \"two\" is not a whole number", NULL, true},
    {"port_range", "app: x\nrun:\n  command: [a]\nlisten: 70000\n", 0, 4, 9,
     "listen: 70000 is out of range; it must be between 1 and 65535", NULL, true},
    {"listen_bad_host", "app: x\nrun:\n  command: [a]\nlisten: \"bad host:80\"\n", 0, 4, 9,
     "is not a port or HOST:PORT", NULL, false},
    {"parallel_zero", BASE "rollout: {parallel: 0}\n", 0, 5, 21,
     "rollout.parallel: 0 is out of range", NULL, false},
    {"healthy_after_zero", BASE "health:\n  healthy_after: 0\n", 0, 6, 18,
     "health.healthy_after: 0 is out of range", NULL, false},
    {"status_range", BASE "acceptance:\n  - request: {path: /}\n    expect: {status: 99}\n", 0, 7,
     22, "between 100 and 599", NULL, false},
    {"timeout_over_deadline", BASE "health:\n  timeout: 5s\n  start_deadline: 2s\n", 0, 6, 12,
     "health.timeout (5.0s) must not be longer than health.start_deadline (2.0s)", NULL, false},
    {"app_name", "app: My_App\nrun: {command: [a]}\nlisten: 1\n", 0, 1, 6,
     "app: \"My_App\" is not a valid app name", NULL, false},
    {"app_name_too_long", "app: a234567890123456789012345678901234567890123456789012345678901234\n",
     0, 1, 6, "is not a valid app name", NULL, false},
    {"acceptance_path", BASE "acceptance:\n  - request: {path: x}\n", 0, 6, 21,
     "must start with '/'", NULL, false},
    {"acceptance_method", BASE "acceptance:\n  - request: {method: FETCH, path: /}\n", 0, 6, 23,
     "is not one of GET, HEAD, POST", NULL, false},
    {"acceptance_body_map", BASE "acceptance:\n  - request: {path: /, body: {a: 1}}\n", 0, 6, 30,
     "quote JSON bodies", NULL, false},
    {"header_line_break", BASE "acceptance:\n  - request: {path: /, headers: {X-A: \"a\\nb\"}}\n",
     0, 6, 39, "must be one line", NULL, false},
    {"env_name", "app: x\nrun:\n  command: [a]\n  env: {1X: a}\nlisten: 1\n", 0, 4, 9,
     "run.env: \"1X\" is not a valid environment variable name", NULL, false},
    {"env_port_reserved", "app: x\nrun:\n  command: [a]\n  env: {PORT: 1}\nlisten: 1\n", 0, 4, 9,
     "is set by cairn for each instance", NULL, false},
    {"env_value_missing", "app: x\nrun:\n  command: [a]\n  env:\n    A:\nlisten: 1\n", 0, 5, 6,
     "run.env.A has no value", NULL, false},
    {"host_plain_string", BASE "hosts: [web1]\n", 0, 5, 9,
     "hosts[0]: \"web1\" is not a host; write local, or a mapping", NULL, false},
    {"host_missing_ssh", BASE "hosts:\n  - name: web1\n", 0, 6, 5,
     "missing required key \"ssh\" in hosts[0]", NULL, false},
    {"host_ssh_option", BASE "hosts: [{name: w, ssh: -oProxyCommand=x}]\n", 0, 5, 24,
     "is not an SSH destination", NULL, false},
    {"host_state_relative", BASE "hosts: [{name: w, ssh: a@b, state: var/cairn}]\n", 0, 5, 36,
     "hosts[0].state: \"var/cairn\" is not a usable state directory", NULL, false},
    {"host_state_shell", BASE "hosts: [{name: w, ssh: a@b, state: \"/x;rm\"}]\n", 0, 5, 36,
     "is not a usable state directory", NULL, false},
    {"host_state_long", BASE "hosts: [{name: w, ssh: a@b, state: /"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}]\n",
     0, 5, 36, "at most 90 characters", NULL, false},
    {"host_cairn_option", BASE "hosts: [{name: w, ssh: a@b, cairn: --help}]\n", 0, 5, 36,
     "hosts[0].cairn: \"--help\" is not a program", NULL, false},
    {"host_local_state", BASE "hosts: [{name: local, state: /x}]\n", 0, 5, 30,
     "hosts[0].state: the host named local is this machine", NULL, false},
    {"host_unknown_key_suggest", BASE "hosts: [{name: w, ssh: a@b, stat: /x}]\n", 0, 5, 29,
     "did you mean \"state\"?", NULL, false},
    {"hosts_empty", BASE "hosts: []\n", 0, 5, 8, "hosts is empty", NULL, false},
    {"stop_signal", "app: x\nrun:\n  command: [a]\n  stop_signal: SIGKILL\nlisten: 1\n", 0, 4, 16,
     "is not one of SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2", NULL, false},
    {"run_user_root", "app: x\nrun:\n  command: [a]\n  user: root\nlisten: 1\n", 0, 4, 9,
     "run.user: \"root\" is not a user an app may run as", NULL, false},
    {"run_user_uid0", "app: x\nrun:\n  command: [a]\n  user: 0\nlisten: 1\n", 0, 4, 9,
     "is not a user an app may run as", NULL, false},
    {"run_user_shell", "app: x\nrun:\n  command: [a]\n  user: \"a;b\"\nlisten: 1\n", 0, 4, 9,
     "is not a user an app may run as", NULL, false},
    {"pins_suggestion", BASE "build: {pins: requre}\n", 0, 5, 15,
     "build.pins: \"requre\" is not one of require, warn; did you mean \"require\"?", NULL, true},
    {"bool_yes", BASE "rollout: {auto_rollback: yes}\n", 0, 5, 26,
     "is not a boolean; write true or false", NULL, false},
    {"yaml_unclosed_quote", "app: x\nrun:\n  command: [a]\nlisten: \"8080\n", 0, 4, 9,
     "YAML syntax error", "closing quote", false},
    {"yaml_unclosed_bracket", "app: x\nrun:\n  command: [a, b\nlisten: 1\n", 0, 3, 12,
     "YAML syntax error", "this '[' is never closed", false},
    /* the form `cairn init` writes, quoted: libfyaml says "wrongly indented flow sequence" at
     * the next line; the user gets the opening '[' */
    {"yaml_unclosed_bracket_quoted",
     "app: x\nrun:\n  command: [\"python3\", \"app.py\"\nlisten: 8080\n", 0, 3, 12,
     "YAML syntax error", "this '[' is never closed", false},
    {"yaml_unclosed_brace", BASE "health: {interval: 1s\n", 0, 5, 9, "YAML syntax error",
     "this '{' is never closed", false},
    {"yaml_bad_indentation", "app: x\nrun:\n  command: [a]\n stop_timeout: 1s\nlisten: 1\n", 0, 4,
     2, "YAML syntax error", NULL, false},
    {"yaml_tab", "app: x\nrun:\n\tcommand: [a]\n", 0, 3, 1, "YAML syntax error", "tab", false},
    {"yaml_alias", BASE "hosts: &h [local]\ninstances: *h\n", 0, 6, 12, "aliases", NULL, false},
    {"yaml_two_documents", BASE "---\napp: y\n", 0, 5, 1, "a second YAML document", NULL, false},
    {"yaml_too_deep", BASE "build: {exclude: [[[[[[[[[[[[[[[[[[[[x]]]]]]]]]]]]]]]]]]]]}\n", 0, 5,
     32, "nested too deeply", NULL, false},
    {"empty_file", "", 0, 1, 1, "the file is empty", NULL, false},
    {"comments_only", "# nothing here\n\n", 0, 1, 1, "the file is empty", NULL, false},
    {"top_level_list", "- a\n- b\n", 0, 1, 1, "top level of cairn.yml must be a mapping",
     "found a list", false},
    {"top_level_scalar", "hello\n", 0, 1, 1, "top level of cairn.yml must be a mapping",
     "found a single value", false},
    {"nul_byte", "app: x\nrun:\n  command: [a\0]\n", 28, 3, 14, "NUL byte", NULL, false},
    {"yaml_bad_escape", "app: \"\\ud800\"\n", 0, 1, 6, "YAML syntax error", "escape", false},
    {"nul_escape", "app: \"x\\0y\"\n", 0, 1, 6, "NUL character", NULL, false},
    {"bad_utf8", "app: x\xff\n", 0, 1, 7, "not valid UTF-8", NULL, false},
    {"control_char", "app: x\x1b\n", 0, 1, 7, "control character 0x1b", NULL, false},
    {"key_not_scalar", "[a]: 1\n", 0, 1, 1, "keys must be plain words", NULL, false},
};

static void test_error_case(void **state)
{
	const struct error_case *k = *state;
	size_t len = k->len ? k->len : strlen(k->text);
	struct config *c = NULL;
	struct err e;
	int r = config_parse("t.yml", NULL, k->text, len, &c, &e);

	if (r >= 0)
		fail_msg("%s: parsed without an error", k->name);
	assert_null(c);
	assert_int_equal(r, -CAIRN_EINPUT);
	assert_int_equal(e.code, CAIRN_EINPUT);
	assert_string_equal(e.file, "t.yml");
	if (e.line != k->line || e.col != k->col)
		fail_msg("%s: at %d:%d, wanted %d:%d (%s)", k->name, e.line, e.col, k->line, k->col,
			 e.msg);
	if (k->exact)
		assert_string_equal(e.msg, k->want);
	else if (!strstr(e.msg, k->want))
		fail_msg("%s: message \"%s\" lacks \"%s\"", k->name, e.msg, k->want);
	if (k->want2 && !strstr(e.msg, k->want2))
		fail_msg("%s: message \"%s\" lacks \"%s\"", k->name, e.msg, k->want2);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_design_example),
	    cmocka_unit_test(test_values),
	    cmocka_unit_test(test_listen_forms),
	    cmocka_unit_test(test_single_quoted),
	    cmocka_unit_test(test_empty_sections),
	    cmocka_unit_test(test_percent),
	    cmocka_unit_test(test_signal_names),
	    cmocka_unit_test(test_json),
	    cmocka_unit_test(test_load),
	    cmocka_unit_test(test_starter_layouts),
	    cmocka_unit_test(test_starter_app_names),
	    cmocka_unit_test(test_starter_http),
	};
	enum { N = sizeof(error_cases) / sizeof(error_cases[0]) };
	struct CMUnitTest errors[N];
	int failed;

	for (size_t i = 0; i < N; i++)
		errors[i] = (struct CMUnitTest){error_cases[i].name, test_error_case, NULL, NULL,
						(void *)&error_cases[i]};
	failed = cmocka_run_group_tests_name("config", tests, NULL, NULL);
	failed += _cmocka_run_group_tests("config_errors", errors, N, NULL, NULL);
	return failed ? 1 : 0;
}
