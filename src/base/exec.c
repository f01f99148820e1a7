/* exec: runs child processes from an argv — never through a shell — in their own process
 * group with inherited fds closed, optionally as another user (uid, one gid, umask 077); exec
 * failure comes back through a close-on-exec pipe. */
#include "base/base.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

/* Closes fds lo..hi (hi < 0: to the end). */
static void close_fds_between(int lo, int hi)
{
	if (hi >= 0 && hi < lo)
		return;
#ifdef SYS_close_range
	if (syscall(SYS_close_range, (unsigned)lo, hi < 0 ? ~0U : (unsigned)hi, 0) == 0)
		return;
#endif
	for (int fd = lo; fd < (hi < 0 ? 65536 : hi + 1); fd++)
		close(fd);
}

static char **build_env(char *const *extra)
{
	size_t n = 0, m = 0, i, j;
	char **env;
	while (environ[n])
		n++;
	while (extra && extra[m])
		m++;
	env = xcalloc(n + m + 1, sizeof(*env));
	j = 0;
	for (i = 0; i < n; i++) {
		/* extra entries override inherited ones of the same name */
		const char *eq = strchr(environ[i], '=');
		size_t klen = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
		bool overridden = false;
		for (size_t k = 0; k < m; k++)
			if (!strncmp(extra[k], environ[i], klen) && extra[k][klen] == '=')
				overridden = true;
		if (!overridden)
			env[j++] = environ[i];
	}
	for (i = 0; i < m; i++)
		env[j++] = extra[i];
	env[j] = NULL;
	return env;
}

int exec_run(const char *const argv[], const struct exec_opts *o, int *out_status, struct err *e)
{
	static const struct exec_opts none;
	int errpipe[2], outpipe[2] = { -1, -1 }, status = 0, child_errno = 0;
	char **env;
	pid_t pid;
	int64_t deadline;

	if (!o)
		o = &none;
	if (!argv || !argv[0])
		return err_set(e, EINVAL, "empty command");
	if (pipe2(errpipe, O_CLOEXEC) < 0)
		return err_set(e, errno, "pipe: %s", strerror(errno));
	if (o->out && pipe2(outpipe, O_CLOEXEC) < 0) {
		close(errpipe[0]);
		close(errpipe[1]);
		return err_set(e, errno, "pipe: %s", strerror(errno));
	}
	env = build_env(o->env_extra);
	pid_t parent = getpid();
	pid = fork();
	if (pid < 0) {
		int saved = errno;
		free(env);
		close(errpipe[0]);
		close(errpipe[1]);
		if (outpipe[0] >= 0) {
			close(outpipe[0]);
			close(outpipe[1]);
		}
		return err_set(e, saved, "fork: %s", strerror(saved));
	}
	if (pid == 0) {
		int fail;
		setpgid(0, 0);
		proc_child_nofile();
		if (o->parent_death_signal > 0) {
			prctl(PR_SET_PDEATHSIG, o->parent_death_signal);
			if (getppid() != parent) /* the caller is already gone */
				_exit(127);
		}
		signal(SIGPIPE, SIG_DFL);
		if (outpipe[1] >= 0) {
			dup2(outpipe[1], 1);
			dup2(outpipe[1], 2);
		} else if (o->stdout_to_stderr) {
			dup2(2, 1);
		}
		/* close every inherited fd but the close-on-exec error pipe */
		close_fds_between(3, errpipe[1] - 1);
		close_fds_between(errpipe[1] + 1, -1);
		if (o->cwd && chdir(o->cwd) < 0) {
			fail = errno;
		} else {
			execvpe(argv[0], (char *const *)argv, env);
			fail = errno;
		}
		{
			ssize_t w = write(errpipe[1], &fail, sizeof(fail));
			(void)w;
		}
		_exit(127);
	}
	free(env);
	setpgid(pid, pid);
	close(errpipe[1]);
	if (outpipe[1] >= 0)
		close(outpipe[1]);

	deadline = o->timeout_ms > 0 ? time_mono_ns() + o->timeout_ms * 1000000 : 0;
	if (outpipe[0] >= 0) {
		char chunk[8192];
		for (;;) {
			struct pollfd pfd = { outpipe[0], POLLIN, 0 };
			int wait_ms = -1;
			if (deadline) {
				int64_t left = (deadline - time_mono_ns()) / 1000000;
				wait_ms = left < 0 ? 0 : (int)left;
			}
			int pr = poll(&pfd, 1, wait_ms);
			if (pr < 0 && errno == EINTR)
				continue;
			if (pr == 0) {
				kill(-pid, SIGKILL);
				break;
			}
			ssize_t n = read(outpipe[0], chunk, sizeof(chunk));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			if (o->out->len < o->out->max)
				buf_add(o->out, chunk, (size_t)n > o->out->max - o->out->len
							       ? o->out->max - o->out->len
							       : (size_t)n);
		}
		close(outpipe[0]);
	}
	if (read(errpipe[0], &child_errno, sizeof(child_errno)) != sizeof(child_errno))
		child_errno = 0;
	close(errpipe[0]);
	for (;;) {
		pid_t w = deadline ? waitpid(pid, &status, WNOHANG) : waitpid(pid, &status, 0);
		if (w < 0 && errno == EINTR)
			continue;
		if (w == pid)
			break;
		if (w < 0)
			return err_set(e, errno, "waitpid: %s", strerror(errno));
		if (time_mono_ns() > deadline) {
			kill(-pid, SIGKILL);
			waitpid(pid, &status, 0);
			return err_set(e, ETIMEDOUT, "%s did not finish within %lldms and was killed",
				       argv[0], (long long)o->timeout_ms);
		}
		struct timespec ts = { 0, 5 * 1000000 };
		nanosleep(&ts, NULL);
	}
	if (child_errno)
		return err_set(e, child_errno, "cannot run %s: %s", argv[0], strerror(child_errno));
	if (deadline && time_mono_ns() > deadline && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
		return err_set(e, ETIMEDOUT, "%s did not finish within %lldms and was killed", argv[0],
			       (long long)o->timeout_ms);
	if (out_status)
		*out_status = status;
	return 0;
}

void exec_describe_status(int status, char *out, size_t n)
{
	if (WIFEXITED(status))
		snprintf(out, n, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(out, n, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
	else
		snprintf(out, n, "ended with wait status %d", status);
}

/* Moves fd out of the 0..9 range (close-on-exec) so the dup2s below never clobber a source. */
static int fd_high(int fd)
{
	return fd < 0 ? -1 : fcntl(fd, F_DUPFD_CLOEXEC, 10);
}

static void child_setup_fd(int src, int target)
{
	if (src < 0) {
		int nul = open("/dev/null", O_RDWR);
		if (nul >= 0 && nul != target) {
			dup2(nul, target);
			close(nul);
		}
		return;
	}
	dup2(src, target);
}

int exec_spawn(const char *const argv[], const struct exec_spawn_opts *o, pid_t *out_pid,
	       struct err *e)
{
	int errpipe[2], child_errno[2] = { 0, 0 };
	int src[4] = { -1, -1, -1, -1 };
	const int want[4] = { o->fd_in, o->fd_out, o->fd_err, o->fd_3 };
	pid_t pid;
	ssize_t n;

	if (!argv || !argv[0])
		return err_set(e, EINVAL, "empty command");
	if (pipe2(errpipe, O_CLOEXEC) < 0)
		return err_set(e, errno, "pipe: %s", strerror(errno));
	for (int i = 0; i < 4; i++)
		src[i] = fd_high(want[i]);
	pid_t parent = getpid();
	pid = fork();
	if (pid < 0) {
		int saved = errno;
		for (int i = 0; i < 4; i++)
			if (src[i] >= 0)
				close(src[i]);
		close(errpipe[0]);
		close(errpipe[1]);
		return err_set(e, saved, "fork: %s", strerror(saved));
	}
	if (pid == 0) {
		sigset_t none;
		int fail[2] = { 0, 0 }; /* what failed (0 exec, 1 cwd, 2 user), errno */
		setpgid(0, 0);
		proc_child_nofile();
		if (o->parent_death_signal > 0) {
			prctl(PR_SET_PDEATHSIG, o->parent_death_signal);
			if (getppid() != parent) /* the parent is already gone */
				_exit(127);
		}
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		for (int s = 1; s < NSIG; s++)
			signal(s, SIG_DFL);
		for (int i = 0; i < 3; i++)
			child_setup_fd(src[i], i);
		if (src[3] >= 0)
			dup2(src[3], 3);
		close_fds_between(src[3] >= 0 ? 4 : 3, errpipe[1] - 1);
		close_fds_between(errpipe[1] + 1, -1);
		if (o->set_user)
			umask(077);
		/* the user first, then cwd: the app must be able to enter it by itself */
		if (o->set_user && (setgroups(1, &o->gid) < 0 || setresgid(o->gid, o->gid, o->gid) < 0 ||
				    setresuid(o->uid, o->uid, o->uid) < 0)) {
			fail[0] = 2;
			fail[1] = errno;
		} else if (o->cwd && chdir(o->cwd) < 0) {
			fail[0] = o->set_user ? 1 : 0; /* without a user switch: the old message */
			fail[1] = errno;
		} else {
			if (o->env)
				execvpe(argv[0], (char *const *)argv, o->env);
			else
				execvp(argv[0], (char *const *)argv);
			fail[1] = errno;
		}
		n = write(errpipe[1], fail, sizeof(fail));
		(void)n;
		_exit(127);
	}
	setpgid(pid, pid);
	for (int i = 0; i < 4; i++)
		if (src[i] >= 0)
			close(src[i]);
	close(errpipe[1]);
	do
		n = read(errpipe[0], child_errno, sizeof(child_errno));
	while (n < 0 && errno == EINTR);
	close(errpipe[0]);
	if (n == sizeof(child_errno)) {
		int en = child_errno[1];
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		if (child_errno[0] == 2)
			return err_set(e, en, "cannot run %s as uid %u gid %u: %s", argv[0],
				       (unsigned)o->uid, (unsigned)o->gid, strerror(en));
		if (child_errno[0] == 1)
			return err_set(e, en,
				       "cannot run %s: uid %u cannot enter its directory (%s; every "
				       "directory above it must be searchable by others: chmod o+x): %s",
				       argv[0], (unsigned)o->uid, strerror(en), o->cwd);
		return err_set(e, en, "cannot run %s: %s", argv[0], strerror(en));
	}
	*out_pid = pid;
	return 0;
}
