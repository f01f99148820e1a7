/* activate: materialises <state>/releases/<hex>/ from the object store, read-only. Every
 * object's digest is verified before anything is made; the tree is built in a temp dir and
 * renamed into place, so a half-made release dir is never seen. Files without x bits are
 * hard links to their objects (0444); executables are copies made 0555 (hashed while copied),
 * because a link shares the object's inode and the store never changes an object's mode.
 * A non-root agent copies every file: its apps run as itself and could write a link.
 * A finished tree is sealed (<state>/agent/seals/<hex>: its stamp, release_tree_stamp); an
 * existing tree is reused only while its stamp matches the seal, else it is rebuilt. */
#include "agent/agent-internal.h"

#include "release/release.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static int copy_checked(const char *src, const char *dst, const char *digest, struct err *e)
{
	char buf[65536], got[HASH_HEX_LEN + 1];
	int in = open(src, O_RDONLY | O_CLOEXEC), out = -1, r = 0;
	struct hasher *h;

	if (in < 0)
		return err_set(e, errno, "cannot open %s: %s", src, strerror(errno));
	out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0555);
	if (out < 0) {
		r = err_set(e, errno, "cannot create %s: %s", dst, strerror(errno));
		close(in);
		return r;
	}
	h = hasher_new();
	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = err_set(e, errno, "cannot read %s: %s", src, strerror(errno));
			break;
		}
		if (n == 0)
			break;
		hasher_update(h, buf, (size_t)n);
		if ((r = fs_write_all(out, buf, (size_t)n)) < 0) {
			r = err_set(e, -r, "cannot write %s: %s", dst, strerror(-r));
			break;
		}
	}
	hasher_final(h, got);
	if (r == 0 && strcmp(got, digest) != 0)
		r = err_set(e, CAIRN_ECORRUPT, "object %.12s changed while it was copied", digest);
	if (r == 0 && fchmod(out, 0555) < 0)
		r = err_set(e, errno, "chmod %s: %s", dst, strerror(errno));
	close(in);
	close(out);
	return r;
}

static int place_entry(struct objstore *os, const char *root, const struct manifest_entry *en,
		       struct err *e)
{
	char *dst = fs_join(root, en->path);
	int r = 0;

	switch (en->type) {
	case MANIFEST_DIR:
		if (mkdir(dst, 0755) < 0)
			r = err_set(e, errno, "cannot create %s: %s", dst, strerror(errno));
		break;
	case MANIFEST_LINK:
		if (symlink(en->target, dst) < 0)
			r = err_set(e, errno, "cannot create symlink %s: %s", dst, strerror(errno));
		break;
	case MANIFEST_FILE: {
		char *obj = objstore_path(os, en->digest);
		if ((en->mode & 0111) || geteuid() != 0)
			r = copy_checked(obj, dst, en->digest, e);
		else if (link(obj, dst) < 0)
			r = errno == EXDEV || errno == EMLINK || errno == EPERM
				? copy_checked(obj, dst, en->digest, e)
				: err_set(e, errno, "cannot link %s: %s", dst, strerror(errno));
		if (r == 0 && !(en->mode & 0111))
			chmod(dst, 0444); /* a copy (EXDEV) is made 0555 first */
		free(obj);
		break;
	}
	default:
		r = err_set(e, CAIRN_ECORRUPT, "unknown entry type for %s", en->path);
	}
	free(dst);
	return r;
}

/* The seal file, open and locked (flock): one activation of a release at a time decides
 * whether its tree stands; others wait and then find it sealed. */
static int open_seal(const char *state_dir, const char *path, int *out_fd, struct err *e)
{
	char *dir = fs_join(state_dir, "agent/seals");
	int r = fs_mkdir_p(dir, 0700, e), fd = -1;
	free(dir);
	if (r < 0)
		return r;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return err_set(e, errno, "cannot open %s: %s", path, strerror(errno));
	while (flock(fd, LOCK_EX) < 0)
		if (errno != EINTR) {
			r = err_set(e, errno, "cannot lock %s: %s", path, strerror(errno));
			close(fd);
			return r;
		}
	*out_fd = fd;
	return 0;
}

/* Is the tree at final what this agent made? (its stamp is the one sealed) */
static bool still_sealed(const struct manifest *m, const char *final, int seal_fd)
{
	char want[HASH_HEX_LEN + 2] = {0}, got[HASH_HEX_LEN + 1];
	struct err e;
	ssize_t n = pread(seal_fd, want, sizeof(want) - 1, 0);

	if (n != HASH_HEX_LEN)
		return false;
	return release_tree_stamp(m, final, got, &e) == 0 && !strcmp(got, want);
}

static int seal(const struct manifest *m, const char *final, int seal_fd, const char *path,
		struct err *e)
{
	char stamp[HASH_HEX_LEN + 1];
	int r = release_tree_stamp(m, final, stamp, e);
	if (r < 0)
		return r;
	/* a torn write (crash) is only a seal that does not match: the tree is made again */
	if (ftruncate(seal_fd, 0) < 0 || pwrite(seal_fd, stamp, HASH_HEX_LEN, 0) != HASH_HEX_LEN)
		return err_set(e, errno, "cannot write %s: %s", path, strerror(errno));
	return 0;
}

int agent_activate(struct objstore *os, const char *state_dir, const char *id, char **out_path,
		   size_t *out_files, struct err *e)
{
	struct manifest *m = NULL;
	char *releases = fs_join(state_dir, "releases"), *final = NULL, *tmp = NULL, *sealp = NULL;
	const char *hex;
	size_t files = 0;
	int r, seal_fd = -1;
	struct stat was = {0}; /* a tree made again keeps its top's group and mode */

	if ((r = release_load(os, id, &m, e)) < 0)
		goto done;
	hex = str_starts(id, "sha256:") ? id + 7 : id;
	for (size_t i = 0; i < m->n_entries; i++)
		if (m->entries[i].type == MANIFEST_FILE)
			files++;
	final = fs_join(releases, hex);
	sealp = xasprintf("%s/agent/seals/%s", state_dir, hex);
	if ((r = open_seal(state_dir, sealp, &seal_fd, e)) < 0)
		goto done;
	/* the directory only ever appears whole (rename below), and is sealed once there */
	if (fs_is_dir(final)) {
		if (still_sealed(m, final, seal_fd))
			goto ok;
		/* changed since it was made (or made before seals): set aside, made anew */
		log_warn("agent", "release dir %s differs from its seal (changed after activation): "
				  "making it again from the store", final);
		char *old = xasprintf("%s/.tmp-old-%s-%d-%d", releases, hex, (int)getpid(),
				      (int)gettid());
		if (lstat(final, &was) < 0)
			was.st_mode = 0;
		if (rename(final, old) == 0)
			fs_rm_rf(old);
		free(old);
	}
	/* verify every object before making anything */
	for (size_t i = 0; i < m->n_entries; i++) {
		const struct manifest_entry *en = &m->entries[i];
		if (en->type != MANIFEST_FILE)
			continue;
		if ((r = objstore_verify(os, en->digest, e)) < 0) {
			err_prefix(e, "release %.19s: file %s", id, en->path);
			r = -CAIRN_ECORRUPT;
			e->code = CAIRN_ECORRUPT;
			goto done;
		}
	}
	if ((r = fs_mkdir_p(releases, geteuid() == 0 ? 0711 : 0700, e)) < 0)
		goto done;
	/* unique per thread: two workers may activate the same release at once */
	tmp = xasprintf("%s/.tmp-%s-%d-%d", releases, hex, (int)getpid(), (int)gettid());
	fs_rm_rf(tmp);
	if (mkdir(tmp, 0700) < 0) {
		r = err_set(e, errno, "cannot create %s: %s", tmp, strerror(errno));
		goto done;
	}
	for (size_t i = 0; i < m->n_entries; i++)
		if ((r = place_entry(os, tmp, &m->entries[i], e)) < 0)
			goto done;
	/* directories read-only, deepest first (entries are sorted, so reverse order works) */
	for (size_t i = m->n_entries; i-- > 0;) {
		if (m->entries[i].type != MANIFEST_DIR)
			continue;
		char *d = fs_join(tmp, m->entries[i].path);
		chmod(d, 0555);
		free(d);
	}
	/* the top stays ours alone until an instance opens it to its app's group (instance.c) */
	chmod(tmp, 0700);
	if (S_ISDIR(was.st_mode) && chown(tmp, (uid_t)-1, was.st_gid) == 0)
		chmod(tmp, was.st_mode & 0750); /* running instances keep reading it */
	if (rename(tmp, final) < 0) {
		if ((errno == EEXIST || errno == ENOTEMPTY) && fs_is_dir(final)) {
			fs_rm_rf(tmp); /* someone else finished first: theirs is the same */
		} else {
			r = err_set(e, errno, "cannot move %s into place: %s", final,
				    strerror(errno));
			goto done;
		}
	}
	fs_fsync_dir(releases);
	if ((r = seal(m, final, seal_fd, sealp, e)) < 0)
		goto done;
ok:
	*out_path = final;
	final = NULL;
	*out_files = files;
	r = 0;
done:
	if (r < 0 && tmp)
		fs_rm_rf(tmp);
	manifest_free(m);
	free(tmp);
	if (seal_fd >= 0)
		close(seal_fd); /* drops the lock */
	free(sealp);
	free(final);
	free(releases);
	return r;
}
