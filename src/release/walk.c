/* walk: turns a directory tree into a sorted list of entries for a release — regular files,
 * directories and symlinks that stay inside the tree. Everything else (devices, fifos,
 * sockets, escaping links, names that are not UTF-8) is refused with the path named. */
#include "release/release-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WALK_DEPTH_MAX 256

void walk_done(struct walk *w)
{
	for (size_t i = 0; i < w->n; i++) {
		free(w->v[i].path);
		free(w->v[i].target);
	}
	free(w->v);
	w->v = NULL;
	w->n = w->cap = 0;
}

static bool utf8_ok(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		int n = *p < 0x80 ? 0 : (*p & 0xe0) == 0xc0 ? 1 : (*p & 0xf0) == 0xe0 ? 2 : (*p & 0xf8) == 0xf0 ? 3 : -1;
		if (n < 0 || (n == 1 && *p < 0xc2))
			return false;
		p++;
		while (n--) {
			if ((*p & 0xc0) != 0x80)
				return false;
			p++;
		}
	}
	return true;
}

bool walk_excluded(const struct strv *exclude, const char *relpath, const char *name)
{
	for (size_t i = 0; exclude && i < exclude->n; i++) {
		const char *pat = exclude->v[i];
		if (strchr(pat, '/')) {
			size_t n = strlen(pat);
			while (n && pat[n - 1] == '/')
				n--;
			char *p = xstrndup(pat, n);
			bool hit = fnmatch(p, relpath, FNM_PATHNAME) == 0;
			free(p);
			if (hit)
				return true;
		} else if (fnmatch(pat, name, 0) == 0) {
			return true;
		}
	}
	return false;
}

static struct walk_entry *walk_push(struct walk *w)
{
	if (w->n == w->cap) {
		w->cap = w->cap ? w->cap * 2 : 256;
		w->v = xrealloc(w->v, w->cap * sizeof(*w->v));
	}
	memset(&w->v[w->n], 0, sizeof(w->v[0]));
	return &w->v[w->n++];
}

static const char *kind_of(mode_t m)
{
	return S_ISFIFO(m) ? "a fifo" : S_ISSOCK(m) ? "a socket" : S_ISCHR(m) ? "a character device"
	       : S_ISBLK(m)  ? "a block device"
			     : "a special file";
}

static int walk_dir(int dfd, const char *prefix, const struct strv *exclude, int depth,
		    struct walk *w, struct err *e)
{
	DIR *d = fdopendir(dfd);
	struct dirent *de;
	struct strv names;
	int r = 0;

	if (!d) {
		close(dfd);
		return err_set(e, errno, "cannot read directory %s: %s", *prefix ? prefix : ".",
			       strerror(errno));
	}
	if (depth > WALK_DEPTH_MAX) {
		closedir(d);
		return err_set(e, CAIRN_EINPUT, "%s: directories nest deeper than %d levels", prefix,
			       WALK_DEPTH_MAX);
	}
	strv_init(&names);
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			strv_push(&names, de->d_name);
	strv_sort(&names);
	for (size_t i = 0; i < names.n && r == 0; i++) {
		const char *name = names.v[i];
		char *rel = *prefix ? xasprintf("%s/%s", prefix, name) : xstrdup(name);
		struct walk_entry *en;
		struct stat st;

		if (walk_excluded(exclude, rel, name)) {
			free(rel);
			continue;
		}
		if (!utf8_ok(rel)) {
			r = err_set(e, CAIRN_EINPUT, "%s: file name is not valid UTF-8; rename it or add it to build.exclude", rel);
			free(rel);
			break;
		}
		if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			r = err_set(e, errno, "%s: %s", rel, strerror(errno));
			free(rel);
			break;
		}
		if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode)) {
			r = err_set(e, CAIRN_EINPUT,
				    "%s is %s; a release holds only files, directories and symlinks: "
				    "remove it or add it to build.exclude",
				    rel, kind_of(st.st_mode));
			free(rel);
			break;
		}
		en = walk_push(w);
		en->path = rel;
		en->st = st;
		en->mode = st.st_mode & 0777;
		if (S_ISREG(st.st_mode)) {
			en->type = MANIFEST_FILE;
		} else if (S_ISLNK(st.st_mode)) {
			char target[4097];
			ssize_t n = readlinkat(dirfd(d), name, target, sizeof(target) - 1);
			en->type = MANIFEST_LINK;
			en->mode = 0;
			if (n < 0) {
				r = err_set(e, errno, "%s: cannot read symlink: %s", rel, strerror(errno));
				break;
			}
			target[n] = 0;
			en->target = xstrdup(target);
			if (!manifest_link_inside(rel, target) || !utf8_ok(target)) {
				r = err_set(e, CAIRN_EINPUT,
					    "symlink %s points outside the tree (→ %s); a release must be "
					    "self-contained: make the link relative and inside, copy the file in, "
					    "or add it to build.exclude",
					    rel, target);
				break;
			}
		} else {
			int sub = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			en->type = MANIFEST_DIR;
			if (sub < 0) {
				r = err_set(e, errno, "%s: %s", rel, strerror(errno));
				break;
			}
			/* en may move when w grows: recurse with a copy of the prefix */
			char *pfx = xstrdup(rel);
			r = walk_dir(sub, pfx, exclude, depth + 1, w, e);
			free(pfx);
		}
	}
	strv_done(&names);
	closedir(d);
	return r;
}

static int cmp_walk(const void *a, const void *b)
{
	return strcmp(((const struct walk_entry *)a)->path, ((const struct walk_entry *)b)->path);
}

int walk_tree(const char *root, const struct strv *exclude, struct walk *out, struct err *e)
{
	int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct walk w = { 0 };
	int r;

	if (fd < 0)
		return err_set(e, errno == ENOENT ? CAIRN_EINPUT : errno, "cannot open directory %s: %s",
			       root, strerror(errno));
	r = walk_dir(fd, "", exclude, 0, &w, e);
	if (r < 0) {
		walk_done(&w);
		return r;
	}
	if (w.n > 1)
		qsort(w.v, w.n, sizeof(*w.v), cmp_walk);
	*out = w;
	return 0;
}
