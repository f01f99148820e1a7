/* base/spawn: starts a detached process (argv only, never a shell) that outlives its parent:
 * double fork, own session, fds 0-2 on /dev/null, every other fd closed. Exec failure comes
 * back through a close-on-exec pipe, so a missing program is an error, not a silent child. */
#include "base/base.h"
#include "base/spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void close_from(int lowfd, int keep)
{
	long max = sysconf(_SC_OPEN_MAX);
	for (int fd = lowfd; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
		if (fd != keep)
			close(fd);
}

int spawn_detached(const char *const argv[], struct err *e)
{
	int p[2], status, child_errno = 0;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return err_set(e, errno, "pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0) {
		int r = errno;
		close(p[0]);
		close(p[1]);
		return err_set(e, r, "fork: %s", strerror(r));
	}
	if (pid == 0) {
		close(p[0]);
		setsid();
		pid_t g = fork();
		if (g != 0)
			_exit(g < 0 ? 1 : 0);
		int null = open("/dev/null", O_RDWR);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
			dup2(null, 2);
		}
		close_from(3, p[1]);
		signal(SIGPIPE, SIG_DFL);
		execvp(argv[0], (char *const *)argv);
		int err = errno;
		(void)!write(p[1], &err, sizeof(err));
		_exit(127);
	}
	close(p[1]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	ssize_t n;
	while ((n = read(p[0], &child_errno, sizeof(child_errno))) < 0 && errno == EINTR)
		;
	close(p[0]);
	if (n == (ssize_t)sizeof(child_errno))
		return err_set(e, child_errno, "cannot run %s: %s", argv[0], strerror(child_errno));
	return 0;
}
