/* tmpclean: what killed processes left in <state>/tmp — temp objects of an import or upload,
 * build scratch directories (and the build command's processes still running in them), part
 * files of uploads nobody resumed. Temp objects and scratch dirs are named after their owner
 * (pid and start time), so a sweep removes only those whose owner is gone, whoever runs it
 * (controller, agent, build, import share the directory); a part file expires after
 * OBJSTORE_PART_TTL_S without a write and is never removed while its sender holds its lock. */
#include "release/release-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define LEGACY_AGE_S 3600 /* names without an owner (older cairn): removed after an hour */

void objstore__owner_tag(char *out, size_t n)
{
	uint64_t start = 0;
	proc_start_time(getpid(), &start);
	snprintf(out, n, "%d.%llu", (int)getpid(), (unsigned long long)start);
}

char *objstore_tmp_mkdir(struct objstore *os, const char *kind, struct err *e)
{
	char tag[48];
	objstore__owner_tag(tag, sizeof(tag));
	char *t = xasprintf("%s/tmp/%s-%s-XXXXXX", objstore_state_dir(os), kind, tag);
	if (!mkdtemp(t)) {
		err_set(e, errno, "cannot create a temporary directory in %s/tmp: %s",
			objstore_state_dir(os), strerror(errno));
		free(t);
		return NULL;
	}
	return t;
}

/* "obj-PID.START-XXXXXX" → its owner; false for a name without one */
static bool owner_of(const char *name, pid_t *pid, uint64_t *start)
{
	const char *p = strchr(name, '-');
	char *end;
	if (!p)
		return false;
	long long v = strtoll(p + 1, &end, 10);
	if (end == p + 1 || *end != '.' || v <= 0)
		return false;
	unsigned long long s = strtoull(end + 1, &end, 10);
	if (*end != '-')
		return false;
	*pid = (pid_t)v;
	*start = s;
	return true;
}

/* Processes whose working directory is inside dir (a dead build's command and what it
 * started): their process groups get SIGKILL, ours excepted. */
static size_t kill_inside(const char *dir)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	size_t n = 0, len = strlen(dir);
	if (!d)
		return 0;
	while ((de = readdir(d))) {
		char link[64], cwd[4096];
		pid_t pid = (pid_t)atoi(de->d_name);
		if (pid <= 0 || pid == getpid())
			continue;
		snprintf(link, sizeof(link), "/proc/%d/cwd", (int)pid);
		ssize_t k = readlink(link, cwd, sizeof(cwd) - 1);
		if (k < (ssize_t)len)
			continue;
		cwd[k] = 0;
		if (strncmp(cwd, dir, len) || (cwd[len] && cwd[len] != '/'))
			continue;
		pid_t g = getpgid(pid);
		if (g > 0 && g != getpgrp())
			kill(-g, SIGKILL);
		kill(pid, SIGKILL);
		n++;
	}
	closedir(d);
	return n;
}

static int64_t du(const char *path)
{
	struct stat st;
	int64_t n = 0;
	if (lstat(path, &st) < 0)
		return 0;
	if (!S_ISDIR(st.st_mode))
		return st.st_size;
	DIR *d = opendir(path);
	struct dirent *de;
	while (d && (de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			char *p = fs_join(path, de->d_name);
			n += du(p);
			free(p);
		}
	if (d)
		closedir(d);
	return n;
}

/* A part file nobody wrote for ttl seconds and nobody holds: removed. */
static bool part_expired(const char *path, int64_t now, int64_t ttl)
{
	struct stat st;
	bool gone = false;
	int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return false;
	if (fstat(fd, &st) == 0 && now - st.st_mtim.tv_sec >= ttl &&
	    flock(fd, LOCK_EX | LOCK_NB) == 0)
		gone = unlink(path) == 0;
	close(fd); /* the lock goes with it */
	return gone;
}

int objstore_tmp_clean(struct objstore *os, int64_t part_ttl_s, struct objstore_clean *out)
{
	char *tmp = fs_join(objstore_state_dir(os), "tmp");
	int64_t now = time_now_ns() / 1000000000;
	DIR *d = opendir(tmp);
	struct dirent *de;
	struct objstore_clean c = {0};
	if (!d) {
		int r = -errno;
		free(tmp);
		return r;
	}
	while ((de = readdir(d))) {
		const char *nm = de->d_name;
		bool obj = str_starts(nm, "obj-"), build = str_starts(nm, "build-"),
		     legacy_build = str_starts(nm, "cairn-");
		char *path;
		pid_t pid;
		uint64_t start;
		struct stat st;
		if (!obj && !build && !legacy_build && !str_starts(nm, "part-"))
			continue;
		path = fs_join(tmp, nm);
		if (lstat(path, &st) < 0)
			goto next;
		if (str_starts(nm, "part-")) {
			int64_t sz = st.st_size;
			if (S_ISREG(st.st_mode) && part_expired(path, now, part_ttl_s))
				c.removed++, c.bytes += sz;
			goto next;
		}
		if (owner_of(nm, &pid, &start) ? proc_alive(pid, start)
					       : now - st.st_mtim.tv_sec < LEGACY_AGE_S)
			goto next;
		if (S_ISDIR(st.st_mode))
			c.killed += kill_inside(path);
		c.bytes += du(path);
		if (fs_rm_rf(path) == 0)
			c.removed++;
	next:
		free(path);
	}
	closedir(d);
	free(tmp);
	if (out)
		*out = c;
	return 0;
}

void objstore_tmp_clean_logged(struct objstore *os, const char *who)
{
	struct objstore_clean c;
	if (objstore_tmp_clean(os, OBJSTORE_PART_TTL_S, &c) == 0 && (c.removed || c.killed))
		log_info(who, "removed %zu leftover%s (%.1f MiB) of killed processes from %s/tmp%s",
			 c.removed, c.removed == 1 ? "" : "s", (double)c.bytes / (1024.0 * 1024.0),
			 objstore_state_dir(os),
			 c.killed ? "; killed what a dead build had left running there" : "");
}
