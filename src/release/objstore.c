/* objstore: content-addressed file store under <state>/objects. Objects are written to
 * <state>/tmp first and renamed into place, read-only; an object's bytes never change.
 * Durability is batched through objstore_sync (one syncfs instead of an fsync per file). */
#include "release/release-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct objstore {
	char *state_dir; /* owned */
	char *objects;   /* owned: <state>/objects */
	char *tmp;       /* owned: <state>/tmp */
	int objects_fd;  /* owned: for syncfs */
};

#define COPY_CHUNK (256 * 1024)

int objstore_open(const char *state_dir, struct objstore **out, struct err *e)
{
	struct objstore *os = xcalloc(1, sizeof(*os));
	int r;

	os->state_dir = xstrdup(state_dir);
	os->objects = fs_join(state_dir, "objects");
	os->tmp = fs_join(state_dir, "tmp");
	os->objects_fd = -1;
	if ((r = fs_mkdir_p(os->objects, 0700, e)) < 0 || (r = fs_mkdir_p(os->tmp, 0700, e)) < 0)
		goto fail;
	os->objects_fd = open(os->objects, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (os->objects_fd < 0) {
		r = err_set(e, errno, "cannot open %s: %s", os->objects, strerror(errno));
		goto fail;
	}
	*out = os;
	return 0;
fail:
	objstore_free(os);
	return r;
}

void objstore_free(struct objstore *os)
{
	if (!os)
		return;
	if (os->objects_fd >= 0)
		close(os->objects_fd);
	free(os->state_dir);
	free(os->objects);
	free(os->tmp);
	free(os);
}

const char *objstore_state_dir(const struct objstore *os)
{
	return os->state_dir;
}

char *objstore_path(const struct objstore *os, const char *hex)
{
	return xasprintf("%s/%.2s/%s", os->objects, hex, hex + 2);
}

bool objstore_has(const struct objstore *os, const char *hex)
{
	char rel[HASH_HEX_LEN + 2];
	struct stat st;
	snprintf(rel, sizeof(rel), "%.2s/%s", hex, hex + 2);
	return fstatat(os->objects_fd, rel, &st, 0) == 0 && S_ISREG(st.st_mode);
}

int objstore_tmp_open(struct objstore *os, int *out_fd, char **out_path, struct err *e)
{
	char *path = fs_join(os->tmp, "obj-XXXXXX");
	int fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0) {
		int r = err_set(e, errno, "cannot create a temporary file in %s: %s", os->tmp,
				strerror(errno));
		free(path);
		return r;
	}
	*out_fd = fd;
	*out_path = path;
	return 0;
}

int objstore_tmp_commit(struct objstore *os, const char *tmp_path, const char *hex, struct err *e)
{
	char *dst = objstore_path(os, hex);
	char *dir = xasprintf("%s/%.2s", os->objects, hex);
	int r = 0;

	if (chmod(tmp_path, 0444) < 0) {
		r = err_set(e, errno, "chmod %s: %s", tmp_path, strerror(errno));
		goto done;
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		r = err_set(e, errno, "cannot create %s: %s", dir, strerror(errno));
		goto done;
	}
	/* An existing object has the same bytes by definition: keep it, drop ours. */
	if (objstore_has(os, hex)) {
		unlink(tmp_path);
		goto done;
	}
	if (rename(tmp_path, dst) < 0)
		r = err_set(e, errno, "cannot store object %s: %s", hex, strerror(errno));
done:
	free(dst);
	free(dir);
	return r;
}

/* Copies src into a temp object, hashing as it goes; returns the digest in out_hex. */
static int copy_hashing(int in, int out, char *out_hex, bool hash)
{
	struct hasher *h = hash ? hasher_new() : NULL;
	char *chunk = xmalloc(COPY_CHUNK);
	int r = 0;

	for (;;) {
		ssize_t n = read(in, chunk, COPY_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			break;
		}
		if (n == 0)
			break;
		if (h)
			hasher_update(h, chunk, (size_t)n);
		if ((r = fs_write_all(out, chunk, (size_t)n)) < 0)
			break;
	}
	free(chunk);
	if (h) {
		char tmp[HASH_HEX_LEN + 1];
		hasher_final(h, r == 0 ? out_hex : tmp);
	}
	return r;
}

int objstore_put_file(struct objstore *os, const char *src, const char *known_hex, char *out_hex,
		      bool *out_added, struct err *e)
{
	char hex[HASH_HEX_LEN + 1];
	char *tmp = NULL;
	int in, out = -1, r;

	*out_added = false;
	if (known_hex && objstore_has(os, known_hex)) {
		memcpy(out_hex, known_hex, HASH_HEX_LEN + 1);
		return 0;
	}
	in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (in < 0)
		return err_set(e, errno, "cannot open %s: %s", src, strerror(errno));
	if (!known_hex) {
		/* Hash first: most files of a rebuild are already stored and need no copy. */
		int64_t n = hash_fd(in, hex);
		if (n < 0) {
			r = err_set(e, (int)-n, "cannot read %s: %s", src, strerror((int)-n));
			goto done;
		}
		if (objstore_has(os, hex)) {
			memcpy(out_hex, hex, sizeof(hex));
			r = 0;
			goto done;
		}
		if (lseek(in, 0, SEEK_SET) < 0) {
			r = err_set(e, errno, "cannot seek %s: %s", src, strerror(errno));
			goto done;
		}
	} else {
		memcpy(hex, known_hex, sizeof(hex));
	}
	if ((r = objstore_tmp_open(os, &out, &tmp, e)) < 0)
		goto done;
	{
		char check[HASH_HEX_LEN + 1];
		r = copy_hashing(in, out, check, true);
		if (r < 0) {
			r = err_set(e, -r, "cannot copy %s into the object store: %s", src, strerror(-r));
			goto done;
		}
		/* The file changed between hashing and copying: store what we copied. */
		if (strcmp(check, hex) != 0)
			memcpy(hex, check, sizeof(hex));
	}
	close(out);
	out = -1;
	if ((r = objstore_tmp_commit(os, tmp, hex, e)) < 0)
		goto done;
	memcpy(out_hex, hex, sizeof(hex));
	*out_added = true;
done:
	if (out >= 0)
		close(out);
	if (tmp && r < 0)
		unlink(tmp);
	free(tmp);
	close(in);
	return r;
}

int objstore_put_mem(struct objstore *os, const void *p, size_t n, char *out_hex, struct err *e)
{
	char hex[HASH_HEX_LEN + 1];
	char *tmp = NULL;
	int fd, r;

	hash_mem(p, n, hex);
	if (objstore_has(os, hex)) {
		memcpy(out_hex, hex, sizeof(hex));
		return 0;
	}
	if ((r = objstore_tmp_open(os, &fd, &tmp, e)) < 0)
		return r;
	r = fs_write_all(fd, p, n);
	close(fd);
	if (r < 0) {
		r = err_set(e, -r, "cannot write object: %s", strerror(-r));
		unlink(tmp);
	} else if ((r = objstore_tmp_commit(os, tmp, hex, e)) == 0) {
		memcpy(out_hex, hex, sizeof(hex));
	} else {
		unlink(tmp);
	}
	free(tmp);
	return r;
}

int objstore_read(const struct objstore *os, const char *hex, struct buf *b, struct err *e)
{
	char *path = objstore_path(os, hex);
	char got[HASH_HEX_LEN + 1];
	size_t start = b->len;
	int r = fs_read_file(path, b, e);

	if (r == -ENOENT)
		r = err_set(e, CAIRN_ENOTFOUND, "object %.12s is missing from the store (%s)", hex, path);
	if (r == 0) {
		hash_mem(b->data ? b->data + start : "", b->len - start, got);
		if (strcmp(got, hex) != 0)
			r = err_set(e, CAIRN_ECORRUPT, "object %.12s is corrupt: its bytes hash to %.12s (%s)",
				    hex, got, path);
	}
	free(path);
	return r;
}

int objstore_verify(const struct objstore *os, const char *hex, struct err *e)
{
	char *path = objstore_path(os, hex);
	char got[HASH_HEX_LEN + 1];
	int r = hash_file(path, got, e);

	if (r == -ENOENT)
		r = err_set(e, CAIRN_ENOTFOUND, "missing from the store (%s)", path);
	else if (r == 0 && strcmp(got, hex) != 0)
		r = err_set(e, CAIRN_ECORRUPT, "corrupt: stored bytes hash to %.12s, expected %.12s (%s)",
			    got, hex, path);
	free(path);
	return r;
}

int objstore_sync(struct objstore *os)
{
	return syncfs(os->objects_fd) < 0 ? -errno : 0;
}
