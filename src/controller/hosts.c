/* controller/hosts: the transport to each host's agent (docs/hosts.md). local is
 * <state>/agent.sock; an ssh host is one long-lived OpenSSH master per host (multiplexed, argv
 * only) forwarding <state>/hosts/<name>.sock to <remote state>/agent.sock, restarted when it
 * dies and stopped with the controller. It never decides anything about deploys. */
#include "controller/controller-internal.h"

#include "agent/agent.h"
#include "config/config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SOCK_PATH_MAX 107 /* sun_path, less the NUL */
#define CTL_SUFFIX    17  /* ssh makes the control socket as PATH.<16 random> first */
#define CTL_STR_(x)   #x
#define CTL_STR(x)    CTL_STR_(x)

struct host_link {
	char name[64];		       /* config: at most 63 */
	char *ssh, *rstate, *cairn;    /* owned: destination, remote state dir, remote binary */
	char *sock, *ctl, *log, *pidf; /* owned: <state>/hosts/<name>.{sock,ctl,log,pid} */
	pid_t pid;		       /* the ssh master (our child), 0 when none runs */
	int64_t started_ms;	       /* when it was started (CLOCK_MONOTONIC) */
	bool ready;		       /* its forward listens and the agent there was ensured */
	unsigned starts;	       /* masters started so far */
	pthread_mutex_t mu;	       /* held while the link is (re)established or used to spawn */
	struct host_link *next;
};

struct spawn_req {
	const char *const *argv;
	int fd_log;
	pid_t pid;
	int r;
	struct err e;
	bool done;
};

/* One registry per process (one controller per process). The spawner thread forks every ssh
 * master, so that PR_SET_PDEATHSIG ties them to the controller's life, not to a runner's. */
static struct {
	pthread_mutex_t mu; /* list, state, spawner queue */
	pthread_cond_t cv;
	char *state_dir, *dir;	/* owned */
	struct host_link *list; /* owned */
	bool up, quit;
	pthread_t spawner;
	struct spawn_req *req;	  /* the request in flight, or NULL */
	pthread_mutex_t spawn_mu; /* one request at a time */
} H = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .cv = PTHREAD_COND_INITIALIZER,
    .spawn_mu = PTHREAD_MUTEX_INITIALIZER,
};

static void *spawner_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&H.mu);
	for (;;) {
		while (!H.quit && (!H.req || H.req->done))
			pthread_cond_wait(&H.cv, &H.mu);
		if (H.quit)
			break;
		struct spawn_req *q = H.req;
		pthread_mutex_unlock(&H.mu);
		struct exec_spawn_opts o = {.fd_in = -1,
					    .fd_out = q->fd_log,
					    .fd_err = q->fd_log,
					    .fd_3 = -1,
					    .parent_death_signal = SIGTERM};
		q->r = exec_spawn(q->argv, &o, &q->pid, &q->e);
		pthread_mutex_lock(&H.mu);
		q->done = true;
		pthread_cond_broadcast(&H.cv);
	}
	pthread_mutex_unlock(&H.mu);
	return NULL;
}

static int spawn(const char *const *argv, int fd_log, pid_t *out_pid, struct err *e)
{
	struct spawn_req q = {.argv = argv, .fd_log = fd_log};
	pthread_mutex_lock(&H.spawn_mu);
	pthread_mutex_lock(&H.mu);
	if (!H.up || H.quit) {
		pthread_mutex_unlock(&H.mu);
		pthread_mutex_unlock(&H.spawn_mu);
		return err_set(e, ESHUTDOWN, "the controller is stopping");
	}
	H.req = &q;
	pthread_cond_broadcast(&H.cv);
	while (!q.done)
		pthread_cond_wait(&H.cv, &H.mu);
	H.req = NULL;
	pthread_mutex_unlock(&H.mu);
	pthread_mutex_unlock(&H.spawn_mu);
	if (q.r < 0) {
		*e = q.e;
		return q.r;
	}
	*out_pid = q.pid;
	return 0;
}

int hosts_init(const char *state_dir, struct err *e)
{
	char *dir = fs_join(state_dir, "hosts");
	int r = fs_mkdir_p(dir, 0700, e);
	if (r < 0) {
		free(dir);
		return r;
	}
	pthread_mutex_lock(&H.mu);
	H.state_dir = xstrdup(state_dir);
	H.dir = dir;
	H.quit = false;
	H.up = pthread_create(&H.spawner, NULL, spawner_main, NULL) == 0;
	pthread_mutex_unlock(&H.mu);
	if (!H.up)
		return err_set(e, EAGAIN, "cannot start the ssh spawner thread");
	return 0;
}

/* ---- one link -------------------------------------------------------------------------------- */

static void link_stop(struct host_link *h)
{
	if (h->pid <= 0)
		return;
	kill(h->pid, SIGTERM);
	for (int i = 0; i < 200; i++) { /* 2 s, then SIGKILL */
		if (waitpid(h->pid, NULL, WNOHANG) != 0)
			goto gone;
		struct timespec ts = {0, 10 * 1000000L};
		nanosleep(&ts, NULL);
	}
	kill(h->pid, SIGKILL);
	waitpid(h->pid, NULL, 0);
gone:
	h->pid = 0;
	h->ready = false;
	unlink(h->sock);
	unlink(h->ctl);
	unlink(h->pidf);
}

static void link_free(struct host_link *h)
{
	link_stop(h);
	free(h->ssh);
	free(h->rstate);
	free(h->cairn);
	free(h->sock);
	free(h->ctl);
	free(h->log);
	free(h->pidf);
	pthread_mutex_destroy(&h->mu);
	free(h);
}

void hosts_shutdown(void)
{
	pthread_mutex_lock(&H.mu);
	bool up = H.up;
	H.quit = true;
	pthread_cond_broadcast(&H.cv);
	struct host_link *list = H.list;
	H.list = NULL;
	pthread_mutex_unlock(&H.mu);
	if (up)
		pthread_join(H.spawner, NULL);
	while (list) {
		struct host_link *n = list->next;
		pthread_mutex_lock(&list->mu); /* a runner still using it finishes first */
		pthread_mutex_unlock(&list->mu);
		if (list->pid > 0)
			log_info("controller", "hosts: stopping the ssh connection to %s (pid %d)",
				 list->name, (int)list->pid);
		link_free(list);
		list = n;
	}
	pthread_mutex_lock(&H.mu);
	H.up = false;
	free(H.state_dir);
	free(H.dir);
	H.state_dir = H.dir = NULL;
	pthread_mutex_unlock(&H.mu);
}

static bool same(const char *a, const char *b)
{
	return !strcmp(a ? a : "", b ? b : "");
}

/* Lock order: a link's mu, then spawn_mu, then H.mu — so H.mu is never held while a link's
 * mu is taken. Links are only removed at shutdown: a pointer found stays valid. */
void hosts_learn(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->n_hosts; i++) {
		const struct config_host *c = &cfg->hosts[i];
		struct host_link *h;
		bool fresh = false;
		if (!c->ssh)
			continue;
		pthread_mutex_lock(&H.mu);
		for (h = H.list; h && strcmp(h->name, c->name); h = h->next)
			;
		if (!h && H.dir) {
			h = xcalloc(1, sizeof(*h));
			snprintf(h->name, sizeof(h->name), "%s", c->name);
			h->ssh = xstrdup(c->ssh);
			h->rstate = xstrdup(c->state ? c->state : CONFIG_REMOTE_STATE);
			h->cairn = xstrdup(c->cairn ? c->cairn : "cairn");
			h->sock = xasprintf("%s/%s.sock", H.dir, c->name);
			h->ctl = xasprintf("%s/%s.ctl", H.dir, c->name);
			h->log = xasprintf("%s/%s.log", H.dir, c->name);
			h->pidf = xasprintf("%s/%s.pid", H.dir, c->name);
			pthread_mutex_init(&h->mu, NULL);
			h->next = H.list;
			H.list = h;
			fresh = true;
		}
		pthread_mutex_unlock(&H.mu);
		if (!h || fresh)
			continue;
		pthread_mutex_lock(&h->mu);
		if (!same(h->ssh, c->ssh) || !same(h->rstate, c->state) ||
		    !same(h->cairn, c->cairn)) {
			/* the host moved: the next call connects to where the plan says */
			log_info("controller", "hosts: %s is now %s (state %s)", h->name, c->ssh,
				 c->state ? c->state : CONFIG_REMOTE_STATE);
			link_stop(h);
			free(h->ssh);
			free(h->rstate);
			free(h->cairn);
			h->ssh = xstrdup(c->ssh);
			h->rstate = xstrdup(c->state ? c->state : CONFIG_REMOTE_STATE);
			h->cairn = xstrdup(c->cairn ? c->cairn : "cairn");
		}
		pthread_mutex_unlock(&h->mu);
	}
}

static struct host_link *find(const char *name)
{
	struct host_link *h;
	pthread_mutex_lock(&H.mu);
	for (h = H.list; h && strcmp(h->name, name); h = h->next)
		;
	pthread_mutex_unlock(&H.mu);
	return h;
}

/* ssh argv prefix: ssh [-F $CAIRN_SSH_CONFIG] -o BatchMode=yes; *n is the next free slot. */
static void ssh_prefix(const char **argv, size_t *n)
{
	const char *cfg = getenv("CAIRN_SSH_CONFIG");
	*n = 0;
	argv[(*n)++] = "ssh";
	if (cfg && cfg[0]) {
		argv[(*n)++] = "-F";
		argv[(*n)++] = cfg;
	}
	argv[(*n)++] = "-o";
	argv[(*n)++] = "BatchMode=yes";
	argv[(*n)++] = "-o";
	argv[(*n)++] = "ConnectTimeout=" CTL_STR(CTL_SSH_CONNECT_S);
}

/* The last non-empty line of the link's log (what ssh said), into out. */
static void last_words(const struct host_link *h, char *out, size_t n)
{
	struct buf b;
	buf_init(&b, 1024 * 1024);
	out[0] = 0;
	if (fs_read_file(h->log, &b, NULL) == 0 && b.len) {
		char *s = b.data, *end = s + b.len;
		while (end > s && (end[-1] == '\n' || end[-1] == '\r'))
			end--;
		*end = 0;
		char *line = strrchr(s, '\n');
		snprintf(out, n, "%s", line ? line + 1 : s);
	}
	buf_done(&b);
}

static bool reaped(struct host_link *h, int *out_status)
{
	return h->pid > 0 && waitpid(h->pid, out_status, WNOHANG) == h->pid;
}

static int unreachable(struct host_link *h, const char *what, struct err *e)
{
	char said[512];
	const char *cfg = getenv("CAIRN_SSH_CONFIG");
	last_words(h, said, sizeof(said));
	return err_set(e, CAIRN_ECHECK,
		       "host %s: cannot reach it over SSH (%s): %s%s%s; check that sshd runs there "
		       "and that `ssh%s%s %s true` works without a password prompt, then deploy "
		       "again (ssh's messages are in %s)",
		       h->name, h->ssh, what, said[0] ? ": " : "", said, cfg ? " -F " : "",
		       cfg ? cfg : "", h->ssh, h->log);
}

/* Quotes one word for the remote shell (ssh joins its command words with spaces). */
static char *sh_quote(const char *s)
{
	struct buf b;
	buf_init(&b, 4096);
	buf_adds(&b, "'");
	for (; *s; s++)
		if (*s == '\'')
			buf_adds(&b, "'\\''");
		else
			buf_add(&b, s, 1);
	buf_adds(&b, "'");
	char *r = xstrdup(buf_str(&b));
	buf_done(&b);
	return r;
}

/* `cairn agent --daemon --if-absent --state RSTATE` on the host, through the master. */
static int ensure_agent(struct host_link *h, struct err *e)
{
	const char *argv[24];
	char *q[5];
	size_t n;
	struct buf out;
	int status = 0, r;

	ssh_prefix(argv, &n);
	argv[n++] = "-S";
	argv[n++] = h->ctl;
	argv[n++] = h->ssh;
	argv[n++] = "--";
	argv[n++] = q[0] = sh_quote(h->cairn);
	argv[n++] = q[1] = sh_quote("agent");
	argv[n++] = q[2] = sh_quote("--daemon");
	argv[n++] = q[3] = sh_quote("--if-absent");
	argv[n++] = "--state";
	argv[n++] = q[4] = sh_quote(h->rstate);
	argv[n] = NULL;
	buf_init(&out, 64 * 1024);
	struct exec_opts eo = {.out = &out,
			       .timeout_ms = CTL_AGENT_START_MS + CTL_SSH_CONNECT_S * 1000};
	r = exec_run(argv, &eo, &status, e);
	if (r == 0 && status != 0) {
		char st[64], *txt = (char *)buf_str(&out);
		size_t len = strlen(txt);
		while (len && (txt[len - 1] == '\n' || txt[len - 1] == '\r'))
			txt[--len] = 0;
		char *line = strrchr(txt, '\n');
		exec_describe_status(status, st, sizeof(st));
		r = err_set(
		    e, CAIRN_ECHECK,
		    "host %s: cannot start the agent there (`%s agent --daemon --if-absent "
		    "--state %s` %s%s%.300s); install cairn on %s or set cairn: and state: in "
		    "its hosts entry",
		    h->name, h->cairn, h->rstate, st, len ? ": " : "", line ? line + 1 : txt,
		    h->name);
	} else if (r < 0) {
		err_prefix(e, "host %s: starting the agent over SSH", h->name);
	}
	buf_done(&out);
	for (size_t i = 0; i < ARRAY_SIZE(q); i++)
		free(q[i]);
	return r;
}

/* Starts the master (it connects in the background; link_wait waits for it); h->mu held. */
static int link_spawn(struct host_link *h, struct err *e)
{
	const char *argv[40];
	char fwd[2 * SOCK_PATH_MAX + 64];
	size_t n;
	int r;

	if (strlen(h->sock) > SOCK_PATH_MAX || strlen(h->ctl) + CTL_SUFFIX > SOCK_PATH_MAX)
		return err_set(e, CAIRN_EINPUT,
			       "host %s: %s is too long for a unix socket; use a shorter state "
			       "directory for the controller",
			       h->name, h->ctl);
	unlink(h->sock);
	unlink(h->ctl);
	int fd = open(h->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return err_set(e, errno, "host %s: cannot open %s: %s", h->name, h->log,
			       strerror(errno));
	snprintf(fwd, sizeof(fwd), "%s:%s/%s", h->sock, h->rstate, AGENT_SOCKET_NAME);
	ssh_prefix(argv, &n);
	const char *more[] = {"-N",   "-M",
			      "-S",   h->ctl,
			      "-o",   "ControlPersist=no",
			      "-o",   "ExitOnForwardFailure=yes",
			      "-o",   "StreamLocalBindUnlink=yes",
			      "-o",   "StreamLocalBindMask=0177",
			      "-o",   "ServerAliveInterval=" CTL_STR(CTL_SSH_ALIVE_S),
			      "-o",   "ServerAliveCountMax=3",
			      "-L",   fwd,
			      h->ssh, NULL};
	for (size_t i = 0; more[i]; i++)
		argv[n++] = more[i];
	argv[n] = NULL;
	dprintf(fd, "%s cairn: starting ssh to %s (%s)\n", "--", h->name, h->ssh);
	r = spawn(argv, fd, &h->pid, e);
	close(fd);
	if (r < 0) {
		err_prefix(e, "host %s", h->name);
		return r;
	}
	h->starts++;
	h->started_ms = time_mono_ns() / 1000000;
	h->ready = false;
	return 0;
}

/* Waits until the master's forward listens, then ensures the agent there; h->mu held. The
 * master gets CTL_SSH_CONNECT_S (+ 2 s for the forward), then it is stopped and the host is
 * unreachable. A caller with a shorter bound (until_ms, CLOCK_MONOTONIC; INT64_MAX: none)
 * gets ETIMEDOUT at it and leaves the master connecting: the next call waits on. */
static int link_wait(struct host_link *h, int64_t until_ms, struct err *e)
{
	int64_t deadline = h->started_ms + CTL_SSH_CONNECT_S * 1000 + 2000;
	struct stat st;
	int status, r;

	while (stat(h->sock, &st) < 0 || stat(h->ctl, &st) < 0) {
		int64_t now = time_mono_ns() / 1000000;
		if (reaped(h, &status)) {
			char how[64];
			h->pid = 0;
			exec_describe_status(status, how, sizeof(how));
			return unreachable(h, how, e);
		}
		if (now > deadline) {
			link_stop(h);
			return unreachable(
			    h, "no connection within " CTL_STR(CTL_SSH_CONNECT_S) " s", e);
		}
		if (now > until_ms)
			return err_set(e, ETIMEDOUT,
				       "host %s: no SSH connection to %s yet after %lld ms (ssh is still "
				       "trying; it gives up after " CTL_STR(CTL_SSH_CONNECT_S) " s)",
				       h->name, h->ssh, (long long)(now - h->started_ms));
		struct timespec ts = {0, 10 * 1000000L};
		nanosleep(&ts, NULL);
	}
	char pid[32];
	snprintf(pid, sizeof(pid), "%d\n", (int)h->pid);
	fs_write_atomic(h->pidf, pid, strlen(pid), 0600, NULL);
	log_info("controller", "hosts: ssh to %s (%s) up, pid %d, forward %s", h->name, h->ssh,
		 (int)h->pid, h->sock);
	if ((r = ensure_agent(h, e)) < 0) {
		link_stop(h);
		return r;
	}
	h->ready = true;
	return 0;
}

/* The link is up (started, or restarted if its ssh died), within until_ms; h->mu held. */
static int link_up(struct host_link *h, int64_t until_ms, struct err *e)
{
	int status, r;
	if (reaped(h, &status)) {
		char how[64];
		exec_describe_status(status, how, sizeof(how));
		log_warn("controller", "hosts: ssh to %s %s; connecting again", h->name, how);
		h->pid = 0;
		h->ready = false;
	}
	if (h->pid > 0 && h->ready)
		return 0;
	if (h->pid <= 0 && (r = link_spawn(h, e)) < 0)
		return r;
	return link_wait(h, until_ms, e);
}

int hosts_socket(const char *host, char **out_path, struct err *e)
{
	struct host_link *h = find(host);
	if (!h)
		return err_set(e, CAIRN_ENOTFOUND,
			       "host %s is not in the hosts of any release this controller loaded",
			       host);
	pthread_mutex_lock(&h->mu);
	int r = link_up(h, INT64_MAX, e);
	if (r == 0)
		*out_path = xstrdup(h->sock);
	pthread_mutex_unlock(&h->mu);
	return r;
}

/* After a call found no agent behind the link: restart a dead ssh, else start the agent. */
static int repair(const char *host, struct err *e)
{
	struct host_link *h = find(host);
	int status, r;
	if (!h)
		return err_set(e, CAIRN_ENOTFOUND, "host %s is unknown", host);
	pthread_mutex_lock(&h->mu);
	if (h->pid > 0 && h->ready && !reaped(h, &status)) {
		r = ensure_agent(h, e);
	} else {
		if (h->pid > 0 && h->ready) /* reaped just now */
			h->pid = 0;
		r = link_up(h, INT64_MAX, e);
	}
	pthread_mutex_unlock(&h->mu);
	return r;
}

/* Starting instances and deleting one are not repeated: a lost answer there fails the step. */
bool hosts_repeatable(const char *method, const char *path)
{
	size_t n = strlen(path);
	if (!strcmp(method, "DELETE"))
		return false;
	return !(strcmp(method, "POST") == 0 && n >= 10 && !strcmp(path + n - 10, "/instances"));
}

int hosts_call(const char *host, const char *method, const char *path, json_t *body,
	       const void *raw, size_t raw_n, int64_t timeout_ms, json_t **out, struct err *e)
{
	int r = 0;
	for (int attempt = 0; attempt < 2; attempt++) {
		struct agent_client *c = NULL;
		char *sock = NULL;
		long status = 0;
		if (attempt > 0) {
			struct err e2 = {0};
			if (repair(host, &e2) < 0) {
				*e = e2;
				break;
			}
			*e = (struct err){0};
		}
		if ((r = hosts_socket(host, &sock, e)) < 0)
			break;
		r = agent_client_new_unix(sock, timeout_ms, &c, e);
		if (r == 0 && raw)
			r = agent_client_put(c, path, raw, raw_n, &status, out, e);
		else if (r == 0)
			r = agent_client_call(c, method, path, body, &status, out, e);
		agent_client_free(c);
		free(sock);
		/* status 0: no answer came back (ssh or the remote agent is gone) */
		if (r == 0 || status != 0 || (e->code != ECONNREFUSED && !hosts_repeatable(method, path)))
			break;
		log_warn("controller", "hosts: %s %s on %s: %s; repairing the link", method, path,
			 host, e->msg);
	}
	json_decref(body);
	return r;
}

int hosts_local_start(const char *self_exe, const char *state_dir, struct err *e)
{
	const char *argv[] = {self_exe, "agent", "--daemon", "--if-absent", "--state", state_dir,
			      NULL};
	/* --if-absent waits up to 10 s for a keeper's restart, then starts one */
	struct exec_opts eo = {.timeout_ms = 2 * CTL_AGENT_START_MS, .stdout_to_stderr = true};
	int status = 0, r = exec_run(argv, &eo, &status, e);
	if (r == 0 && status != 0)
		r = err_set(e, CAIRN_ECHECK,
			    "cannot start the local agent (`%s agent --daemon --if-absent` exited "
			    "with status %d); see %s/logs/agent.log",
			    self_exe, status, state_dir);
	return r;
}

int hosts_query(const char *host, const char *path, int64_t bound_ms, json_t **out,
		struct err *e)
{
	struct host_link *h = find(host);
	int64_t until = time_mono_ns() / 1000000 + bound_ms;
	struct agent_client *c = NULL;
	struct timespec ts;
	long status = 0;
	char *sock = NULL;
	int r;

	if (!h)
		return err_set(e, CAIRN_ENOTFOUND,
			       "host %s is not in the hosts of any release this controller loaded",
			       host);
	time_deadline_ms(bound_ms, &ts);
	if (pthread_mutex_timedlock(&h->mu, &ts) != 0)
		return err_set(e, ETIMEDOUT,
			       "host %s: its SSH link to %s is being set up by a deploy step; no "
			       "answer within %lld ms",
			       h->name, h->ssh, (long long)bound_ms);
	r = link_up(h, until, e);
	if (r == 0)
		sock = xstrdup(h->sock);
	pthread_mutex_unlock(&h->mu);
	if (r < 0)
		return r;
	int64_t left = until - time_mono_ns() / 1000000;
	r = agent_client_new_unix(sock, left > 100 ? left : 100, &c, e);
	if (r == 0)
		r = agent_client_call(c, "GET", path, NULL, &status, out, e);
	if (r < 0 && status == 0 && r != -CAIRN_ENOTFOUND)
		err_prefix(e, "host %s: its agent did not answer through SSH", h->name);
	agent_client_free(c);
	free(sock);
	return r;
}
