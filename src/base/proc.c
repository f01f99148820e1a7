/* proc: facts about processes from /proc and pidfds — the start time that tells a process
 * from a later one that reuses its pid, liveness (zombies count as gone), pidfd_open — and the
 * own descriptor limit raised to what the box allows. Never signals or waits. */
#include "base/base.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

int proc_start_time(pid_t pid, uint64_t *out_start)
{
	char path[64], data[1024];
	int fd;
	ssize_t n;

	if (pid <= 0)
		return -ESRCH;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	n = read(fd, data, sizeof(data) - 1);
	close(fd);
	if (n <= 0)
		return -ESRCH;
	data[n] = 0;
	/* "pid (comm) S ppid ..." — comm may hold spaces and parens: parse after the last ')' */
	char *p = strrchr(data, ')');
	if (!p || p[1] != ' ')
		return -EIO;
	p += 2;
	if (*p == 'Z' || *p == 'X')
		return -ESRCH;
	/* p is at field 3 (state); the start time is field 22 */
	for (int field = 3; field < 22; field++) {
		p = strchr(p, ' ');
		if (!p)
			return -EIO;
		p++;
	}
	char *end;
	unsigned long long v = strtoull(p, &end, 10);
	if (end == p)
		return -EIO;
	*out_start = v;
	return 0;
}

bool proc_alive(pid_t pid, uint64_t start)
{
	uint64_t now;
	return proc_start_time(pid, &now) == 0 && now == start;
}

int proc_pidfd_open(pid_t pid)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);
	return fd < 0 ? -errno : fd;
}

static struct rlimit nofile_before; /* rlim_cur 0: not raised */

void proc_child_nofile(void)
{
	if (nofile_before.rlim_cur)
		setrlimit(RLIMIT_NOFILE, &nofile_before);
}

long proc_raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -errno;
	rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > (1u << 20) ? (1u << 20)
									     : rl.rlim_max;
	if (rl.rlim_cur < want) {
		struct rlimit nl = { want, rl.rlim_max };
		if (setrlimit(RLIMIT_NOFILE, &nl) == 0) { /* else (above nr_open): keep what we have */
			if (!nofile_before.rlim_cur)
				nofile_before = rl;
			rl = nl;
		}
	}
	return rl.rlim_cur == RLIM_INFINITY ? (1L << 20) : (long)rl.rlim_cur;
}

bool proc_run_user_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	bool digits = n > 0;

	if (n == 0 || n > 32 || !strcmp(s, "root"))
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			digits = false;
	if (digits) /* a uid: 1..2^31-1, no leading zero */
		return s[0] != '0' && n <= 10 && strtoll(s, NULL, 10) <= 0x7fffffff;
	if (!((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
		      s[i] == '.' || s[i] == '-'))
			return false;
	return true;
}
