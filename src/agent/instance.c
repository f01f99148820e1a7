/* instance: one supervised process of a release — spawning it as its app's user (appuser.c)
 * with its log writer, on a free loopback port; watching its exit through a pidfd; carrying out
 * the supervisor table's actions (backoff timer, stop signal, SIGKILL of the group). Every
 * process started here is recorded in the instance table before anything else can happen to it. */
#include "agent/agent-internal.h"

#include "release/release.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static int64_t now_ms(void)
{
	return time_mono_ns() / 1000000;
}

struct instance *agent_find(struct agent *ag, const char *app, const char *iid)
{
	for (struct instance *in = ag->inst; in; in = in->next)
		if (!strcmp(in->id, iid) && (!app || !strcmp(in->app, app)))
			return in;
	return NULL;
}

size_t agent_count(const struct agent *ag, const char *app)
{
	size_t n = 0;
	for (const struct instance *in = ag->inst; in; in = in->next)
		if (!app || !strcmp(in->app, app))
			n++;
	return n;
}

#define WHY_LINES 5         /* log lines kept with a crash-looping instance's reason */
#define WHY_WINDOW 8192     /* bytes of its log read for them */
#define WHY_LINE_MAX 300    /* a line quoted in the reason is cut here */

json_t *instance_why(const struct instance *in)
{
	enum sup_state st = in->sup.state;
	if (!in->last_exit[0] ||
	    !(st == SUP_BACKOFF || st == SUP_FAILED || (st == SUP_STARTING && in->restarts > 0)))
		return NULL;
	json_t *tail = NULL, *lines = json_array(), *v;
	const char *last_err = NULL, *last_any = NULL;
	struct err e;
	size_t i;
	char *path = agent_log_path(in->ag->state_dir, in->app, in->id);
	if (agent_log_tail_window(path, WHY_LINES, WHY_WINDOW, &tail, &e) == 0)
		json_array_foreach(tail, i, v)
		{
			const char *s = json_string_value(json_object_get(v, "line")) ?: "";
			json_array_append_new(lines, json_string(s));
			last_any = s;
			if (!strcmp(json_string_value(json_object_get(v, "stream")) ?: "", "stderr"))
				last_err = s;
		}
	free(path);
	const char *words = last_err ? last_err : last_any;
	long long exits = (long long)in->restarts + (st != SUP_STARTING);
	char *why = xasprintf("%s %lld exit(s); last exit: %s%s%.*s%s",
			      st == SUP_FAILED ? "crash loop: gave up after" : "keeps exiting:", exits,
			      in->last_exit, words ? "; its last words: \"" : "",
			      WHY_LINE_MAX, words ? words : "", words ? "\"" : "");
	json_t *o = json_pack("{s:s,s:o}", "why", why, "last_lines", lines);
	free(why);
	json_decref(tail);
	return o;
}

void agent__reply_not_running(struct evhttp_request *req, const struct instance *in)
{
	json_t *why = instance_why(in);
	const char *w = json_string_value(json_object_get(why, "why"));
	agent_reply_error(req, 409, "conflict", "instance %s is %s, not running%s%s", in->id,
			  sup_state_name(in->sup.state), w ? ": " : "", w ? w : "");
	json_decref(why);
}

json_t *instance_json(const struct instance *in)
{
	char ts[32];
	time_fmt_rfc3339(in->started_at, ts, sizeof(ts));
	json_t *o = json_pack("{s:s,s:s,s:s,s:I,s:i,s:s,s:s,s:I,s:s*}", "id", in->id, "app",
			      in->app, "release", in->release, "pid", (json_int_t)in->pid, "port",
			      in->port, "state", sup_state_name(in->sup.state), "started_at",
			      in->started_at ? ts : "", "restarts", (json_int_t)in->restarts,
			      "last_exit", in->last_exit[0] ? in->last_exit : NULL);
	if (!in->last_exit[0])
		json_object_set_new(o, "last_exit", json_null());
	if (!in->started_at)
		json_object_set_new(o, "started_at", json_null());
	json_object_set_new(o, "adopted", json_boolean(in->adopted));
	json_t *why = instance_why(in);
	if (why)
		json_object_update(o, why);
	json_decref(why);
	json_object_set_new(o, "log_pid", json_integer(in->log_pid));
	json_object_set_new(o, "stop_timeout_ms", json_integer(in->sup.stop_timeout_ms));
	json_object_set_new(o, "stop_signal", json_string(agent_signal_name(in->stop_signal)));
	return o;
}

char *agent_release_dir(const struct agent *ag, const char *release)
{
	const char *hex = str_starts(release, "sha256:") ? release + 7 : release;
	if (strlen(hex) != HASH_HEX_LEN || !hash_is_hex(hex, HASH_HEX_LEN))
		return NULL;
	return xasprintf("%s/releases/%s", ag->state_dir, hex);
}

static void drop_event(struct event **ev)
{
	if (*ev) {
		event_free(*ev);
		*ev = NULL;
	}
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	UNUSED(fd);
	UNUSED(what);
	instance_event(arg, SUP_EV_TIMER);
}

static void arm_timer(struct instance *in, int64_t ms)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
	if (!in->timer)
		in->timer = evtimer_new(in->ag->base, on_timer, in);
	evtimer_add(in->timer, &tv);
}

/* Signals the instance's process group; a leader that left its group (setsid) is still
 * reached through its pidfd, which cannot hit a reused pid. */
static void kill_group(struct instance *in, int sig)
{
	if (in->pid <= 0)
		return;
	if (kill(-in->pid, sig) < 0 && errno == ESRCH && in->pidfd >= 0)
		syscall(SYS_pidfd_send_signal, in->pidfd, sig, NULL, 0);
}

/* A log writer's exit: reap it if it is ours. */
static void on_log_exit(evutil_socket_t fd, short what, void *arg)
{
	struct logw_watch *w = arg;
	struct agent *ag = w->ag;
	siginfo_t si;
	UNUSED(what);
	if (w->is_child)
		waitid((idtype_t)P_PIDFD, (id_t)fd, &si, WEXITED | WNOHANG);
	for (struct instance *in = ag->inst; in; in = in->next)
		if (in->log_pid == w->pid) {
			in->log_pid = 0;
			in->log_start = 0;
		}
	for (struct logw_watch **p = &ag->logws; *p; p = &(*p)->next)
		if (*p == w) {
			*p = w->next;
			break;
		}
	event_free(w->ev);
	close(w->pidfd);
	free(w);
}

int agent__watch_log(struct agent *ag, pid_t pid, bool is_child)
{
	struct logw_watch *w = calloc(1, sizeof(*w));
	int fd = proc_pidfd_open(pid);
	if (!w || fd < 0) {
		free(w);
		if (fd >= 0)
			close(fd);
		return fd < 0 ? fd : -ENOMEM;
	}
	w->ag = ag;
	w->pid = pid;
	w->pidfd = fd;
	w->is_child = is_child;
	w->ev = event_new(ag->base, fd, EV_READ, on_log_exit, w);
	event_add(w->ev, NULL);
	w->next = ag->logws;
	ag->logws = w;
	return 0;
}

void agent__logws_free(struct agent *ag)
{
	while (ag->logws) {
		struct logw_watch *w = ag->logws;
		ag->logws = w->next;
		if (w->is_child) /* reap it if it already ended; a running one is left to init */
			waitpid(w->pid, NULL, WNOHANG);
		event_free(w->ev);
		close(w->pidfd);
		free(w);
	}
}

static void on_child_exit(evutil_socket_t fd, short what, void *arg)
{
	struct instance *in = arg;
	siginfo_t si = {0};
	UNUSED(what);
	/* nothing of the group may outlive its leader; while the leader is an unreaped zombie
	 * its pid (and so the group id) cannot be reused */
	kill(-in->pid, SIGKILL);
	if (in->is_child && waitid((idtype_t)P_PIDFD, (id_t)fd, &si, WEXITED | WNOHANG) == 0 &&
	    si.si_pid) {
		int status =
		    si.si_code == CLD_EXITED ? (si.si_status & 0xff) << 8 : si.si_status & 0x7f;
		exec_describe_status(status, in->last_exit, sizeof(in->last_exit));
	} else if (!in->is_child) {
		snprintf(in->last_exit, sizeof(in->last_exit),
			 "exited (status unknown: adopted from an earlier agent)");
	}
	drop_event(&in->ev_exit);
	close(in->pidfd);
	in->pidfd = -1;
	in->pid = 0;
	in->pid_start = 0;
	instance_event(in, SUP_EV_EXITED);
}

static int watch_exit(struct instance *in, pid_t pid)
{
	int fd = proc_pidfd_open(pid);
	if (fd < 0)
		return fd;
	in->pidfd = fd;
	in->ev_exit = event_new(in->ag->base, fd, EV_READ, on_child_exit, in);
	event_add(in->ev_exit, NULL);
	return 0;
}

int instance_adopt(struct instance *in, pid_t pid, uint64_t start, enum sup_state st)
{
	int r = watch_exit(in, pid);
	if (r < 0)
		return r;
	in->pid = pid;
	in->pid_start = start;
	in->is_child = false;
	in->adopted = true;
	in->sup.state = st;
	in->sup.last_spawn_ms = time_mono_ns() / 1000000;
	return 0;
}

/* Did the last run die on a port someone else took? (see docs/agent.md: ports) */
struct port_ask {
	struct agent *ag;
	const int *reserved;
	size_t n_reserved;
};

static bool port_clash(void *ctx, int port)
{
	const struct port_ask *a = ctx;
	for (size_t i = 0; i < a->n_reserved; i++)
		if (a->reserved[i] == port)
			return true;
	for (const struct instance *o = a->ag->inst; o; o = o->next)
		if (o->port == port)
			return true;
	return agent__proxy_port(a->ag, port);
}

int agent__alloc_port(struct agent *ag, const int *reserved, size_t n_reserved, int *out,
		      struct err *e)
{
	struct port_ask a = {ag, reserved, n_reserved};
	return net_loopback_free_port_avoiding(port_clash, &a, out, e);
}

static bool port_taken(const struct instance *in)
{
	char *path = agent_log_path(in->ag->state_dir, in->app, in->id);
	char tail[4096];
	bool taken = false;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	if (fd < 0)
		return false;
	off_t size = lseek(fd, 0, SEEK_END);
	lseek(fd, size > (off_t)sizeof(tail) - 1 ? size - (off_t)sizeof(tail) + 1 : 0, SEEK_SET);
	ssize_t n = read(fd, tail, sizeof(tail) - 1);
	close(fd);
	if (n > 0) {
		tail[n] = 0;
		taken = strstr(tail, "Address already in use") || strstr(tail, "EADDRINUSE");
	}
	return taken;
}

static int start_log_writer(struct instance *in, int out_r, int err_r, struct err *e)
{
	char *dir = xasprintf("%s/logs/%s", in->ag->state_dir, in->app);
	char *path = agent_log_path(in->ag->state_dir, in->app, in->id);
	const char *argv[] = {in->ag->self_exe, "agent", "log-writer", path, NULL};
	struct exec_spawn_opts o = {.fd_in = out_r, .fd_out = -1, .fd_err = -1, .fd_3 = err_r};
	pid_t pid;
	int r = fs_mkdir_p(dir, 0700, e);
	if (r == 0)
		r = exec_spawn(argv, &o, &pid, e);
	if (r == 0) {
		in->log_pid = pid;
		if (proc_start_time(pid, &in->log_start) < 0)
			in->log_start = 0;
		agent__watch_log(in->ag, pid, true);
	}
	free(dir);
	free(path);
	return r;
}

static int spawn(struct instance *in, struct err *e)
{
	int outp[2] = {-1, -1}, errp[2] = {-1, -1}, r;
	char *cwd = agent_release_dir(in->ag, in->release);
	struct strv env;
	pid_t pid;

	if (!in->port || port_taken(in)) {
		if ((r = agent__alloc_port(in->ag, NULL, 0, &in->port, e)) < 0)
			goto done;
	}
	if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
		r = err_set(e, errno, "pipe: %s", strerror(errno));
		goto done;
	}
	if ((r = start_log_writer(in, outp[0], errp[0], e)) < 0)
		goto done;
	strv_init(&env);
	for (size_t i = 0; i < in->env.n; i++)
		strv_push(&env, in->env.v[i]);
	strv_push_owned(&env, xasprintf("PORT=%d", in->port));
	struct exec_spawn_opts o = {.cwd = cwd,
				    .env = env.v,
				    .fd_in = -1,
				    .fd_out = outp[1],
				    .fd_err = errp[1],
				    .fd_3 = -1,
				    .set_user = in->user.drop,
				    .uid = in->user.uid,
				    .gid = in->user.gid};
	/* the release is the app's to read, no other app's: the top dir is 0750 <us>:<its gid> */
	if (in->user.drop && (chown(cwd, (uid_t)-1, in->user.gid) < 0 || chmod(cwd, 0750) < 0)) {
		r = err_set(e, errno, "cannot open %s to gid %u: %s", cwd, (unsigned)in->user.gid,
			    strerror(errno));
		strv_done(&env);
		goto done;
	}
	r = exec_spawn((const char *const *)in->argv.v, &o, &pid, e);
	strv_done(&env);
	if (r < 0)
		goto done;
	in->pid = pid;
	in->is_child = true;
	in->adopted = false;
	in->started_at = time_now_ns() / 1000000000;
	if (proc_start_time(pid, &in->pid_start) < 0)
		in->pid_start = 0;
	if ((r = watch_exit(in, pid)) < 0) {
		/* cannot watch it: do not leave it unsupervised */
		kill(-pid, SIGKILL);
		waitpid(pid, NULL, 0);
		in->pid = 0;
		r = err_set(e, -r, "pidfd_open: %s", strerror(-r));
	}
done:
	for (int i = 0; i < 2; i++) {
		if (outp[i] >= 0)
			close(outp[i]);
		if (errp[i] >= 0)
			close(errp[i]);
	}
	free(cwd);
	return r;
}

void instance_event(struct instance *in, enum sup_event ev)
{
	enum sup_state before = in->sup.state;
	enum sup_action act = sup_step(&in->sup, ev, now_ms());
	struct err e = {0};

	log_debug("agent", "%s: %s + %s -> %s (%s)", in->id, sup_state_name(before),
		  sup_event_name(ev), sup_state_name(in->sup.state), sup_action_name(act));
	switch (act) {
	case SUP_ACT_NONE:
		break;
	case SUP_ACT_SPAWN:
		if (in->timer)
			evtimer_del(in->timer);
		if (before == SUP_BACKOFF)
			in->restarts++;
		if (spawn(in, &e) < 0) {
			snprintf(in->last_exit, sizeof(in->last_exit), "%s", e.msg);
			log_warn("agent", "%s: %s", in->id, e.msg);
			instance_event(in, SUP_EV_EXEC_FAILED);
			return;
		}
		break;
	case SUP_ACT_BACKOFF:
		arm_timer(in, in->sup.delay_ms);
		break;
	case SUP_ACT_GIVE_UP:
		if (ev == SUP_EV_EXITED)
			log_warn("agent", "%s: crash loop (%d exits within %ds): failed; last: %s",
				 in->id, SUP_LOOP_EXITS, SUP_LOOP_WINDOW_MS / 1000, in->last_exit);
		break;
	case SUP_ACT_TERM:
		kill_group(in, in->stop_signal);
		arm_timer(in, in->sup.delay_ms);
		break;
	case SUP_ACT_KILL:
		kill_group(in, SIGKILL);
		break;
	case SUP_ACT_DONE:
		if (in->timer)
			evtimer_del(in->timer);
		agent_save(in->ag);
		agent__instance_stopped(in);
		return;
	}
	agent_save(in->ag);
}

void instance_kill_now(struct instance *in)
{
	if (in->sup.state == SUP_STARTING || in->sup.state == SUP_RUNNING)
		instance_event(in, SUP_EV_STOP);
	if (in->sup.state == SUP_STOPPING)
		kill_group(in, SIGKILL);
	else if (in->sup.state != SUP_STOPPED)
		instance_event(in, SUP_EV_STOP);
}

void instance_free(struct instance *in)
{
	if (!in)
		return;
	drop_event(&in->ev_exit);
	drop_event(&in->timer);
	if (in->pidfd >= 0)
		close(in->pidfd);
	strv_done(&in->argv);
	strv_done(&in->env);
	json_decref(in->user_env);
	while (in->waiters) {
		struct waiter *w = in->waiters;
		in->waiters = w->next;
		free(w);
	}
	free(in);
}

void agent__append(struct agent *ag, struct instance *in)
{
	struct instance **p = &ag->inst;
	while (*p)
		p = &(*p)->next;
	in->next = NULL;
	*p = in;
}

void agent_remove(struct agent *ag, struct instance *in)
{
	for (struct instance **p = &ag->inst; *p; p = &(*p)->next)
		if (*p == in) {
			*p = in->next;
			break;
		}
	instance_free(in);
	agent_save(ag);
}

/* nftw has no context pointer; only the loop thread hands data dirs over */
static uid_t chown_uid;
static gid_t chown_gid;

static int chown_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	UNUSED(sb);
	UNUSED(flag);
	UNUSED(ftw);
	return lchown(path, chown_uid, chown_gid) < 0 && errno != ENOENT ? -1 : 0;
}

/* <state>/data/<app>: the one place the app may write, its own (0700 uid:gid). A data dir an
 * earlier (root-run) instance filled is handed over whole, once. */
static int make_data_dir(const struct instance *in, const char *data, struct err *e)
{
	char *parent = xasprintf("%s/data", in->ag->state_dir);
	struct stat sb;
	int r = 0;

	if (mkdir(parent, geteuid() == 0 ? 0711 : 0700) < 0 && errno != EEXIST)
		r = err_set(e, errno, "cannot create %s: %s", parent, strerror(errno));
	else if (mkdir(data, 0700) < 0 && errno != EEXIST)
		r = err_set(e, errno, "cannot create %s: %s", data, strerror(errno));
	else if (lstat(data, &sb) < 0 || !S_ISDIR(sb.st_mode))
		r = err_set(e, ENOTDIR, "%s is not a directory", data);
	else if (in->user.drop && (sb.st_uid != in->user.uid || sb.st_gid != in->user.gid)) {
		chown_uid = in->user.uid;
		chown_gid = in->user.gid;
		if (nftw(data, chown_one, 16, FTW_PHYS) != 0)
			r = err_set(e, errno, "cannot give %s to uid %u: %s", data,
				    (unsigned)in->user.uid, strerror(errno));
	}
	if (r == 0 && chmod(data, 0700) < 0)
		r = err_set(e, errno, "cannot chmod %s: %s", data, strerror(errno));
	free(parent);
	return r;
}

static const char *user_var(const struct instance *in, const char *name, const char *data)
{
	if (!in->user.drop)
		return getenv(name);
	if (!strcmp(name, "HOME"))
		return in->user.home[0] ? in->user.home : data;
	if (!strcmp(name, "USER") || !strcmp(name, "LOGNAME"))
		return in->user.name[0] ? in->user.name : NULL;
	return getenv(name);
}

/* The environment an instance sees (all but PORT): a small base taken from the agent's own
 * (PATH, HOME, LANG, LC_ALL, TZ, USER, LOGNAME, TMPDIR; HOME, USER and LOGNAME are the app
 * user's when the agent switches users: HOME is its account's, or CAIRN_DATA), then the
 * release's run.env, then the request's env, then CAIRN_RELEASE, CAIRN_INSTANCE, CAIRN_DATA. */
static int build_env(struct instance *in, const struct manifest *m, struct err *e)
{
	static const char *const base_vars[] = {"PATH", "HOME", "LANG",	   "LC_ALL",
						"TZ",	"USER", "LOGNAME", "TMPDIR"};
	char *data = xasprintf("%s/data/%s", in->ag->state_dir, in->app);
	const char *k;
	json_t *v;
	int r = make_data_dir(in, data, e);

	strv_done(&in->env);
	strv_init(&in->env);
	for (size_t i = 0; i < ARRAY_SIZE(base_vars); i++) {
		const char *val = user_var(in, base_vars[i], data);
		if (!val && !strcmp(base_vars[i], "PATH"))
			val = "/usr/local/bin:/usr/bin:/bin";
		if (val)
			strv_push_owned(&in->env, xasprintf("%s=%s", base_vars[i], val));
	}
	for (size_t i = 0; i < m->run_env.n; i++)
		strv_push_owned(&in->env,
				xasprintf("%s=%s", m->run_env.keys[i], m->run_env.values[i]));
	json_object_foreach(in->user_env, k, v)
	    strv_push_owned(&in->env, xasprintf("%s=%s", k, json_string_value(v)));
	strv_push_owned(&in->env, xasprintf("CAIRN_RELEASE=%s", in->release));
	strv_push_owned(&in->env, xasprintf("CAIRN_INSTANCE=%s", in->id));
	strv_push_owned(&in->env, xasprintf("CAIRN_DATA=%s", data));
	free(data);
	return r;
}

/* Loads the release's run config into a new instance (not yet listed, not started). */
int agent__instance_new(struct agent *ag, const char *app, const char *release, const char *id,
			json_t *user_env, int64_t stop_timeout_ms, struct instance **out,
			struct err *e)
{
	struct manifest *m = NULL;
	struct instance *in;
	int r;

	if ((r = release_load(ag->os, release, &m, e)) < 0)
		return r;
	if (!m->run_command.n || strcmp(m->app, app) != 0) {
		r = !m->run_command.n
			? err_set(e, CAIRN_EINPUT, "release %.19s has no run.command", release)
			: err_set(e, CAIRN_EINPUT,
				  "release %.19s is a release of '%s', not of '%s'", release,
				  m->app, app);
		manifest_free(m);
		return r;
	}
	in = calloc(1, sizeof(*in));
	if (!in) {
		manifest_free(m);
		return err_set(e, ENOMEM, "out of memory");
	}
	in->ag = ag;
	in->pidfd = -1;
	snprintf(in->id, sizeof(in->id), "%s", id);
	snprintf(in->app, sizeof(in->app), "%s", app);
	snprintf(in->release, sizeof(in->release), "%s", release);
	strv_init(&in->argv);
	for (size_t i = 0; i < m->run_command.n; i++)
		strv_push(&in->argv, m->run_command.v[i]);
	in->user_env = user_env ? json_incref(user_env) : json_object();
	if ((r = agent__app_user(ag->state_dir, app, m->run_user, &in->user, e)) < 0) {
		manifest_free(m);
		instance_free(in);
		return r;
	}
	sup_init(&in->sup, stop_timeout_ms >= 0	    ? stop_timeout_ms
			   : m->stop_timeout_ms > 0 ? m->stop_timeout_ms
						    : 10000);
	in->stop_signal = SIGTERM;
	r = build_env(in, m, e);
	manifest_free(m);
	if (r < 0) {
		instance_free(in);
		return r;
	}
	*out = in;
	return 0;
}

int instance_create(struct agent *ag, const char *app, const char *release,
		    const struct start_req *rq, struct instance **out, struct err *e)
{
	struct instance *in;
	unsigned char rnd[4] = {0};
	char id[INSTANCE_ID_MAX];
	int r;

	do {
		if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
			return err_set(e, errno, "getrandom: %s", strerror(errno));
		snprintf(id, sizeof(id), "i-%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3]);
	} while (agent_find(ag, NULL, id));
	if ((r = agent__instance_new(ag, app, release, id, rq->env, rq->stop_timeout_ms, &in, e)) <
	    0)
		return r;
	in->stop_signal = rq->stop_signal;
	if ((r = agent__alloc_port(ag, rq->reserved, rq->n_reserved, &in->port, e)) < 0) {
		instance_free(in);
		return r;
	}
	agent__append(ag, in);
	instance_event(in, SUP_EV_START);
	*out = in;
	return 0;
}
