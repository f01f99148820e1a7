/* config schema: the sections of cairn.yml → struct config, defaults filled in, every value
 * checked where it is read (ranges, names, paths) and the few cross-field rules after.
 * The YAML tree and the typed readers live in parse.c and read.c; this file only knows keys. */
#include "config/config-internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static const char *const signal_names[] = {"SIGTERM", "SIGINT",	 "SIGQUIT", "SIGHUP",
					   "SIGUSR1", "SIGUSR2", NULL};
static const int signal_numbers[] = {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2};

const char *config_signal_name(int sig)
{
	for (size_t i = 0; i < ARRAY_SIZE(signal_numbers); i++)
		if (signal_numbers[i] == sig)
			return signal_names[i];
	return NULL;
}

/* ---- names ----------------------------------------------------------------------------------- */

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

/* [a-z0-9][a-z0-9_.-]{0,62}, or with `upper` also A-Z. */
static bool valid_name(const char *s, bool upper)
{
	size_t i;
	if (!(upper ? is_alnum(s[0]) : is_lower_alnum(s[0])))
		return false;
	for (i = 1; s[i]; i++)
		if (!(upper ? is_alnum(s[i]) : is_lower_alnum(s[i])) && !strchr("_.-", s[i]))
			return false;
	return i <= 63;
}

static const char *env_key_check(const char *k)
{
	if (!((k[0] >= 'A' && k[0] <= 'Z') || (k[0] >= 'a' && k[0] <= 'z') || k[0] == '_'))
		goto bad;
	for (size_t i = 1; k[i]; i++)
		if (!is_alnum(k[i]) && k[i] != '_')
			goto bad;
	if (!strcmp(k, "PORT"))
		return "is set by cairn for each instance (the port it must listen on); remove it";
	return NULL;
bad:
	return "is not a valid environment variable name: use letters, digits and '_', "
	       "not starting with a digit";
}

/* An OpenSSH destination: [user@]host, never starting with '-' (it would be an option). */
static bool valid_ssh(const char *s)
{
	const char *at = strchr(s, '@'), *host = at ? at + 1 : s;
	size_t n = strlen(s);

	if (n == 0 || n > 255 || s[0] == '-' || at == s || (at && strchr(at + 1, '@')))
		return false;
	if (!host[0] || host[0] == '-' || host[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_alnum(s[i]) && !strchr("@._-:", s[i]))
			return false;
	return true;
}

/* A remote path cairn passes on: absolute (state) or a command name/path (cairn), printable,
 * no spaces or shell metacharacters to surprise anyone reading a process list. */
static bool valid_remote_path(const char *s, bool absolute)
{
	if (!s[0] || s[0] == '-' || (absolute && s[0] != '/'))
		return false;
	for (const char *c = s; *c; c++)
		if (!is_alnum(*c) && !strchr("/._-+~", *c))
			return false;
	return true;
}

/* ---- sections -------------------------------------------------------------------------------- */

static int parse_app(struct cfg_parse *p, struct config *c, const struct cnode *n)
{
	char q[CONFIG__QUOTE_BUF];
	int r = config__str(p, n, "app", &c->app);

	if (r == 0 && !name_app_ok(c->app, strlen(c->app)))
		return config__err(
		    p, n,
		    "app: %s is not a valid app name: use lowercase letters, digits, "
		    "'_', '.' and '-', starting with a letter or digit, at most 63 "
		    "characters (e.g. urlshort)",
		    config__quote(n->text, q));
	return r;
}

static int parse_build(struct cfg_parse *p, struct config *c, const struct cnode *n)
{
	static const char *const keys[] = {"command", "exclude", "pins", NULL};
	static const char *const pins[] = {"require", "warn", NULL};
	const struct cnode *v[3];
	int r = config__fields(p, n, "build", keys, v), pin = 0;

	if (r == 0 && v[0])
		r = config__argv(p, v[0], "build.command", false, "[\"make\", \"vendor\"]",
				 &c->build.command);
	if (r == 0 && v[1])
		r = config__list(p, v[1], "build.exclude", &c->build.exclude);
	if (r == 0 && !v[1]) {
		static const char *const dflt[] = {".git", "__pycache__"};
		c->build.exclude.v = calloc(ARRAY_SIZE(dflt) + 1, sizeof(char *));
		for (size_t i = 0; c->build.exclude.v && i < ARRAY_SIZE(dflt); i++)
			if ((c->build.exclude.v[i] = strdup(dflt[i])))
				c->build.exclude.n++;
		if (c->build.exclude.n != ARRAY_SIZE(dflt))
			r = err_set(p->e, ENOMEM, "out of memory");
	}
	if (r == 0 && v[2])
		r = config__enum(p, v[2], "build.pins", pins, &pin);
	c->build.pins = pin == 1 ? CONFIG_PINS_WARN : CONFIG_PINS_REQUIRE;
	return r;
}

static int parse_run(struct cfg_parse *p, struct config *c, const struct cnode *root,
		     const struct cnode *n)
{
	static const char *const keys[] = {"command", "env", "stop_timeout", "stop_signal",
					   "user", NULL};
	static const char *const example = "[\"python3\", \"app.py\"]";
	const struct cnode *v[5];
	int r = config__fields(p, n, "run", keys, v), sig;

	if (r < 0)
		return r;
	if (!v[0])
		return n && !config__is_null(n)
			   ? config__missing(p, n, "run", "command",
					     "command: [\"python3\", \"app.py\"]")
			   : config__missing(p, n ? n : root, "", "run.command",
					     "run: {command: [\"python3\", \"app.py\"]}");
	r = config__argv(p, v[0], "run.command", true, example, &c->run.command);
	if (r == 0 && v[1])
		r = config__strmap(p, v[1], "run.env", env_key_check, false, strcmp, &c->run.env,
				   &c->run.n_env);
	if (r == 0 && v[2])
		r = config__duration(p, v[2], "run.stop_timeout", &c->run.stop_timeout_ms);
	if (r == 0 && v[3]) {
		r = config__enum(p, v[3], "run.stop_signal", signal_names, &sig);
		if (r == 0)
			c->run.stop_signal = signal_numbers[sig];
	}
	if (r == 0 && v[4]) {
		char q[CONFIG__QUOTE_BUF];
		r = config__str(p, v[4], "run.user", &c->run.user);
		if (r == 0 && !proc_run_user_ok(c->run.user))
			r = config__err(p, v[4],
					"run.user: %s is not a user an app may run as: write a user "
					"name (e.g. www-data) or a uid other than root's, or leave it "
					"out for a dedicated user per app",
					config__quote(v[4]->text, q));
	}
	return r;
}

static int listen_err(struct cfg_parse *p, const struct cnode *n)
{
	char q[CONFIG__QUOTE_BUF];
	return config__err(p, n,
			   "listen: %s is not a port or HOST:PORT; write e.g. 8080 or "
			   "\"127.0.0.1:8080\" (IPv6: \"[::1]:8080\")",
			   config__quote(n->text, q));
}

static int parse_listen(struct cfg_parse *p, struct config *c, const struct cnode *n)
{
	const char *s = n->text, *colon, *host = s;
	size_t hlen;
	char hbuf[256];
	unsigned char addr[16];
	int port;

	if (n->kind != CNODE_SCALAR || config__is_null(n))
		return config__type_err(p, n, "listen",
					"a port or HOST:PORT, e.g. 8080 or \"127.0.0.1:8080\"");
	if (config__is_uint(s) || s[0] == '-')
		return config__int(p, n, "listen", 1, 65535, &c->listen_port);
	colon = strrchr(s, ':');
	if (!colon || colon == s || !config__is_uint(colon + 1) || strlen(colon + 1) > 5)
		return listen_err(p, n);
	hlen = (size_t)(colon - s);
	if (s[0] == '[') {
		if (hlen < 3 || s[hlen - 1] != ']')
			return listen_err(p, n);
		host = s + 1;
		hlen -= 2;
	}
	if (hlen >= sizeof(hbuf))
		return listen_err(p, n);
	memcpy(hbuf, host, hlen);
	hbuf[hlen] = '\0';
	if (host != s ? inet_pton(AF_INET6, hbuf, addr) != 1
		      : inet_pton(AF_INET, hbuf, addr) != 1 &&
			    (strchr(hbuf, ':') || hbuf[0] == '-' || hbuf[0] == '.' ||
			     strspn(hbuf, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					  "0123456789.-") != hlen))
		return listen_err(p, n);
	port = atoi(colon + 1);
	if (port < 1 || port > 65535)
		return config__err(p, n,
				   "listen: port %d is out of range; it must be between 1 and "
				   "65535",
				   port);
	c->listen_port = port;
	return config__set_str(p, &c->listen_host, hbuf);
}

static int parse_host(struct cfg_parse *p, struct config_host *h, const struct cnode *n,
		      const char *path)
{
	static const char *const keys[] = {"name", "ssh", "state", "cairn", NULL};
	char q[CONFIG__QUOTE_BUF], sub[CONFIG__PATH_MAX];
	const struct cnode *v[4];
	int r;

	if (n->kind == CNODE_SCALAR && !strcmp(n->text, "local"))
		return config__set_str(p, &h->name, "local");
	if (n->kind == CNODE_SCALAR && !config__is_null(n)) {
		const char *at = strchr(n->text, '@');
		config__quote(n->text, q);
		return config__err(p, n,
				   "%s: %s is not a host; write local, or a mapping for a host "
				   "reached over SSH, e.g. {name: %s, ssh: %s}",
				   path, q, at && valid_name(at + 1, true) ? at + 1 : "web1",
				   at ? q : "deploy@10.0.0.5");
	}
	r = config__fields(p, n, path, keys, v);
	if (r < 0)
		return r;
	if (!v[0])
		return config__missing(p, n, path, "name", "{name: web1, ssh: deploy@10.0.0.5}");
	config__path(sub, path, "name");
	r = config__str(p, v[0], sub, &h->name);
	if (r == 0 && !valid_name(h->name, true))
		return config__err(p, v[0],
				   "%s: %s is not a valid host name: use letters, digits, '_', '.' "
				   "and '-' (at most 63)",
				   sub, config__quote(h->name, q));
	if (r == 0 && !strcmp(h->name, "local") && (v[1] || v[2] || v[3])) {
		const char *k = v[1] ? "ssh" : v[2] ? "state" : "cairn";
		return config__err(p, v[1] ? v[1] : v[2] ? v[2] : v[3],
				   "%s.%s: the host named local is this machine; give a "
				   "host reached over SSH another name",
				   path, k);
	}
	if (r == 0 && strcmp(h->name, "local") && !v[1])
		return config__missing(p, n, path, "ssh", "ssh: deploy@10.0.0.5");
	if (r == 0 && v[1]) {
		config__path(sub, path, "ssh");
		r = config__str(p, v[1], sub, &h->ssh);
		if (r == 0 && !valid_ssh(h->ssh))
			return config__err(p, v[1],
					   "%s: %s is not an SSH destination; write user@host "
					   "(a name from ~/.ssh/config works too)",
					   sub, config__quote(h->ssh, q));
	}
	if (r < 0 || !h->ssh)
		return r;
	config__path(sub, path, "state");
	if (!v[2])
		r = config__set_str(p, &h->state, CONFIG_REMOTE_STATE);
	else if ((r = config__str(p, v[2], sub, &h->state)) == 0 &&
		 (!valid_remote_path(h->state, true) || strlen(h->state) > CONFIG_REMOTE_STATE_MAX))
		return config__err(p, v[2],
				   "%s: %s is not a usable state directory: write an absolute path "
				   "of letters, digits and /._-+~ (at most %d characters, so that "
				   "<state>/agent.sock fits a unix socket)",
				   sub, config__quote(h->state, q), CONFIG_REMOTE_STATE_MAX);
	config__path(sub, path, "cairn");
	if (r < 0)
		return r;
	if (!v[3])
		r = config__set_str(p, &h->cairn, "cairn");
	else if ((r = config__str(p, v[3], sub, &h->cairn)) == 0 &&
		 !valid_remote_path(h->cairn, false))
		return config__err(p, v[3],
				   "%s: %s is not a program: write the path of cairn on that host "
				   "(letters, digits and /._-+~), e.g. /usr/local/bin/cairn",
				   sub, config__quote(h->cairn, q));
	return r;
}

static int parse_hosts(struct cfg_parse *p, struct config *c, const struct cnode *n)
{
	char path[CONFIG__PATH_MAX], q[CONFIG__QUOTE_BUF];
	const struct cnode *item;
	size_t i = 0;
	int r = 0;

	if (n->kind != CNODE_SEQ)
		return config__type_err(
		    p, n, "hosts", "a list, e.g. [local] or [{name: web1, ssh: deploy@10.0.0.5}]");
	if (n->n == 0)
		return config__err(p, n, "hosts is empty; write [local] or list your hosts");
	if (n->n > CONFIG_HOSTS_MAX)
		return config__err(p, n, "hosts has %zu entries; at most %d are allowed", n->n,
				   CONFIG_HOSTS_MAX);
	c->hosts = calloc(n->n, sizeof(*c->hosts));
	if (!c->hosts)
		return err_set(p->e, ENOMEM, "out of memory");
	for (item = n->first; item && r == 0; item = item->next, i++) {
		config__path_index(path, "hosts", i);
		c->n_hosts = i + 1;
		r = parse_host(p, &c->hosts[i], item, path);
		for (size_t j = 0; r == 0 && j < i; j++)
			if (!strcmp(c->hosts[j].name, c->hosts[i].name))
				r = config__err(
				    p, item, "%s: host name %s is used twice; names must be unique",
				    path, config__quote(c->hosts[i].name, q));
	}
	return r;
}

static int positive(struct cfg_parse *p, const struct cnode *n, const char *path, int64_t v)
{
	if (v <= 0)
		return config__err(p, n, "%s must be more than 0", path);
	return 0;
}

static int parse_health(struct cfg_parse *p, struct config *c, const struct cnode *n)
{
	static const char *const keys[] = {"http",	    "interval",	      "timeout",
					   "healthy_after", "start_deadline", NULL};
	char q[CONFIG__QUOTE_BUF];
	const struct cnode *v[5];
	int r = config__fields(p, n, "health", keys, v);

	if (r == 0 && v[0] && !config__is_null(v[0])) {
		r = config__str(p, v[0], "health.http", &c->health.http);
		if (r == 0 && !config__is_http_path(c->health.http))
			return config__err(p, v[0],
					   "health.http: %s is not a URL path; write one starting "
					   "with '/', e.g. /healthz",
					   config__quote(c->health.http, q));
	}
	if (r == 0 && v[1])
		r = config__duration(p, v[1], "health.interval", &c->health.interval_ms);
	if (r == 0 && v[1])
		r = positive(p, v[1], "health.interval", c->health.interval_ms);
	if (r == 0 && v[2])
		r = config__duration(p, v[2], "health.timeout", &c->health.timeout_ms);
	if (r == 0 && v[2])
		r = positive(p, v[2], "health.timeout", c->health.timeout_ms);
	if (r == 0 && v[3])
		r = config__int(p, v[3], "health.healthy_after", 1, 1000, &c->health.healthy_after);
	if (r == 0 && v[4])
		r = config__duration(p, v[4], "health.start_deadline",
				     &c->health.start_deadline_ms);
	if (r == 0 && v[4])
		r = positive(p, v[4], "health.start_deadline", c->health.start_deadline_ms);
	if (r == 0 && c->health.timeout_ms > c->health.start_deadline_ms) {
		char t[32], d[32];
		time_fmt_duration(c->health.timeout_ms, t, sizeof(t));
		time_fmt_duration(c->health.start_deadline_ms, d, sizeof(d));
		return config__err(
		    p,
		    v[2]   ? v[2]
		    : v[4] ? v[4]
			   : n,
		    "health.timeout (%s) must not be longer than health.start_deadline "
		    "(%s): a probe could never finish inside the deadline",
		    t, d);
	}
	return r;
}

static int parse_rollout(struct cfg_parse *p, struct config *c, const struct cnode *n)
{
	static const char *const keys[] = {"parallel", "bake", "gates",
					   "auto_rollback", "unjudged", NULL};
	static const char *const gate_keys[] = {"max_error_rate", "max_p99", "max_p99_ratio",
						"min_requests", NULL};
	static const char *const unjudged[] = {"fail", "pass", NULL};
	const struct cnode *v[5], *g[4];
	int r = config__fields(p, n, "rollout", keys, v);

	if (r == 0 && v[0])
		r = config__int(p, v[0], "rollout.parallel", 1, CONFIG_HOSTS_MAX,
				&c->rollout.parallel);
	if (r == 0 && v[1])
		r = config__duration(p, v[1], "rollout.bake", &c->rollout.bake_ms);
	if (r == 0)
		r = config__fields(p, v[2], "rollout.gates", gate_keys, g);
	if (r == 0 && g[0])
		r = config__percent(p, g[0], "rollout.gates.max_error_rate",
				    &c->rollout.max_error_rate);
	if (r == 0 && g[1])
		r = config__duration(p, g[1], "rollout.gates.max_p99", &c->rollout.max_p99_ms);
	if (r == 0 && g[2])
		r = config__number(p, g[2], "rollout.gates.max_p99_ratio",
				   &c->rollout.max_p99_ratio);
	if (r == 0 && g[2] && c->rollout.max_p99_ratio != 0 && c->rollout.max_p99_ratio < 1.0)
		return config__err(
		    p, g[2],
		    "rollout.gates.max_p99_ratio must be at least 1 (new p99 at most "
		    "RATIO × the old one), or 0 for no bound");
	if (r == 0 && g[3])
		r = config__int(p, g[3], "rollout.gates.min_requests", 1, 1000000000,
				&c->rollout.min_requests);
	if (r == 0 && v[3])
		r = config__bool(p, v[3], "rollout.auto_rollback", &c->rollout.auto_rollback);
	if (r == 0 && v[4]) {
		int k = 0;
		if ((r = config__enum(p, v[4], "rollout.unjudged", unjudged, &k)) == 0)
			c->rollout.unjudged_pass = k == 1;
	}
	return r;
}

/* ---- the whole file -------------------------------------------------------------------------- */

static int set_defaults(struct cfg_parse *p, struct config *c)
{
	c->run.stop_timeout_ms = 10000;
	c->run.stop_signal = SIGTERM;
	c->instances = 1;
	c->health.interval_ms = 1000;
	c->health.timeout_ms = 2000;
	c->health.healthy_after = 2;
	c->health.start_deadline_ms = 60000;
	c->rollout.parallel = 1;
	c->rollout.bake_ms = 30000;
	c->rollout.max_error_rate = 0.01;
	c->rollout.min_requests = 20;
	c->rollout.auto_rollback = true;
	return config__set_str(p, &c->listen_host, "127.0.0.1");
}

static int parse_root(struct cfg_parse *p, struct config *c, const struct cnode *root)
{
	static const char *const keys[] = {"app",	"build",  "run",	"listen",  "hosts",
					   "instances", "health", "acceptance", "rollout", "faults",
					   NULL};
	enum { APP, BUILD, RUN, LISTEN, HOSTS, INSTANCES, HEALTH, ACCEPTANCE, ROLLOUT, FAULTS };
	const struct cnode *v[10];
	bool only_faults = true;
	int r;

	if (root->kind != CNODE_MAP)
		return config__err(
		    p, root,
		    "the top level of cairn.yml must be a mapping of keys (app:, run:, "
		    "listen:, ...); found %s",
		    root->kind == CNODE_SEQ ? "a list" : "a single value");
	r = config__fields(p, root, "", keys, v);
	if (r < 0)
		return r;
	for (int i = APP; i < FAULTS; i++)
		only_faults &= !v[i];
	if (p->faults_only_ok && only_faults && v[FAULTS]) {
		c->faults_only = true;
		return config__faults(p, c, v[FAULTS]);
	}
	if (!v[APP])
		return config__missing(p, root, "", "app", "app: urlshort");
	r = parse_app(p, c, v[APP]);
	if (r == 0)
		r = parse_build(p, c, v[BUILD]);
	if (r == 0)
		r = parse_run(p, c, root, v[RUN]);
	if (r == 0 && !v[LISTEN])
		return config__missing(p, root, "", "listen",
				       "listen: 8080 (the port of cairn's proxy on each host)");
	if (r == 0)
		r = parse_listen(p, c, v[LISTEN]);
	if (r == 0 && v[HOSTS] && !config__is_null(v[HOSTS]))
		r = parse_hosts(p, c, v[HOSTS]);
	if (r == 0 && !c->hosts) {
		c->hosts = calloc(1, sizeof(*c->hosts));
		if (!c->hosts)
			return err_set(p->e, ENOMEM, "out of memory");
		c->n_hosts = 1;
		r = config__set_str(p, &c->hosts[0].name, "local");
	}
	if (r == 0 && v[INSTANCES])
		r = config__int(p, v[INSTANCES], "instances", 1, CONFIG_INSTANCES_MAX,
				&c->instances);
	if (r == 0)
		r = parse_health(p, c, v[HEALTH]);
	if (r == 0 && v[ACCEPTANCE])
		r = config__acceptance(p, c, v[ACCEPTANCE]);
	if (r == 0)
		r = parse_rollout(p, c, v[ROLLOUT]);
	if (r == 0 && v[FAULTS])
		r = config__faults(p, c, v[FAULTS]);
	return r;
}

static int parse_any(const char *name, const char *dir, const char *text, size_t len,
		     bool faults_only_ok, struct config **out, struct err *e)
{
	struct cfg_parse p = {.file = name ? name : CONFIG_DEFAULT_NAME, .e = e,
			      .faults_only_ok = faults_only_ok};
	struct cnode *root = NULL;
	struct config *c;
	int r;

	if (len > CONFIG_MAX_BYTES)
		return err_set_at(e, CAIRN_EINPUT, p.file, 0, 0,
				  "is larger than %d bytes; is this the right file?",
				  CONFIG_MAX_BYTES);
	c = calloc(1, sizeof(*c));
	if (!c)
		return err_set(e, ENOMEM, "out of memory");
	r = config__set_str(&p, &c->file, p.file);
	if (r == 0 && !(c->dir = realpath(dir ? dir : ".", NULL)))
		r = err_set(e, errno, "directory of %s: %s: %s", p.file, dir ? dir : ".",
			    strerror(errno));
	if (r == 0)
		r = set_defaults(&p, c);
	if (r == 0)
		r = config__parse_yaml(&p, text, len, &root);
	if (r == 0)
		r = parse_root(&p, c, root);
	config__parse_done(&p);
	if (r < 0) {
		config_free(c);
		return r;
	}
	*out = c;
	return 0;
}

int config_parse(const char *name, const char *dir, const char *text, size_t len,
		 struct config **out, struct err *e)
{
	return parse_any(name, dir, text, len, false, out, e);
}

int config_parse_faults(const char *name, const char *text, size_t len, struct config **out,
			struct err *e)
{
	return parse_any(name, NULL, text, len, true, out, e);
}

static int load(const char *path, bool faults_only_ok, struct config **out, struct err *e)
{
	struct buf b;
	char *dir;
	const char *slash = strrchr(path, '/');
	int r;

	buf_init(&b, CONFIG_MAX_BYTES);
	r = fs_read_file(path, &b, e);
	if (r == -E2BIG)
		r = err_set_at(e, CAIRN_EINPUT, path, 0, 0,
			       "is larger than %d bytes; is this the right file?",
			       CONFIG_MAX_BYTES);
	if (r < 0) {
		buf_done(&b);
		return r;
	}
	dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
	if (!dir) {
		buf_done(&b);
		return err_set(e, ENOMEM, "out of memory");
	}
	r = parse_any(path, dir, buf_str(&b), b.len, faults_only_ok, out, e);
	free(dir);
	buf_done(&b);
	return r;
}

int config_load(const char *path, struct config **out, struct err *e)
{
	return load(path, false, out, e);
}

int config_load_faults(const char *path, struct config **out, struct err *e)
{
	return load(path, true, out, e);
}

void config_free(struct config *c)
{
	if (!c)
		return;
	free(c->file);
	free(c->dir);
	free(c->app);
	strv_done(&c->build.command);
	strv_done(&c->build.exclude);
	strv_done(&c->run.command);
	config__kv_free(c->run.env, c->run.n_env);
	free(c->run.user);
	free(c->listen_host);
	for (size_t i = 0; c->hosts && i < c->n_hosts; i++) {
		free(c->hosts[i].name);
		free(c->hosts[i].ssh);
		free(c->hosts[i].state);
		free(c->hosts[i].cairn);
	}
	free(c->hosts);
	free(c->health.http);
	for (size_t i = 0; c->acceptance && i < c->n_acceptance; i++) {
		struct config_check *k = &c->acceptance[i];
		free(k->name);
		free(k->method);
		free(k->path);
		free(k->body);
		for (size_t j = 0; j < k->n_headers; j++) {
			free(k->headers[j].name);
			free(k->headers[j].value);
		}
		free(k->headers);
		free(k->expect_body_contains);
	}
	free(c->acceptance);
	config__faults_free(c);
	free(c);
}
