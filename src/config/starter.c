/* config starter: the commented cairn.yml that `cairn init` writes. Guesses the app's name from
 * the directory and run.command (and build.command) from its layout; the text is parsed back
 * before it is returned, so a starter always passes `cairn check`. Reads files, writes none.
 * CLI-only: allocation failure dies (x* helpers). */
#include "config/config-internal.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define MANIFEST_MAX (1024 * 1024) /* package.json / Cargo.toml larger than this are ignored */

static char *join(const char *dir, const char *name)
{
	return fs_join(dir, name);
}

static bool has(const char *dir, const char *name)
{
	char *p = join(dir, name);
	bool r = fs_exists(p);
	free(p);
	return r;
}

/* The directory's name as an app name: lowercase, [a-z0-9_.-], starting with a letter or
 * digit, at most 63 characters; "app" when nothing is left. */
static char *app_name(const char *abs_dir)
{
	const char *base = strrchr(abs_dir, '/');
	char *out = xmalloc(64);
	size_t o = 0;

	base = base ? base + 1 : abs_dir;
	for (; *base && o < 63; base++) {
		char c = *base;
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr("_.-", c)))
			c = '-';
		if (o == 0 && !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
			continue;
		if (c == '-' && o > 0 && out[o - 1] == '-')
			continue;
		out[o++] = c;
	}
	while (o > 0 && strchr("_.-", out[o - 1]))
		o--;
	out[o] = '\0';
	if (!o)
		strcpy(out, "app");
	return out;
}

/* The Django project package: the first subdirectory (by name) holding wsgi.py. */
static char *django_module(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char *best = NULL;

	if (!d)
		return NULL;
	while ((de = readdir(d))) {
		const char *n = de->d_name;
		char *sub, *wsgi;
		bool ok =
		    (n[0] >= 'a' && n[0] <= 'z') || (n[0] >= 'A' && n[0] <= 'Z') || n[0] == '_';
		for (size_t i = 1; ok && n[i]; i++)
			ok = (n[i] >= 'a' && n[i] <= 'z') || (n[i] >= 'A' && n[i] <= 'Z') ||
			     (n[i] >= '0' && n[i] <= '9') || n[i] == '_';
		if (!ok || (best && strcmp(n, best) >= 0))
			continue;
		sub = join(dir, n);
		wsgi = join(sub, "wsgi.py");
		if (fs_exists(wsgi)) {
			free(best);
			best = xstrdup(n);
		}
		free(wsgi);
		free(sub);
	}
	closedir(d);
	return best;
}

/* package.json: "start" script → npm start; else "main" → node MAIN; else node index.js. */
static void guess_node(const char *dir, struct config_guess *g)
{
	char *path = join(dir, "package.json");
	struct buf b;
	json_t *pkg = NULL, *main_js;

	buf_init(&b, MANIFEST_MAX);
	if (fs_read_file(path, &b, NULL) == 0)
		pkg = json_loadb(buf_str(&b), b.len, 0, NULL);
	main_js = json_object_get(pkg, "main");
	if (json_is_string(json_object_get(json_object_get(pkg, "scripts"), "start"))) {
		strv_push(&g->run, "npm");
		strv_push(&g->run, "start");
	} else {
		strv_push(&g->run, "node");
		strv_push(&g->run, json_is_string(main_js) && json_string_length(main_js) > 0
				       ? json_string_value(main_js)
				       : "index.js");
	}
	if (has(dir, "package-lock.json")) {
		strv_push(&g->build, "npm");
		strv_push(&g->build, "ci");
	}
	json_decref(pkg);
	buf_done(&b);
	free(path);
}

/* Cargo.toml: the binary is target/release/<package name>. */
static void guess_rust(const char *dir, struct config_guess *g)
{
	char *path = join(dir, "Cargo.toml"), *bin = NULL;
	struct buf b;
	bool in_package = false;

	buf_init(&b, MANIFEST_MAX);
	if (fs_read_file(path, &b, NULL) == 0) {
		const char *line = buf_str(&b);
		while (*line && !bin) {
			const char *end = strchr(line, '\n');
			struct slice s = slice_trim(
			    (struct slice){line, end ? (size_t)(end - line) : strlen(line)});
			if (s.n && s.p[0] == '[') {
				in_package = slice_eq(s, "[package]");
			} else if (in_package && slice_starts(s, "name")) {
				const char *q1 = memchr(s.p, '"', s.n), *q2;
				q2 = q1 ? memchr(q1 + 1, '"', s.n - (size_t)(q1 + 1 - s.p)) : NULL;
				if (q2 && q2 > q1 + 1 && q2 - q1 < 64)
					bin = xstrndup(q1 + 1, (size_t)(q2 - q1 - 1));
			}
			line = end ? end + 1 : line + strlen(line);
		}
	}
	if (bin &&
	    strspn(bin, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") !=
		strlen(bin)) {
		free(bin);
		bin = NULL;
	}
	strv_push_owned(&g->run, xasprintf("./target/release/%s", bin ? bin : g->app));
	strv_push(&g->build, "cargo");
	strv_push(&g->build, "build");
	strv_push(&g->build, "--release");
	free(bin);
	buf_done(&b);
	free(path);
}

/* ---- does the app speak HTTP? ---------------------------------------------------------------- */

#define SCAN_FILES_MAX 64          /* files of the app's top directory read to decide */
#define SCAN_FILE_MAX (256 * 1024) /* larger files are skipped */

struct scanned {
	char *name; /* owned */
	struct buf text;
};

/* Markers of a web framework or HTTP server, per layout; matched as whole words (no letter,
 * digit or '_' on either side). */
static const char *const http_py[] = {
    "http.server", "BaseHTTPRequestHandler", "wsgiref", "flask",     "fastapi", "django",
    "aiohttp",     "bottle",                 "tornado", "starlette", "sanic",   "falcon",
    "pyramid",     "cherrypy",               "uvicorn", "gunicorn",  "waitress", "werkzeug",
    "eventlet.wsgi", "quart",                "litestar", NULL};
static const char *const http_node[] = {
    "http.createServer", "\"http\"", "'http'", "\"node:http\"", "'node:http'", "\"express\"",
    "'express'", "\"koa\"", "\"fastify\"", "'fastify'", "\"@hapi/hapi\"", "\"restify\"",
    "\"@nestjs/core\"", "\"next\"", "\"polka\"", "\"hono\"", NULL};
static const char *const http_go[] = {"\"net/http\"", "github.com/gin-gonic/gin",
				      "github.com/labstack/echo", "github.com/gofiber/fiber",
				      "github.com/go-chi/chi", NULL};
static const char *const http_rust[] = {"actix-web", "axum", "warp", "rocket", "hyper",
					"tide", "poem", "salvo", NULL};
/* Health routes looked for, quoted, in the same files, most specific first. */
static const char *const health_paths[] = {"/healthz", "/health", "/livez", "/readyz",
					   "/ready", "/ping", "/status", NULL};

static bool word_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_';
}

static bool has_word(const struct buf *t, const char *w)
{
	size_t n = strlen(w);
	const char *p = t->data, *end = t->data + t->len;
	while (p && (p = memmem(p, (size_t)(end - p), w, n))) {
		bool l = p == t->data || !word_char(p[-1]) || !word_char(w[0]);
		bool r = p + n == end || !word_char(p[n]) || !word_char(w[n - 1]);
		if (l && r)
			return true;
		p++;
	}
	return false;
}

static bool has_quoted(const struct buf *t, const char *path)
{
	char dq[64], sq[64];
	snprintf(dq, sizeof(dq), "\"%s\"", path);
	snprintf(sq, sizeof(sq), "'%s'", path);
	return t->len && (memmem(t->data, t->len, dq, strlen(dq)) ||
			  memmem(t->data, t->len, sq, strlen(sq)));
}

static void scan_add(struct scanned *sc, size_t *n, const char *dir, const char *name)
{
	char *path = join(dir, name);
	if (*n < SCAN_FILES_MAX + 2 && fs_exists(path) && !fs_is_dir(path)) {
		buf_init(&sc[*n].text, SCAN_FILE_MAX);
		if (fs_read_file(path, &sc[*n].text, NULL) == 0) {
			sc[*n].name = xstrdup(name);
			(*n)++;
		} else {
			buf_done(&sc[*n].text);
		}
	}
	free(path);
}

/* The app's own files that can tell: its sources in the top directory (sorted by name, so the
 * answer does not depend on readdir order) and its dependency manifest. */
static size_t scan_files(const char *dir, const char *layout, struct scanned *sc)
{
	const char *ext = !strcmp(layout, "python") || !strcmp(layout, "django") ? ".py"
			  : !strcmp(layout, "node")				 ? ".js"
			  : !strcmp(layout, "go")				 ? ".go"
										 : NULL;
	struct dirent **names = NULL;
	size_t n = 0;
	int k;

	if (!strcmp(layout, "python") || !strcmp(layout, "django")) {
		scan_add(sc, &n, dir, "requirements.txt");
		scan_add(sc, &n, dir, "pyproject.toml");
	} else if (!strcmp(layout, "node")) {
		scan_add(sc, &n, dir, "package.json");
	} else if (!strcmp(layout, "go")) {
		scan_add(sc, &n, dir, "go.mod");
	} else if (!strcmp(layout, "rust")) {
		scan_add(sc, &n, dir, "Cargo.toml");
	}
	if (!ext || (k = scandir(dir, &names, NULL, alphasort)) < 0)
		return n;
	for (int i = 0; i < k; i++) {
		const char *nm = names[i]->d_name;
		if (nm[0] != '.' && (str_ends(nm, ext) || (!strcmp(ext, ".js") &&
							   (str_ends(nm, ".mjs") || str_ends(nm, ".ts")))))
			scan_add(sc, &n, dir, nm);
		free(names[i]);
	}
	free(names);
	return n;
}

/* Fills g->http, g->http_why and g->http_route from the layout and the app's files. */
static void guess_http(const char *dir, struct config_guess *g)
{
	const char *const *markers = !strcmp(g->layout, "python")	? http_py
				     : !strcmp(g->layout, "node")	? http_node
				     : !strcmp(g->layout, "go")		? http_go
				     : !strcmp(g->layout, "rust")	? http_rust
									: NULL;
	struct scanned sc[SCAN_FILES_MAX + 2];
	size_t n = scan_files(dir, g->layout, sc);

	if (!strcmp(g->layout, "django"))
		g->http_why = xstrdup("Django (manage.py) serves HTTP through gunicorn");
	else if (!strcmp(g->layout, "ruby"))
		g->http_why = xstrdup("a Rack app (config.ru) serves HTTP through puma");
	for (size_t i = 0; markers && !g->http_why && i < n; i++)
		for (size_t m = 0; markers[m] && !g->http_why; m++)
			if (has_word(&sc[i].text, markers[m]))
				g->http_why = xasprintf("%s in %s", markers[m], sc[i].name);
	if (g->http_why) {
		g->http = "/";
		for (size_t h = 0; health_paths[h] && !g->http_route; h++)
			for (size_t i = 0; i < n && !g->http_route; i++)
				if (has_quoted(&sc[i].text, health_paths[h])) {
					g->http = health_paths[h];
					g->http_route = true;
				}
	}
	for (size_t i = 0; i < n; i++) {
		free(sc[i].name);
		buf_done(&sc[i].text);
	}
}

int config_starter_guess(const char *dir, struct config_guess *out, struct err *e)
{
	struct config_guess g = {0};
	char *abs = fs_realpath(dir, e), *mod;

	if (!abs)
		return -(e ? e->code : ENOENT);
	if (!fs_is_dir(abs)) {
		free(abs);
		return err_set(e, CAIRN_EINPUT, "%s is not a directory", dir);
	}
	g.app = app_name(abs);
	strv_init(&g.run);
	strv_init(&g.build);
	if (has(abs, "manage.py")) {
		g.layout = "django", g.found = "manage.py";
		mod = django_module(abs);
		strv_push(&g.run, "python3");
		strv_push(&g.run, "-m");
		strv_push(&g.run, "gunicorn");
		strv_push_owned(&g.run, xasprintf("%s.wsgi", mod ? mod : "mysite"));
		free(mod);
	} else if (has(abs, "app.py") || has(abs, "main.py")) {
		g.layout = "python", g.found = has(abs, "app.py") ? "app.py" : "main.py";
		strv_push(&g.run, "python3");
		strv_push(&g.run, g.found);
	} else if (has(abs, "package.json")) {
		g.layout = "node", g.found = "package.json";
		guess_node(abs, &g);
	} else if (has(abs, "Gemfile") && has(abs, "config.ru")) {
		g.layout = "ruby", g.found = "config.ru";
		strv_push(&g.run, "bundle");
		strv_push(&g.run, "exec");
		strv_push(&g.run, "puma");
		strv_push(&g.run, "-C");
		strv_push(&g.run, "config/puma.rb");
	} else if (has(abs, "go.mod")) {
		g.layout = "go", g.found = "go.mod";
		strv_push(&g.run, "./app");
		strv_push(&g.build, "go");
		strv_push(&g.build, "build");
		strv_push(&g.build, "-o");
		strv_push(&g.build, "app");
		strv_push(&g.build, ".");
	} else if (has(abs, "Cargo.toml")) {
		g.layout = "rust", g.found = "Cargo.toml";
		guess_rust(abs, &g);
	} else {
		g.layout = "unknown", g.found = NULL;
		strv_push(&g.run, "./start");
	}
	guess_http(abs, &g);
	free(abs);
	*out = g;
	return 0;
}

void config_guess_done(struct config_guess *g)
{
	free(g->app);
	free(g->http_why);
	strv_done(&g->run);
	strv_done(&g->build);
	memset(g, 0, sizeof(*g));
}

/* ---- text ------------------------------------------------------------------------------------ */

static void add_argv(struct buf *b, const struct strv *v)
{
	buf_addc(b, '[');
	for (size_t i = 0; i < v->n; i++) {
		if (i)
			buf_adds(b, ", ");
		buf_add_quoted(b, v->v[i]); /* JSON-style quoting is valid YAML double-quoting */
	}
	buf_addc(b, ']');
}

static const char *run_note(const struct config_guess *g, const char *dir)
{
	if (!strcmp(g->layout, "django"))
		return "  # gunicorn listens on 0.0.0.0:$PORT by itself when PORT is set;\n"
		       "  # add gunicorn (pinned: gunicorn==X.Y.Z) to requirements.txt.\n";
	if (!strcmp(g->layout, "python"))
		return "  # The program must listen on the port in $PORT: "
		       "int(os.environ[\"PORT\"]).\n";
	if (!strcmp(g->layout, "node"))
		return "  # The server must listen on process.env.PORT.\n";
	if (!strcmp(g->layout, "ruby"))
		return has(dir, "config/puma.rb")
			   ? "  # config/puma.rb must take the port from the environment:\n"
			     "  #   port ENV.fetch(\"PORT\")\n"
			   : "  # Create config/puma.rb with this line so each instance takes its "
			     "port:\n"
			     "  #   port ENV.fetch(\"PORT\")\n";
	if (!strcmp(g->layout, "go"))
		return "  # The binary built by build.command; it must listen on "
		       "os.Getenv(\"PORT\").\n";
	if (!strcmp(g->layout, "rust"))
		return "  # The binary built by build.command; it must listen on the port in\n"
		       "  # std::env::var(\"PORT\").\n";
	return "  # Edit this: the program and its arguments that start your service. It must\n"
	       "  # listen on the port in $PORT.\n";
}

static const char *build_example(const struct config_guess *g)
{
	if (!strcmp(g->layout, "python") || !strcmp(g->layout, "django"))
		return "e.g. [\"pip3\", \"install\", \"--target\", \"vendor\", \"-r\", "
		       "\"requirements.txt\"]";
	if (!strcmp(g->layout, "ruby"))
		return "e.g. [\"bundle\", \"install\"]";
	if (!strcmp(g->layout, "node"))
		return "e.g. [\"npm\", \"ci\"]";
	return "e.g. [\"make\"]";
}

static void write_starter(struct buf *b, const struct config_guess *g, const char *dir)
{
	bool python = !strcmp(g->layout, "python") || !strcmp(g->layout, "django");

	buf_addf(b, "# cairn.yml for %s, written by 'cairn init'", g->app);
	if (g->found)
		buf_addf(b, " (a %s app: found %s)", g->layout, g->found);
	buf_adds(b, ".\n# Check it with 'cairn check'; docs/config.md describes every key.\n\n");
	buf_adds(b, "# The app's name: lowercase letters, digits, '_', '.' and '-' (required).\n");
	buf_addf(b, "app: %s%s%s\n\n", strcmp(g->app, "null") ? "" : "\"", g->app,
		 strcmp(g->app, "null") ? "" : "\"");

	buf_adds(b, "# build: what 'cairn build' does to turn this directory into a release.\n"
		    "build:\n"
		    "  # argv run once in a scratch copy of this directory (never here, never\n"
		    "  # through a shell); the release is what it leaves there (default: nothing\n"
		    "  # is run).\n");
	buf_adds(b, "  command: ");
	add_argv(b, &g->build);
	if (!g->build.n)
		buf_addf(b, "  # %s", build_example(g));
	buf_adds(b,
		 "\n  # Paths left out of the release (default: [\".git\", \"__pycache__\"]).\n"
		 "  exclude: [\".git\", \"__pycache__\"]\n"
		 "  # require: refuse to build while a dependency is unpinned; warn: build anyway\n"
		 "  # (default: require).\n"
		 "  pins: require\n\n");

	buf_adds(
	    b, "# run: how each instance starts. cairn gives every instance a port of its own in\n"
	       "# the PORT environment variable. Arguments are passed as they are (no shell,\n"
	       "# no $PORT expansion), so the program reads PORT from its environment.\n"
	       "run:\n");
	buf_adds(b, run_note(g, dir));
	buf_adds(b, "  command: ");
	add_argv(b, &g->run);
	buf_adds(b, "\n  # Extra environment variables, NAME: value (default: none).\n");
	buf_adds(b, python ? "  env: { PYTHONUNBUFFERED: \"1\" }\n" : "  env: {}\n");
	buf_adds(b, "  # Time from stop_signal to SIGKILL when an instance stops (default: 10s).\n"
		    "  stop_timeout: 10s\n"
		    "  # SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1 or SIGUSR2 (default: SIGTERM).\n"
		    "  stop_signal: SIGTERM\n\n");

	buf_adds(b,
		 "# listen: the port of cairn's proxy on each host; clients connect here and it\n"
		 "# forwards to the live instances (required). 8080 means 127.0.0.1:8080; write\n"
		 "# \"0.0.0.0:8080\" to take connections from other machines.\n"
		 "listen: 8080\n\n"
		 "# hosts: where instances run: local, or hosts reached over SSH written as\n"
		 "# {name: web1, ssh: deploy@10.0.0.5} (default: [local]).\n"
		 "hosts: [local]\n"
		 "# instances: processes per host, 1 to 64 (default: 1).\n"
		 "instances: 1\n\n");

	buf_adds(b, "# health: how cairn tells that an instance is up.\n"
		    "health:\n");
	if (g->http) {
		buf_addf(b,
			 "  # cairn init found %s: the app speaks HTTP. With http set, cairn's\n"
			 "  # proxy runs in HTTP mode and the bake judges every answer (5xx, p99).\n",
			 g->http_why);
		if (g->http_route)
			buf_addf(b, "  # %s is a route found in the app's files; it must answer 2xx.\n",
				 g->http);
		else
			buf_adds(b, "  # No health route was found in the app's files: / must answer 2xx,\n"
				    "  # or point this at a path that does (e.g. /healthz).\n");
		buf_addf(b, "  http: %s\n", g->http);
	} else {
		buf_adds(b,
			 "  # A path probed with GET that answers 2xx. cairn init found no web framework\n"
			 "  # or HTTP server in the app's files, so it is left out: health is a TCP\n"
			 "  # connect, the proxy runs in TCP mode and the bake sees connections, not\n"
			 "  # answers (a release answering 500 to every request passes it). If the app\n"
			 "  # speaks HTTP, set this.\n"
			 "  # http: /healthz\n");
	}
	buf_adds(b,
		 "  interval: 1s         # between probes (default: 1s)\n"
		 "  timeout: 2s          # one probe's time limit (default: 2s)\n"
		 "  healthy_after: 2     # passing probes in a row (default: 2)\n"
		 "  start_deadline: 60s  # not healthy by then: the deploy fails (default: 60s)\n\n");

	buf_adds(
	    b,
	    "# acceptance: requests sent to a new release before it takes traffic; every\n"
	    "# one must pass or the deploy stops (default: none). The bake repeats them\n"
	    "# when users sent too few requests to judge, so keep them safe to repeat.\n"
	    "# For example:\n"
	    "acceptance:\n"
	    "  # - name: home\n"
	    "  #   request: { method: GET, path: / }\n"
	    "  #   expect:  { status: 200, body_contains: \"<title>\", max_latency: 500ms }\n\n");

	buf_adds(
	    b, "# rollout: how traffic moves to a new release.\n"
	       "rollout:\n"
	       "  parallel: 1          # hosts switched at a time (default: 1)\n"
	       "  bake: 30s            # real traffic watched before old instances stop "
	       "(default: 30s)\n"
	       "  # Crossing a gate during the bake fails the deploy.\n"
	       "  gates:\n"
	       "    max_error_rate: 1%  # share of 5xx answers and failed requests (default: 1%)\n"
	       "    # max_p99: 500ms    # p99 latency bound (default: none)\n"
	       "    # max_p99_ratio: 2  # p99 at most 2x the previous release's (default: none)\n"
	       "    min_requests: 20    # fewer requests than this cannot be judged (default: 20)\n"
	       "  auto_rollback: true  # put the last good release back by itself (default: "
	       "true)\n"
	       "  # A bake that saw too few requests, even after repeating the acceptance\n"
	       "  # checks, cannot judge: fail the deploy (fail) or pass it marked unjudged\n"
	       "  # (pass) (default: fail).\n"
	       "  unjudged: fail\n");
}

int config_starter(const char *dir, struct buf *b, struct err *e)
{
	struct config_guess g;
	struct config *c = NULL;
	struct buf text;
	char *path;
	int r = config_starter_guess(dir, &g, e);

	if (r < 0)
		return r;
	buf_init(&text, CONFIG_MAX_BYTES);
	write_starter(&text, &g, dir);
	path = join(dir, CONFIG_DEFAULT_NAME);
	r = config_parse(path, dir, buf_str(&text), text.len, &c, e);
	if (r < 0)
		err_prefix(e, "the starter cairn.yml does not parse (a bug in cairn init)");
	else if ((r = buf_add(b, buf_str(&text), text.len)) < 0)
		r = err_set(e, -r, "the starter cairn.yml does not fit the buffer");
	config_free(c);
	free(path);
	buf_done(&text);
	config_guess_done(&g);
	return r;
}
