/* keeper: what keeps an app reachable while its agent restarts. The keeper is the small parent
 * of `cairn agent --daemon`: it forks the agent, holds a duplicate of every listening socket the
 * agent has (its API socket and each proxy's listener, sent over a SOCK_SEQPACKET pair with
 * SCM_RIGHTS), and when the agent dies of anything but a clean stop it forks the next one at
 * once, which inherits those sockets — so the kernel queues connections meanwhile instead of
 * refusing them. The keeper never accepts, reads or writes a client's bytes, never touches
 * instances, and runs no event loop: poll(2) on the pair and a signalfd. */
#include "agent/agent-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define KEEP_MAX	  256	 /* listeners kept; more still work, they are only not kept */
#define KEEP_ACK_MS	  2000	 /* the agent waits this long for the keeper's answer */
#define RESPAWN_MIN_MS	  100	 /* backoff after a quick death: 100 ms doubling ... */
#define RESPAWN_MAX_MS	  5000	 /* ... to 5 s */
#define RESPAWN_STABLE_MS 10000	 /* an agent that ran this long restarts at once */
#define START_TRIES	  5	 /* a restarted agent that never gets ready: tries, then give up */
#define KEEP_STR_(x)	  #x
#define KEEP_STR(x)	  KEEP_STR_(x)

/* messages, agent → keeper; each is answered with one byte 'K' */
#define MSG_HOLD  'H' /* + one fd (SCM_RIGHTS): keep it (replaces one bound to the same address) */
#define MSG_DROP  'D' /* + a sockaddr: close the kept listener bound to it */
#define MSG_READY 'R' /* the agent listens, re-adopted its instances and restored its proxies */

/* ---- addresses ------------------------------------------------------------------------------- */

static bool same_addr(const struct sockaddr *a, socklen_t al, const struct sockaddr *b,
		      socklen_t bl)
{
	if (a->sa_family != b->sa_family)
		return false;
	if (a->sa_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->sa_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
		return x->sin6_port == y->sin6_port &&
		       !memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr));
	}
	return al == bl && !memcmp(a, b, al);
}

static bool fd_has_addr(int fd, const struct sockaddr *sa, socklen_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	return getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
	       same_addr((struct sockaddr *)&ss, sl, sa, len);
}

/* ---- the agent's side ------------------------------------------------------------------------ */

static void keeper_lost(struct agent *ag, const char *why)
{
	log_warn("agent", "keeper: %s; listeners are no longer kept across a restart", why);
	close(ag->keeper_fd);
	ag->keeper_fd = -1;
}

/* One message (and maybe one fd), then the keeper's 'K', within KEEP_ACK_MS. */
static void tell(struct agent *ag, const void *msg, size_t n, int fd)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct iovec iov = {(void *)msg, n};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	struct pollfd p;
	char k = 0;
	if (ag->keeper_fd < 0)
		return;
	if (fd >= 0) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	if (sendmsg(ag->keeper_fd, &mh, MSG_NOSIGNAL) != (ssize_t)n) {
		keeper_lost(ag, strerror(errno));
		return;
	}
	p = (struct pollfd){.fd = ag->keeper_fd, .events = POLLIN};
	if (poll(&p, 1, KEEP_ACK_MS) != 1 || recv(ag->keeper_fd, &k, 1, 0) != 1 || k != 'K')
		keeper_lost(ag, "no answer");
}

static int keep_take(void *ctx, const struct sockaddr *sa, socklen_t len)
{
	struct agent *ag = ctx;
	for (size_t i = 0; i < ag->n_kept; i++)
		if (ag->kept[i] >= 0 && fd_has_addr(ag->kept[i], sa, len)) {
			int fd = ag->kept[i];
			ag->kept[i] = -1;
			return fd;
		}
	return -1;
}

static void keep_bound(void *ctx, int fd)
{
	char m = MSG_HOLD;
	tell(ctx, &m, 1, fd);
}

void agent__keeper_init(struct agent *ag, const struct agent_keep *k)
{
	ag->keeper_fd = -1;
	if (!k)
		return;
	ag->keeper_fd = k->fd;
	ag->kept = xcalloc(k->n_kept + 1, sizeof(int));
	memcpy(ag->kept, k->kept, k->n_kept * sizeof(int));
	ag->n_kept = k->n_kept;
	struct net_listen_keep nk = {keep_take, keep_bound, ag};
	net_listen_keep_set(&nk);
}

int agent__keeper_take_api(struct agent *ag)
{
	for (size_t i = 0; i < ag->n_kept; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		if (ag->kept[i] >= 0 && getsockname(ag->kept[i], (struct sockaddr *)&ss, &sl) == 0 &&
		    ss.ss_family == AF_UNIX) {
			int fd = ag->kept[i];
			ag->kept[i] = -1;
			return fd;
		}
	}
	return -1;
}

void agent__keeper_hold(struct agent *ag, int fd)
{
	keep_bound(ag, fd);
}

void agent__keeper_drop(struct agent *ag, const char *listen)
{
	struct net_addr a[NET_ADDR_MAX];
	size_t n = 0;
	char m[1 + sizeof(struct sockaddr_storage)];
	if (ag->keeper_fd < 0 || net_resolve_tcp(listen, true, a, ARRAY_SIZE(a), &n, NULL) < 0 ||
	    n == 0)
		return;
	m[0] = MSG_DROP;
	memcpy(m + 1, &a[0].ss, a[0].len);
	tell(ag, m, 1 + a[0].len, -1);
}

void agent__keeper_ready(struct agent *ag)
{
	char m = MSG_READY;
	/* what the last agent kept and this one no longer has (a proxy it could not restore) */
	for (size_t i = 0; i < ag->n_kept; i++)
		if (ag->kept[i] >= 0) {
			char addr[NET_ADDR_STRLEN] = "";
			struct sockaddr_storage ss;
			socklen_t sl = sizeof(ss);
			char d[1 + sizeof(ss)];
			if (getsockname(ag->kept[i], (struct sockaddr *)&ss, &sl) == 0 &&
			    sl <= sizeof(ss)) {
				net_addr_str((struct sockaddr *)&ss, addr, sizeof(addr));
				d[0] = MSG_DROP;
				memcpy(d + 1, &ss, sl);
				tell(ag, d, 1 + sl, -1);
			}
			log_info("agent", "keeper: the listener on %s is no longer used; closed", addr);
			close(ag->kept[i]);
			ag->kept[i] = -1;
		}
	tell(ag, &m, 1, -1);
}

void agent__keeper_done(struct agent *ag)
{
	net_listen_keep_set(NULL);
	for (size_t i = 0; i < ag->n_kept; i++)
		if (ag->kept[i] >= 0)
			close(ag->kept[i]);
	free(ag->kept);
	ag->kept = NULL;
	ag->n_kept = 0;
	if (ag->keeper_fd >= 0)
		close(ag->keeper_fd); /* a clean stop: the keeper learns it from the exit status */
	ag->keeper_fd = -1;
}

/* ---- the keeper ------------------------------------------------------------------------------ */

struct keeper {
	const struct agent_opts *o;
	int held[KEEP_MAX];
	size_t n_held;
	int sfd;	  /* signalfd: SIGCHLD, SIGTERM, SIGINT */
	int pair;	  /* our end of the current agent's pair, -1 once it closed */
	pid_t pid;	  /* the current agent */
	bool ready;	  /* it said MSG_READY */
	int lock;	  /* keeper.lock: not inherited by the agent */
	sigset_t oldmask; /* the mask an agent starts with */
};

static void held_drop(struct keeper *k, const struct sockaddr *sa, socklen_t len)
{
	for (size_t i = 0; i < k->n_held; i++)
		if (fd_has_addr(k->held[i], sa, len)) {
			close(k->held[i]);
			k->held[i--] = k->held[--k->n_held];
		}
}

static void held_add(struct keeper *k, int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		held_drop(k, (struct sockaddr *)&ss, sl);
	if (k->n_held < KEEP_MAX)
		k->held[k->n_held++] = fd;
	else
		close(fd);
}

/* One message from the agent; false when the pair closed. */
static bool on_message(struct keeper *k)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	char m[1 + sizeof(struct sockaddr_storage)];
	struct iovec iov = {m, sizeof(m)};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = u.buf,
			    .msg_controllen = sizeof(u.buf)};
	int fd = -1;
	ssize_t n = recvmsg(k->pair, &mh, MSG_CMSG_CLOEXEC);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return true;
	if (n <= 0)
		return false;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
		    c->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(&fd, CMSG_DATA(c), sizeof(int));
	if (m[0] == MSG_HOLD && fd >= 0) {
		held_add(k, fd);
		fd = -1;
	} else if (m[0] == MSG_DROP && n > 1) {
		struct sockaddr_storage ss;
		memset(&ss, 0, sizeof(ss));
		memcpy(&ss, m + 1, (size_t)n - 1);
		held_drop(k, (struct sockaddr *)&ss, (socklen_t)(n - 1));
	} else if (m[0] == MSG_READY) {
		k->ready = true;
	}
	if (fd >= 0)
		close(fd);
	return send(k->pair, "K", 1, MSG_NOSIGNAL) == 1;
}

static int spawn_agent(struct keeper *k, int ready_fd, struct err *e)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return err_set(e, errno, "keeper: socketpair: %s", strerror(errno));
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		int er = errno;
		close(sv[0]);
		close(sv[1]);
		return err_set(e, er, "keeper: fork: %s", strerror(er));
	}
	if (pid == 0) { /* the agent: its own session, the signals it expects, the kept sockets */
		struct agent_keep kp = {.fd = sv[1], .kept = k->held, .n_kept = k->n_held};
		struct agent_opts o = *k->o;
		struct err ae = {0};
		close(sv[0]);
		close(k->sfd);
		close(k->lock); /* the keeper's lock ends with the keeper, not with its agent */
		sigprocmask(SIG_SETMASK, &k->oldmask, NULL);
		setsid();
		o.ready_fd = ready_fd;
		o.keep = &kp;
		int r = agent_run(&o, &ae);
		if (r < 0)
			log_error("agent", "%s", ae.msg);
		fflush(NULL);
		_exit(r < 0 ? 1 : 0);
	}
	close(sv[1]);
	k->pair = sv[0];
	k->pid = pid;
	k->ready = false;
	return 0;
}

static int take_keeper_lock(const char *state_dir, int *out_fd, struct err *e)
{
	char *path = xasprintf("%s/agent/keeper.lock", state_dir);
	char *dir = fs_join(state_dir, "agent");
	int r = fs_mkdir_p(dir, 0700, e), fd = -1;
	if (r == 0) {
		fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (fd < 0)
			r = err_set(e, errno, "cannot open %s: %s", path, strerror(errno));
		else if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
			close(fd);
			r = err_set(e, CAIRN_ECHECK,
				    "an agent keeper already runs for %s (it holds %s) and restarts "
				    "its agent; see 'cairn agent status'",
				    state_dir, path);
		} else {
			*out_fd = fd;
		}
	}
	free(path);
	free(dir);
	return r;
}

bool agent_keeper_present(const char *state_dir)
{
	char *path = xasprintf("%s/agent/keeper.lock", state_dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	bool held = false;
	if (fd >= 0) {
		held = flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
		close(fd);
	}
	free(path);
	return held;
}

static void describe(int status, char *out, size_t n)
{
	if (WIFSIGNALED(status))
		snprintf(out, n, "killed by signal %d", WTERMSIG(status));
	else
		snprintf(out, n, "exited with status %d", WEXITSTATUS(status));
}

int agent_keeper_run(const struct agent_opts *o, struct err *e)
{
	struct keeper k = {.o = o, .sfd = -1, .pair = -1};
	sigset_t set;
	int lock = -1, ready_fd = o->ready_fd, r, tries = 0, quick = 0;
	int64_t delay_ms = 0, spawned_ms = 0;
	pid_t dead = 0;
	bool first = true;
	bool stopping = false;

	if ((r = take_keeper_lock(o->state_dir, &lock, e)) < 0)
		return r;
	k.lock = lock;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, &k.oldmask);
	signal(SIGPIPE, SIG_IGN);
	k.sfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (k.sfd < 0) {
		r = err_set(e, errno, "keeper: signalfd: %s", strerror(errno));
		goto out;
	}
	for (;;) {
		if ((r = spawn_agent(&k, ready_fd, e)) < 0)
			goto out;
		spawned_ms = time_mono_ns() / 1000000;
		/* the first agent's failure to start is `--daemon`'s answer, not a reason to retry */
		bool was_first = first;
		first = false;
		if (ready_fd >= 0)
			close(ready_fd); /* the first agent says "ready" to `--daemon`'s parent */
		ready_fd = -1;
		int status = 0;
		while (k.pid > 0) {
			struct pollfd p[2] = {{.fd = k.sfd, .events = POLLIN},
					      {.fd = k.pair, .events = POLLIN}};
			if (poll(p, k.pair >= 0 ? 2 : 1, -1) < 0 && errno != EINTR) {
				r = err_set(e, errno, "keeper: poll: %s", strerror(errno));
				goto out;
			}
			if (k.pair >= 0 && (p[1].revents & (POLLIN | POLLHUP | POLLERR)) &&
			    !on_message(&k)) {
				close(k.pair);
				k.pair = -1;
			}
			struct signalfd_siginfo si;
			if (!(p[0].revents & POLLIN) || read(k.sfd, &si, sizeof(si)) != sizeof(si))
				continue;
			if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
				stopping = true; /* the agent stops cleanly; so do we, after it */
				kill(k.pid, (int)si.ssi_signo);
			}
			if (waitpid(k.pid, &status, WNOHANG) == k.pid) {
				dead = k.pid;
				k.pid = 0;
			}
		}
		if (k.pair >= 0)
			close(k.pair);
		k.pair = -1;
		char how[64];
		describe(status, how, sizeof(how));
		if (stopping || (WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
			r = 0;
			goto out;
		}
		if (!k.ready && (was_first || ++tries >= START_TRIES)) {
			r = err_set(e, CAIRN_ECHECK, "the agent %s before it was ready%s; not "
				    "restarting it (see this log)", how,
				    was_first ? "" : ", " KEEP_STR(START_TRIES) " times in a row");
			goto out;
		}
		if (k.ready)
			tries = 0;
		int64_t ran = time_mono_ns() / 1000000 - spawned_ms;
		/* the first death restarts at once; deaths in a row back off */
		quick = ran >= RESPAWN_STABLE_MS ? 0 : quick + 1;
		delay_ms = quick <= 1 ? 0 : RESPAWN_MIN_MS << (quick < 8 ? quick - 2 : 6);
		if (delay_ms > RESPAWN_MAX_MS)
			delay_ms = RESPAWN_MAX_MS;
		log_warn("agent", "keeper: the agent (pid %d) %s after %lld ms; restarting it%s "
			 "(%zu listeners kept)", (int)dead, how, (long long)ran,
			 delay_ms ? " after a pause" : " now", k.n_held);
		if (delay_ms) { /* a pause that a SIGTERM still ends */
			struct pollfd p = {.fd = k.sfd, .events = POLLIN};
			if (poll(&p, 1, (int)delay_ms) == 1) {
				struct signalfd_siginfo si;
				if (read(k.sfd, &si, sizeof(si)) == sizeof(si) &&
				    (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)) {
					r = 0;
					goto out;
				}
			}
		}
	}
out:
	for (size_t i = 0; i < k.n_held; i++)
		close(k.held[i]);
	if (k.sfd >= 0)
		close(k.sfd);
	if (ready_fd >= 0)
		close(ready_fd);
	sigprocmask(SIG_SETMASK, &k.oldmask, NULL);
	close(lock);
	return r;
}
