/* build: turns an app's directory into a stored release. Runs build.command (argv, never a
 * shell) once in a scratch copy when there is one, walks the result, stores every file once
 * under its digest (in parallel; unchanged files are known from the build cache and not
 * re-hashed), records the dependency versions found, and writes the canonical manifest.
 * Objects are made durable (one syncfs) before the release row refers to them. */
#include "release/release-internal.h"

#include "config/config.h"
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define BUILD_THREADS_MAX 8
#define BUILD_OUTPUT_MAX (1024 * 1024)

struct pool {
	struct walk *w;
	const char *root;
	struct objstore *os;
	atomic_size_t next, done, hashed, added;
	atomic_llong bytes;
	atomic_int failed;
	pthread_mutex_t mu; /* guards err */
	struct err err;
};

static void pool_fail(struct pool *p, const struct err *e)
{
	pthread_mutex_lock(&p->mu);
	if (!atomic_load(&p->failed))
		p->err = *e;
	atomic_store(&p->failed, 1);
	pthread_mutex_unlock(&p->mu);
}

static void *pool_worker(void *arg)
{
	struct pool *p = arg;
	for (;;) {
		size_t i = atomic_fetch_add(&p->next, 1);
		struct walk_entry *en;
		char hex[HASH_HEX_LEN + 1];
		bool added = false;
		struct err e;
		char *path;
		int r;

		if (i >= p->w->n || atomic_load(&p->failed))
			break;
		en = &p->w->v[i];
		if (en->type != MANIFEST_FILE) {
			atomic_fetch_add(&p->done, 1);
			continue;
		}
		if (en->digest[0] && en->cached) {
			/* known from the build cache of this state dir: the object is there (nothing
			 * deletes objects; a future GC must drop <state>/cache/ with them) */
			atomic_fetch_add(&p->bytes, (long long)en->st.st_size);
			atomic_fetch_add(&p->done, 1);
			continue;
		}
		path = fs_join(p->root, en->path);
		r = objstore_put_file(p->os, path, en->digest[0] ? en->digest : NULL, hex, &added, &e);
		if (r == 0 && !en->digest[0]) {
			/* hashed now: the bytes must be the ones we stat'ed, or the manifest would lie */
			struct stat st;
			char *obj = objstore_path(p->os, hex);
			if (stat(obj, &st) == 0 && st.st_size != en->st.st_size)
				r = err_set(&e, CAIRN_EINPUT,
					    "%s changed while it was being stored (size %lld, then %lld); "
					    "build again when it is quiet",
					    en->path, (long long)en->st.st_size, (long long)st.st_size);
			free(obj);
			atomic_fetch_add(&p->hashed, 1);
		}
		free(path);
		if (r < 0) {
			pool_fail(p, &e);
			break;
		}
		memcpy(en->digest, hex, sizeof(hex));
		if (added)
			atomic_fetch_add(&p->added, 1);
		atomic_fetch_add(&p->bytes, (long long)en->st.st_size);
		atomic_fetch_add(&p->done, 1);
	}
	return NULL;
}

static void progress_line(FILE *out, bool tty, const struct pool *p, bool last)
{
	size_t done = atomic_load(&p->done);
	if (tty)
		fprintf(out, "\r  storing %zu/%zu entries, %lld MiB%s", done, p->w->n,
			(long long)(atomic_load(&p->bytes) >> 20), last ? "\n" : "");
	else if (last)
		fprintf(out, "  stored %zu entries, %lld MiB\n", done,
			(long long)(atomic_load(&p->bytes) >> 20));
	fflush(out);
}

/* Stores every file of w (rooted at root) in parallel; fills digests. */
static int store_files(struct objstore *os, const char *root, struct walk *w, FILE *progress,
		       struct release_build_result *res, struct err *e)
{
	pthread_t th[BUILD_THREADS_MAX];
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	size_t nth = ncpu < 1 ? 1 : ncpu > BUILD_THREADS_MAX ? BUILD_THREADS_MAX : (size_t)ncpu;
	struct pool p = { .w = w, .root = root, .os = os };
	bool tty = progress && isatty(fileno(progress));
	size_t started = 0;

	pthread_mutex_init(&p.mu, NULL);
	if (w->n < 64)
		nth = 1;
	for (size_t i = 0; i < nth; i++)
		if (pthread_create(&th[i], NULL, pool_worker, &p) == 0)
			started++;
	if (started == 0)
		pool_worker(&p);
	if (tty) {
		/* the main thread only reports while the workers run */
		while (atomic_load(&p.done) < w->n && !atomic_load(&p.failed)) {
			struct timespec ts = { 0, 100 * 1000000 };
			progress_line(progress, tty, &p, false);
			nanosleep(&ts, NULL);
		}
	}
	for (size_t i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	pthread_mutex_destroy(&p.mu);
	if (atomic_load(&p.failed)) {
		if (tty)
			fputc('\n', progress);
		*e = p.err;
		return -(e->code ? e->code : EIO);
	}
	if (progress)
		progress_line(progress, tty, &p, true);
	res->n_hashed = atomic_load(&p.hashed);
	res->n_new_objects = atomic_load(&p.added);
	res->bytes = atomic_load(&p.bytes);
	return 0;
}

static void apply_cache(const struct bcache *c, struct walk *w)
{
	for (size_t i = 0; i < w->n; i++) {
		const char *d;
		if (w->v[i].type == MANIFEST_FILE && (d = bcache_lookup(c, w->v[i].path, &w->v[i].st))) {
			memcpy(w->v[i].digest, d, HASH_HEX_LEN + 1);
			w->v[i].cached = true;
		}
	}
}

static char *cache_file(const struct objstore *os, const struct config *cfg)
{
	char hex[HASH_HEX_LEN + 1];
	char *key = xasprintf("%s\n%s", cfg->app, cfg->dir);
	char *dir = fs_join(objstore_state_dir(os), "cache");
	char *path;
	hash_mem(key, strlen(key), hex);
	path = xasprintf("%s/%.32s", dir, hex);
	fs_mkdir_p(dir, 0700, NULL);
	free(key);
	free(dir);
	return path;
}

static int build_manifest(const struct config *cfg, const char *root, const struct walk *w,
			  struct manifest **out, struct err *e)
{
	struct manifest *m = xcalloc(1, sizeof(*m));
	struct strv files;
	int r;

	m->app = xstrdup(cfg ? cfg->app : "");
	m->entries = xcalloc(w->n, sizeof(*m->entries));
	strv_init(&files);
	for (size_t i = 0; i < w->n; i++) {
		const struct walk_entry *we = &w->v[i];
		struct manifest_entry *me = &m->entries[m->n_entries++];
		me->path = xstrdup(we->path);
		me->type = we->type;
		me->mode = we->type == MANIFEST_LINK ? 0 : we->mode;
		if (we->type == MANIFEST_FILE) {
			me->size = we->st.st_size;
			memcpy(me->digest, we->digest, sizeof(me->digest));
			strv_push(&files, we->path);
		} else if (we->type == MANIFEST_LINK) {
			me->target = xstrdup(we->target);
			me->size = (int64_t)strlen(we->target);
		}
	}
	strv_init(&m->run_command);
	if (cfg) {
		for (size_t i = 0; i < cfg->run.command.n; i++)
			strv_push(&m->run_command, cfg->run.command.v[i]);
		m->run_env.keys = xcalloc(cfg->run.n_env + 1, sizeof(char *));
		m->run_env.values = xcalloc(cfg->run.n_env + 1, sizeof(char *));
		for (size_t i = 0; i < cfg->run.n_env; i++) {
			m->run_env.keys[i] = xstrdup(cfg->run.env[i].key);
			m->run_env.values[i] = xstrdup(cfg->run.env[i].value);
		}
		m->run_env.n = cfg->run.n_env;
		m->stop_timeout_ms = cfg->run.stop_timeout_ms;
		m->run_user = cfg->run.user ? xstrdup(cfg->run.user) : NULL;
	}
	r = deps_scan(root, &files, &m->deps, e);
	if (r == 0)
		dep_list_sort(&m->deps);
	strv_done(&files);
	if (r == 0 && (r = manifest_validate(m, e)) < 0)
		err_prefix(e, "the tree cannot become a release");
	if (r < 0) {
		manifest_free(m);
		return r;
	}
	*out = m;
	return 0;
}

/* Runs build.command in a scratch copy of the source; returns the scratch dir. Files the
 * command did not touch keep the digests the source cache knew (`src` carries them). */
static int run_build_command(const struct config *cfg, struct objstore *os, struct walk *src,
			     char **out_scratch, struct stat **out_copied, FILE *progress,
			     struct err *e)
{
	/* named after us: a sweep after our death removes it, and kills what still runs there */
	char *scratch = objstore_tmp_mkdir(os, "build", e);
	struct stat *copied = xcalloc(src->n + 1, sizeof(*copied));
	int r = 0, status = 0;

	if (!scratch) {
		free(copied);
		return -(e->code);
	}
	if ((r = tree_copy(cfg->dir, scratch, src, copied, e)) < 0)
		goto fail;
	if (progress) {
		fprintf(progress, "  running build.command:");
		for (size_t i = 0; i < cfg->build.command.n; i++)
			fprintf(progress, " %s", cfg->build.command.v[i]);
		fputc('\n', progress);
		fflush(progress);
	}
	{
		const char *env[] = { "CAIRN_BUILD=1", NULL };
		struct exec_opts o = { .cwd = scratch, .env_extra = (char *const *)env,
				       .stdout_to_stderr = true, .parent_death_signal = SIGKILL };
		r = exec_run((const char *const *)cfg->build.command.v, &o, &status, e);
	}
	if (r < 0) {
		err_prefix(e, "build.command");
		goto fail;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char how[128];
		exec_describe_status(status, how, sizeof(how));
		r = err_set(e, CAIRN_ECHECK, "build.command %s %s; nothing was stored", cfg->build.command.v[0],
			    how);
		goto fail;
	}
	*out_scratch = scratch;
	*out_copied = copied;
	return 0;
fail:
	fs_rm_rf(scratch);
	free(scratch);
	free(copied);
	return r;
}

static bool same_file_state(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static int cmp_walk_path(const void *key, const void *el)
{
	return strcmp((const char *)key, ((const struct walk_entry *)el)->path);
}

/* The id the tree would have, without storing anything: files the cache does not know are
 * hashed in place (their digests then go to store_files as known). */
static int tree_id(const struct config *cfg, const char *root, struct walk *w,
		   char out_hex[HASH_HEX_LEN + 1], struct err *e)
{
	struct manifest *m = NULL;
	struct buf b;
	int r = 0;

	for (size_t i = 0; r == 0 && i < w->n; i++) {
		struct walk_entry *en = &w->v[i];
		if (en->type != MANIFEST_FILE || en->digest[0])
			continue;
		char *path = fs_join(root, en->path);
		r = hash_file(path, en->digest, e);
		free(path);
	}
	if (r < 0 || (r = build_manifest(cfg, root, w, &m, e)) < 0)
		return r;
	buf_init(&b, MANIFEST_MAX_BYTES);
	if ((r = manifest_serialize(m, &b)) < 0)
		r = err_set(e, -r, "cannot serialise the manifest: %s", strerror(-r));
	else
		hash_mem(b.data, b.len, out_hex);
	buf_done(&b);
	manifest_free(m);
	return r;
}

/* A tag that already names a release may only be given to that same release: find out
 * before anything is stored, so a refused build leaves nothing behind. */
static int check_tag(const struct config *cfg, struct store *st, const char *tag,
		     const char *root, struct walk *w, struct err *e)
{
	char holder[HASH_ID_LEN + 1], hex[HASH_HEX_LEN + 1];
	int r = store_tag_get(st, cfg->app, tag, holder, e);

	if (r <= 0)
		return r;
	if ((r = tree_id(cfg, root, w, hex, e)) < 0)
		return r;
	if (strcmp(holder + 7, hex))
		return err_set(e, CAIRN_EINPUT,
			       "tag '%s' already names release %.19s of app %s; tags never move — "
			       "choose another tag (nothing was stored)",
			       tag, holder, cfg->app);
	return 0;
}

int release_build(const struct config *cfg, struct objstore *os, struct store *st,
		  const struct release_build_opts *o, struct release_build_result *out,
		  struct err *e)
{
	struct walk src = { 0 }, built = { 0 };
	struct bcache cache;
	struct release_build_result res = { 0 };
	struct manifest *m = NULL;
	struct stat *copied = NULL;
	struct buf mbytes;
	char *cfile = cache_file(os, cfg), *scratch = NULL;
	char hex[HASH_HEX_LEN + 1];
	const char *root = cfg->dir;
	struct walk *w = &src;
	int64_t walked_at, t0 = time_mono_ns();
	int r;

	objstore_tmp_clean(os, OBJSTORE_PART_TTL_S, NULL); /* what a killed build left */
	buf_init(&mbytes, MANIFEST_MAX_BYTES);
	bcache_load(cfile, &cache);
	if ((r = walk_tree(cfg->dir, &cfg->build.exclude, &src, e)) < 0)
		goto done;
	walked_at = time_now_ns();
	apply_cache(&cache, &src);
	if (cfg->build.command.n) {
		if ((r = run_build_command(cfg, os, &src, &scratch, &copied, o->progress, e)) < 0)
			goto done;
		if ((r = walk_tree(scratch, &cfg->build.exclude, &built, e)) < 0)
			goto done;
		/* unchanged copies keep their known digests */
		for (size_t i = 0; i < built.n; i++) {
			struct walk_entry *be = &built.v[i];
			struct walk_entry *se =
				src.n ? bsearch(be->path, src.v, src.n, sizeof(*src.v), cmp_walk_path) : NULL;
			if (be->type == MANIFEST_FILE && se && se->digest[0] &&
			    same_file_state(&be->st, &copied[se - src.v]))
				memcpy(be->digest, se->digest, sizeof(be->digest));
		}
		root = scratch;
		w = &built;
	}
	log_debug("build", "walk: %zu entries in %.3fs", w->n, (double)(time_mono_ns() - t0) / 1e9);
	if (o->tag && o->tag[0] && (r = check_tag(cfg, st, o->tag, root, w, e)) < 0)
		goto done;
	t0 = time_mono_ns();
	if ((r = store_files(os, root, w, o->progress, &res, e)) < 0)
		goto done;
	log_debug("build", "store: %zu hashed, %zu new in %.3fs", res.n_hashed, res.n_new_objects,
		  (double)(time_mono_ns() - t0) / 1e9);
	t0 = time_mono_ns();
	if (w == &built) {
		/* teach the source cache what the untouched copies hashed to */
		for (size_t i = 0; i < src.n; i++) {
			struct walk_entry *se = &src.v[i];
			struct walk_entry *be =
				built.n ? bsearch(se->path, built.v, built.n, sizeof(*built.v), cmp_walk_path)
					: NULL;
			if (se->type == MANIFEST_FILE && !se->digest[0] && be && be->digest[0] &&
			    same_file_state(&be->st, &copied[i]))
				memcpy(se->digest, be->digest, sizeof(se->digest));
		}
	}
	if ((r = build_manifest(cfg, root, w, &m, e)) < 0)
		goto done;
	if ((r = manifest_serialize(m, &mbytes)) < 0) {
		r = err_set(e, -r, "cannot serialise the manifest: %s", strerror(-r));
		goto done;
	}
	hash_mem(mbytes.data, mbytes.len, hex);
	if ((r = objstore_put_mem(os, mbytes.data, mbytes.len, hex, e)) < 0)
		goto done;
	log_debug("build", "manifest: %zu bytes in %.3fs", mbytes.len, (double)(time_mono_ns() - t0) / 1e9);
	t0 = time_mono_ns();
	if (objstore_sync(os) < 0) {
		r = err_set(e, errno, "cannot make the objects durable: %s", strerror(errno));
		goto done;
	}
	log_debug("build", "sync: %.3fs", (double)(time_mono_ns() - t0) / 1e9);
	{
		struct store_release rel = { 0 };
		snprintf(rel.id, sizeof(rel.id), "sha256:%s", hex);
		snprintf(rel.app, sizeof(rel.app), "%s", cfg->app);
		snprintf(rel.tag, sizeof(rel.tag), "%s", o->tag ? o->tag : "");
		rel.created_at = time_now_ns() / 1000000000;
		rel.state = RELEASE_UNTESTED;
		for (size_t i = 0; i < m->n_entries; i++)
			if (m->entries[i].type == MANIFEST_FILE) {
				rel.n_files++;
				rel.bytes += m->entries[i].size;
			}
		struct store_release old;
		struct err ge;
		/* "already stored" means the release is recorded, not that its manifest object
		 * happens to exist (a refused or killed build may have left it) */
		r = store_release_get(st, rel.id, &old, &ge);
		if (r < 0 && ge.code != CAIRN_ENOTFOUND) {
			*e = ge;
			goto done;
		}
		res.existed = r == 0;
		if ((r = store_release_put(st, &rel, e)) < 0)
			goto done;
		res.n_files = (size_t)rel.n_files;
		res.bytes = rel.bytes;
		memcpy(res.id, rel.id, sizeof(res.id));
	}
	bcache_save(cfile, &src, walked_at, NULL); /* only costs time if it fails */
	*out = res;
done:
	if (scratch) {
		fs_rm_rf(scratch);
		free(scratch);
	}
	free(copied);
	manifest_free(m);
	buf_done(&mbytes);
	walk_done(&src);
	walk_done(&built);
	bcache_done(&cache);
	free(cfile);
	return r;
}

int release_scan_dir(const char *dir, const struct strv *exclude, const struct config *cfg,
		     struct manifest **out, struct err *e)
{
	struct walk w = { 0 };
	int r = walk_tree(dir, exclude, &w, e);

	for (size_t i = 0; r == 0 && i < w.n; i++) {
		if (w.v[i].type != MANIFEST_FILE)
			continue;
		char *p = fs_join(dir, w.v[i].path);
		r = hash_file(p, w.v[i].digest, e);
		free(p);
	}
	if (r == 0)
		r = build_manifest(cfg, dir, &w, out, e);
	walk_done(&w);
	return r;
}
