/* walk: turns a directory tree into a sorted list of entries for a release — regular files,
 * directories and symlinks that stay inside the tree. Everything else (devices, fifos,
 * sockets, escaping links, names that are not UTF-8) is refused with the path named. */
#include "release/release-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pthread.h>
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

/* Directories waiting to be read, shared by the walking threads. */
struct walk_job {
	int fd;
	char *prefix; /* owned */
	int depth;
};
struct walk_queue {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct walk_job *v; /* owned stack */
	size_t n, cap;
	size_t busy;   /* threads reading a directory (they may queue more) */
	bool failed;
	struct err err; /* the first failure */
	const struct strv *exclude;
};

static void queue_push(struct walk_queue *q, int fd, const char *prefix, int depth)
{
	pthread_mutex_lock(&q->mu);
	if (q->n == q->cap) {
		q->cap = q->cap ? q->cap * 2 : 64;
		q->v = xrealloc(q->v, q->cap * sizeof(*q->v));
	}
	q->v[q->n++] = (struct walk_job){ fd, xstrdup(prefix), depth };
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
}

static int walk_dir(int dfd, const char *prefix, struct walk_queue *q, int depth, struct walk *w,
		    struct err *e)
{
	const struct strv *exclude = q->exclude;
	DIR *d = fdopendir(dfd);
	struct dirent *de;
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
	/* no sorting here: the whole list is sorted once at the end */
	while (r == 0 && (de = readdir(d))) {
		const char *name = de->d_name;
		if (!strcmp(name, ".") || !strcmp(name, ".."))
			continue;
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
			queue_push(q, sub, rel, depth + 1);
		}
	}
	closedir(d);
	return r;
}

static void *walk_worker(void *arg)
{
	struct walk_queue *q = ((void **)arg)[0];
	struct walk *w = ((void **)arg)[1];

	pthread_mutex_lock(&q->mu);
	for (;;) {
		while (q->n == 0 && q->busy > 0 && !q->failed)
			pthread_cond_wait(&q->cv, &q->mu);
		if (q->failed || q->n == 0)
			break; /* failed, or nothing queued and nobody can queue more */
		struct walk_job job = q->v[--q->n];
		struct err e;
		q->busy++;
		pthread_mutex_unlock(&q->mu);
		int r = walk_dir(job.fd, job.prefix, q, job.depth, w, &e);
		free(job.prefix);
		pthread_mutex_lock(&q->mu);
		q->busy--;
		if (r < 0 && !q->failed) {
			q->failed = true;
			q->err = e;
		}
	}
	pthread_cond_broadcast(&q->cv);
	pthread_mutex_unlock(&q->mu);
	return NULL;
}

static int cmp_walk(const void *a, const void *b)
{
	return strcmp(((const struct walk_entry *)a)->path, ((const struct walk_entry *)b)->path);
}

#define WALK_THREADS_MAX 4

/* Reads the tree with up to WALK_THREADS_MAX threads sharing a queue of directories (a rebuild
 * of a large tree is mostly this walk: one stat per entry), then sorts the entries once. */
int walk_tree(const char *root, const struct strv *exclude, struct walk *out, struct err *e)
{
	int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct walk_queue q = { .exclude = exclude };
	struct walk parts[WALK_THREADS_MAX] = { 0 };
	pthread_t th[WALK_THREADS_MAX];
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	size_t nth = ncpu < 1 ? 1 : ncpu > WALK_THREADS_MAX ? WALK_THREADS_MAX : (size_t)ncpu;
	size_t started = 0, total = 0;
	struct walk w = { 0 };

	if (fd < 0)
		return err_set(e, errno == ENOENT ? CAIRN_EINPUT : errno, "cannot open directory %s: %s",
			       root, strerror(errno));
	pthread_mutex_init(&q.mu, NULL);
	pthread_cond_init(&q.cv, NULL);
	queue_push(&q, fd, "", 0);
	void *args[WALK_THREADS_MAX][2];
	for (size_t i = 0; i < nth; i++) {
		args[i][0] = &q;
		args[i][1] = &parts[i];
		if (pthread_create(&th[i], NULL, walk_worker, args[i]) == 0)
			started++;
	}
	if (started == 0) {
		args[0][0] = &q;
		args[0][1] = &parts[0];
		walk_worker(args[0]);
	}
	for (size_t i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	for (size_t i = 0; i < q.n; i++) { /* left over after a failure */
		close(q.v[i].fd);
		free(q.v[i].prefix);
	}
	free(q.v);
	pthread_mutex_destroy(&q.mu);
	pthread_cond_destroy(&q.cv);
	for (size_t i = 0; i < WALK_THREADS_MAX; i++)
		total += parts[i].n;
	w.v = xmalloc((total ? total : 1) * sizeof(*w.v));
	w.cap = total;
	for (size_t i = 0; i < WALK_THREADS_MAX; i++) {
		if (parts[i].n)
			memcpy(w.v + w.n, parts[i].v, parts[i].n * sizeof(*w.v));
		w.n += parts[i].n;
		free(parts[i].v);
	}
	if (q.failed) {
		*e = q.err;
		walk_done(&w);
		return -(e->code ? e->code : EIO);
	}
	if (w.n > 1)
		qsort(w.v, w.n, sizeof(*w.v), cmp_walk);
	*out = w;
	return 0;
}
