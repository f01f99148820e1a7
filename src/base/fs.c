/* fs: small file-system helpers with exact error messages. Never follows symlinks when
 * removing; writes that must survive a crash go through fs_write_atomic. */
#include "base/base.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fs_mkdir_p(const char *path, mode_t mode, struct err *e)
{
	char *p = xstrdup(path);
	int r = 0;

	for (char *s = p + 1;; s++) {
		if (*s == '/' || *s == 0) {
			char c = *s;
			*s = 0;
			if (mkdir(p, mode) < 0 && errno != EEXIST) {
				r = err_set(e, errno, "cannot create directory %s: %s", p, strerror(errno));
				break;
			}
			*s = c;
			if (!c)
				break;
		}
	}
	if (r == 0 && !fs_is_dir(path))
		r = err_set(e, ENOTDIR, "%s exists and is not a directory", path);
	free(p);
	return r;
}

int fs_secure_state_dir(const char *dir, struct err *e)
{
	static const char *const pass[] = {"releases", "data"};
	mode_t open_mode = geteuid() == 0 ? 0711 : 0700;
	struct stat sb;
	struct dirent *de;
	DIR *d;
	int r = fs_mkdir_p(dir, 0700, e);

	if (r < 0)
		return r;
	if (lstat(dir, &sb) < 0)
		return err_set(e, errno, "cannot stat %s: %s", dir, strerror(errno));
	if (sb.st_uid != geteuid())
		return err_set(e, EPERM,
			       "state directory %s belongs to uid %u, not to us (uid %u): chown it "
			       "or choose another with --state",
			       dir, (unsigned)sb.st_uid, (unsigned)geteuid());
	if ((sb.st_mode & 07777) != open_mode && chmod(dir, open_mode) < 0)
		return err_set(e, errno, "cannot chmod %s: %s", dir, strerror(errno));
	if (!(d = opendir(dir)))
		return err_set(e, errno, "cannot open %s: %s", dir, strerror(errno));
	while ((de = readdir(d))) {
		mode_t want;
		bool passable = false;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 || S_ISLNK(sb.st_mode))
			continue;
		for (size_t i = 0; i < ARRAY_SIZE(pass); i++)
			passable |= !strcmp(de->d_name, pass[i]) && S_ISDIR(sb.st_mode);
		want = passable ? open_mode : sb.st_mode & 07700;
		if ((sb.st_mode & 07777) != want && fchmodat(dirfd(d), de->d_name, want, 0) < 0 &&
		    errno != ENOENT) {
			r = err_set(e, errno, "cannot chmod %s/%s: %s", dir, de->d_name,
				    strerror(errno));
			break;
		}
	}
	closedir(d);
	return r;
}

int fs_read_fd(int fd, struct buf *b)
{
	char chunk[65536];
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
		int r = buf_add(b, chunk, (size_t)n);
		if (r < 0)
			return r;
	}
}

int fs_read_file(const char *path, struct buf *b, struct err *e)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int r;
	if (fd < 0)
		return err_set(e, errno, "cannot open %s: %s", path, strerror(errno));
	r = fs_read_fd(fd, b);
	close(fd);
	if (r == -E2BIG)
		return err_set(e, E2BIG, "%s is larger than %zu bytes", path, b->max);
	if (r < 0)
		return err_set(e, -r, "cannot read %s: %s", path, strerror(-r));
	return 0;
}

int fs_copy_fd(int in, int out)
{
	char buf[65536];

	for (;;) {
		ssize_t n = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
		if (n > 0 || (n < 0 && errno == EINTR))
			continue;
		if (n == 0)
			return 0;
		if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
			return -errno;
		break; /* not supported between these files: copy through user space */
	}
	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : 0;
		int r = fs_write_all(out, buf, (size_t)n);
		if (r < 0)
			return r;
	}
}

int fs_write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = write(fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

int fs_fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r = 0;
	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		r = -errno;
	close(fd);
	return r;
}

static int write_replace(const char *path, const void *data, size_t n, mode_t mode, bool durable,
			 struct err *e)
{
	char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
	char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	int fd, r;

	if (slash && slash != dir)
		*slash = 0;
	else
		strcpy(dir, slash ? "/" : ".");
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0) {
		r = err_set(e, errno, "cannot create %s: %s", tmp, strerror(errno));
		goto fail;
	}
	r = fs_write_all(fd, data, n);
	if (r == 0 && durable && fsync(fd) < 0)
		r = -errno;
	if (r == 0 && fchmod(fd, mode) < 0)
		r = -errno;
	close(fd);
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0) {
		unlink(tmp);
		r = err_set(e, -r, "cannot write %s: %s", path, strerror(-r));
		goto fail;
	}
	if (durable)
		fs_fsync_dir(dir);
fail:
	free(tmp);
	free(dir);
	return r;
}

int fs_write_atomic(const char *path, const void *data, size_t n, mode_t mode, struct err *e)
{
	return write_replace(path, data, n, mode, true, e);
}

int fs_write_replace(const char *path, const void *data, size_t n, mode_t mode, struct err *e)
{
	return write_replace(path, data, n, mode, false, e);
}

static int rm_rf_at(int dfd, const char *name)
{
	struct stat st;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (S_ISDIR(st.st_mode)) {
		int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		DIR *d;
		struct dirent *de;
		int r = 0;
		if (fd < 0)
			return -errno;
		/* Read-only trees (release dirs, objects) must still be removable. */
		fchmod(fd, 0700);
		d = fdopendir(fd);
		if (!d) {
			close(fd);
			return -errno;
		}
		while ((de = readdir(d))) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			int rr = rm_rf_at(dirfd(d), de->d_name);
			if (rr < 0 && r == 0)
				r = rr;
		}
		closedir(d);
		if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && r == 0)
			r = -errno;
		return r;
	}
	if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

int fs_rm_rf(const char *path)
{
	return rm_rf_at(AT_FDCWD, path);
}

bool fs_is_dir(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool fs_exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

char *fs_join(const char *a, const char *b)
{
	size_t n = strlen(a);
	while (n > 1 && a[n - 1] == '/')
		n--;
	while (*b == '/')
		b++;
	if (!*b)
		return xstrndup(a, n);
	return xasprintf("%.*s/%s", (int)n, a, b);
}

char *fs_mkdtemp(const char *parent, struct err *e)
{
	char *t = fs_join(parent, "cairn-XXXXXX");
	if (!mkdtemp(t)) {
		err_set(e, errno, "cannot create a temporary directory in %s: %s", parent, strerror(errno));
		free(t);
		return NULL;
	}
	return t;
}

char *fs_realpath(const char *path, struct err *e)
{
	char *p = realpath(path, NULL);
	if (!p)
		err_set(e, errno, "%s: %s", path, strerror(errno));
	return p;
}

int fs_pread_all(int fd, void *p, size_t n, int64_t off)
{
	for (size_t done = 0; done < n;) {
		ssize_t r = pread(fd, (char *)p + done, n - done, (off_t)(off + (int64_t)done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO;
		done += (size_t)r;
	}
	return 0;
}
