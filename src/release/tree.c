/* tree: checks a materialised release directory (<state>/releases/<hex>) against its
 * manifest — the stamp (a hash of every entry's type, mode, size, inode and mtime, and of each
 * directory's entry count: cheap, for activation) and the full check (every file re-hashed,
 * every name accounted for: for verify). Reads only; never repairs, never follows a link. */
#include "release/release-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static long count_entries(int root, const char *rel)
{
	int fd = openat(root, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	long n = 0;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

int release_tree_stamp(const struct manifest *m, const char *dir, char *out, struct err *e)
{
	int root = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct hasher *h;
	char line[160];

	if (root < 0)
		return err_set(e, errno, "cannot open %s: %s", dir, strerror(errno));
	h = hasher_new();
	snprintf(line, sizeof(line), "top %ld\n", count_entries(root, "."));
	hasher_update(h, line, strlen(line));
	for (size_t i = 0; i < m->n_entries; i++) {
		const struct manifest_entry *en = &m->entries[i];
		struct stat sb;
		int n;
		if (fstatat(root, en->path, &sb, AT_SYMLINK_NOFOLLOW) < 0)
			n = snprintf(line, sizeof(line), "%zu missing\n", i);
		else
			n = snprintf(line, sizeof(line), "%zu %o %lld %llu %lld.%09ld %ld\n", i,
				     (unsigned)sb.st_mode, (long long)sb.st_size,
				     (unsigned long long)sb.st_ino, (long long)sb.st_mtim.tv_sec,
				     sb.st_mtim.tv_nsec,
				     S_ISDIR(sb.st_mode) ? count_entries(root, en->path) : 0L);
		hasher_update(h, line, (size_t)n);
		hasher_update(h, en->path, strlen(en->path) + 1);
	}
	hasher_final(h, out);
	close(root);
	return 0;
}

static int by_path(const void *key, const void *elem)
{
	return strcmp(key, ((const struct manifest_entry *)elem)->path);
}

/* Names in dir (rel, "." for the top) that the manifest does not list. */
static size_t extra_names(const struct manifest *m, int root, const char *rel,
			  release_verify_cb cb, void *ctx)
{
	int fd = openat(root, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;
	size_t bad = 0;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return 0; /* reported as its own entry's problem */
	}
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char *p = strcmp(rel, ".") ? xasprintf("%s/%s", rel, de->d_name)
					   : xstrdup(de->d_name);
		if (!bsearch(p, m->entries, m->n_entries, sizeof(*m->entries), by_path)) {
			bad++;
			if (cb)
				cb(ctx, p, "is not part of the release (added after activation)");
		}
		free(p);
	}
	closedir(d);
	return bad;
}

static const char *entry_problem(int root, const struct manifest_entry *en, char *msg, size_t n)
{
	struct stat sb;
	char got[HASH_HEX_LEN + 1];

	if (fstatat(root, en->path, &sb, AT_SYMLINK_NOFOLLOW) < 0)
		return snprintf(msg, n, "missing: %s", strerror(errno)), msg;
	switch (en->type) {
	case MANIFEST_DIR:
		if (!S_ISDIR(sb.st_mode))
			return "should be a directory";
		if ((sb.st_mode & 07777) != 0555)
			return snprintf(msg, n, "mode changed to %03o (0555 expected)",
					(unsigned)(sb.st_mode & 07777)), msg;
		return NULL;
	case MANIFEST_LINK: {
		char t[4096];
		ssize_t k;
		if (!S_ISLNK(sb.st_mode))
			return "should be a symlink";
		k = readlinkat(root, en->path, t, sizeof(t) - 1);
		if (k < 0 || (t[k] = 0, strcmp(t, en->target)))
			return "symlink points elsewhere";
		return NULL;
	}
	default: {
		unsigned want = en->mode & 0111 ? 0555 : 0444;
		if (!S_ISREG(sb.st_mode))
			return "should be a regular file";
		if ((sb.st_mode & 07777) != want)
			return snprintf(msg, n, "mode changed to %03o (%03o expected)",
					(unsigned)(sb.st_mode & 07777), want), msg;
		if (sb.st_size != en->size)
			return snprintf(msg, n, "size changed to %lld (%lld expected)",
					(long long)sb.st_size, (long long)en->size), msg;
		int fd = openat(root, en->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
		int64_t r = fd < 0 ? -errno : hash_fd(fd, got);
		if (fd >= 0)
			close(fd);
		if (r < 0)
			return snprintf(msg, n, "cannot read: %s", strerror((int)-r)), msg;
		if (strcmp(got, en->digest))
			return snprintf(msg, n, "content differs from the release (sha256 %.12s, "
					"%.12s expected)", got, en->digest), msg;
		return NULL;
	}
	}
}

int release_tree_check(const struct manifest *m, const char *dir, release_verify_cb cb,
		       void *ctx, struct err *e)
{
	int root = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	size_t bad = 0;
	char msg[256];

	if (root < 0)
		return err_set(e, errno, "cannot open %s: %s", dir, strerror(errno));
	bad += extra_names(m, root, ".", cb, ctx);
	for (size_t i = 0; i < m->n_entries; i++) {
		const struct manifest_entry *en = &m->entries[i];
		const char *p = entry_problem(root, en, msg, sizeof(msg));
		if (p) {
			bad++;
			if (cb)
				cb(ctx, en->path, p);
		} else if (en->type == MANIFEST_DIR) {
			bad += extra_names(m, root, en->path, cb, ctx);
		}
	}
	close(root);
	if (bad)
		return err_set(e, CAIRN_ECORRUPT,
			       "%zu entries of %s differ from the release: it was changed after "
			       "activation",
			       bad, dir);
	return 0;
}
