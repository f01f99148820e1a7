/* copy: makes the scratch copy of a source tree that build.command runs in — files (with
 * copy_file_range), directories and symlinks, keeping modes and mtimes so the build cache
 * can tell which copies the command left alone. */
#include "release/release-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int tree_copy(const char *src_root, const char *dst_root, const struct walk *w,
	      struct stat *out_copied, struct err *e)
{
	int sfd = open(src_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int dfd = open(dst_root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r = 0;

	if (sfd < 0 || dfd < 0) {
		r = err_set(e, errno, "cannot open %s: %s", sfd < 0 ? src_root : dst_root, strerror(errno));
		goto done;
	}
	for (size_t i = 0; i < w->n && r == 0; i++) {
		const struct walk_entry *en = &w->v[i];
		if (en->type == MANIFEST_DIR) {
			if (mkdirat(dfd, en->path, 0700) < 0)
				r = err_set(e, errno, "scratch copy: mkdir %s: %s", en->path, strerror(errno));
		} else if (en->type == MANIFEST_LINK) {
			if (symlinkat(en->target, dfd, en->path) < 0)
				r = err_set(e, errno, "scratch copy: symlink %s: %s", en->path, strerror(errno));
		} else {
			int in = openat(sfd, en->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
			int out = in < 0 ? -1 : openat(dfd, en->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
			if (in < 0 || out < 0) {
				r = err_set(e, errno, "scratch copy: %s: %s", en->path, strerror(errno));
			} else if ((r = fs_copy_fd(in, out)) < 0) {
				r = err_set(e, -r, "scratch copy: %s: %s", en->path, strerror(-r));
			} else {
				struct timespec ts[2] = { en->st.st_atim, en->st.st_mtim };
				fchmod(out, en->mode);
				futimens(out, ts);
				fstat(out, &out_copied[i]);
			}
			if (in >= 0)
				close(in);
			if (out >= 0)
				close(out);
		}
	}
	/* directory modes last, so a read-only directory does not stop its own copy */
	for (size_t i = w->n; i-- > 0 && r == 0;)
		if (w->v[i].type == MANIFEST_DIR)
			fchmodat(dfd, w->v[i].path, w->v[i].mode | 0700, 0);
done:
	if (sfd >= 0)
		close(sfd);
	if (dfd >= 0)
		close(dfd);
	return r;
}
