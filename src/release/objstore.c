/* objstore: content-addressed file store under <state>/objects. Objects are written to
 * <state>/tmp first and renamed into place, read-only; an object's bytes never change (one
 * found corrupt is replaced whole by checked bytes: objstore_tmp_commit).
 * Durability is batched through objstore_sync (one syncfs instead of an fsync per file). */
#include "release/release-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct objstore {
	char *state_dir; /* owned */
	char *objects;   /* owned: <state>/objects */
	char *tmp;       /* owned: <state>/tmp */
	int objects_fd;  /* owned: for syncfs */
};

#define COPY_CHUNK (1024 * 1024)

int objstore_open(const char *state_dir, struct objstore **out, struct err *e)
{
	struct objstore *os = xcalloc(1, sizeof(*os));
	int r;

	os->state_dir = xstrdup(state_dir);
	os->objects = fs_join(state_dir, "objects");
	os->tmp = fs_join(state_dir, "tmp");
	os->objects_fd = -1;
	if ((r = fs_secure_state_dir(state_dir, e)) < 0 || (r = fs_mkdir_p(os->objects, 0700, e)) < 0 || (r = fs_mkdir_p(os->tmp, 0700, e)) < 0)
		goto fail;
	os->objects_fd = open(os->objects, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (os->objects_fd < 0) {
		r = err_set(e, errno, "cannot open %s: %s", os->objects, strerror(errno));
		goto fail;
	}
	/* the 256 fan-out directories exist from the start: no mkdir per object */
	for (int i = 0; i < 256; i++) {
		char d[3];
		snprintf(d, sizeof(d), "%02x", i);
		if (mkdirat(os->objects_fd, d, 0700) < 0 && errno != EEXIST) {
			r = err_set(e, errno, "cannot create %s/%s: %s", os->objects, d, strerror(errno));
			goto fail;
		}
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
	char tag[48];
	objstore__owner_tag(tag, sizeof(tag));
	char *path = xasprintf("%s/obj-%s-XXXXXX", os->tmp, tag);
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

int objstore_tmp_commit(struct objstore *os, const char *tmp_path, const char *hex,
			bool *out_added, struct err *e)
{
	char rel[HASH_HEX_LEN + 2];
	int r = 0;

	if (out_added)
		*out_added = false;
	if (strlen(hex) != HASH_HEX_LEN || !hash_is_hex(hex, HASH_HEX_LEN))
		return err_set(e, EINVAL, "bad object name '%s'", hex);
	snprintf(rel, sizeof(rel), "%.2s/%s", hex, hex + 2);
	if (chmod(tmp_path, 0444) < 0)
		return err_set(e, errno, "chmod %s: %s", tmp_path, strerror(errno));
	/* An intact existing object has the same bytes by definition: keep it, drop ours. One
	 * whose bytes no longer match its name (written through a hard link, a bad disk) is
	 * replaced by ours, which the caller has checked: that is how import and upload repair
	 * the store. Readers holding the old file keep their inode. */
	if (renameat2(AT_FDCWD, tmp_path, os->objects_fd, rel, RENAME_NOREPLACE) == 0) {
		if (out_added)
			*out_added = true;
	} else if (errno == EEXIST) {
		if (objstore_verify(os, hex, NULL) == 0)
			unlink(tmp_path);
		else if (renameat(AT_FDCWD, tmp_path, os->objects_fd, rel) < 0)
			r = err_set(e, errno, "cannot replace corrupt object %s: %s", hex,
				    strerror(errno));
		else if (out_added)
			*out_added = true;
	} else {
		r = err_set(e, errno, "cannot store object %s: %s", hex, strerror(errno));
	}
	return r;
}

/* Large objects are written with O_DIRECT: on a fresh machine (or VM) every page of new page
 * cache has to be faulted in, which made buffered writes of a 1 GiB tree cost seconds of
 * system time; direct I/O from one reused, aligned buffer costs a fraction. Small files stay
 * buffered (one direct I/O each would be slower). See docs/releases.md. */
#define DIRECT_MIN (256 * 1024)
#define DIRECT_ALIGN 4096

static int read_full(int fd, char *p, size_t want, size_t *out_n)
{
	size_t got = 0;
	while (got < want) {
		ssize_t n = read(fd, p + got, want - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	*out_n = got;
	return 0;
}

/* Copies in → out, hashing as it goes; the digest goes to out_hex. */
static int copy_hashing(int in, int out, char *out_hex)
{
	struct hasher *h = hasher_new();
	struct stat st;
	bool direct = false;
	char *chunk = NULL;
	int64_t total = 0;
	/* small files get a small buffer: a 1 MiB one per file would be an mmap/munmap pair
	 * each time, and the munmap's TLB shootdowns interrupt every other thread */
	size_t bufsize = 64 * 1024;
	int r = 0;

	if (fstat(in, &st) == 0 && st.st_size >= DIRECT_MIN) {
		int fl = fcntl(out, F_GETFL);
		direct = fl >= 0 && fcntl(out, F_SETFL, fl | O_DIRECT) == 0;
		bufsize = COPY_CHUNK;
	}
	if (posix_memalign((void **)&chunk, DIRECT_ALIGN, bufsize) != 0) {
		char tmp[HASH_HEX_LEN + 1];
		hasher_final(h, tmp);
		return -ENOMEM;
	}
	for (;;) {
		size_t n = 0;
		if ((r = read_full(in, chunk, bufsize, &n)) < 0 || n == 0)
			break;
		hasher_update(h, chunk, n);
		total += (int64_t)n;
		if (direct && n % DIRECT_ALIGN) {
			/* the tail: write whole blocks, then cut the file to its size */
			size_t padded = (n + DIRECT_ALIGN - 1) / DIRECT_ALIGN * DIRECT_ALIGN;
			memset(chunk + n, 0, padded - n);
			if ((r = fs_write_all(out, chunk, padded)) < 0)
				break;
			if (ftruncate(out, total) < 0)
				r = -errno;
			break;
		}
		if ((r = fs_write_all(out, chunk, n)) < 0 || n < bufsize)
			break;
	}
	free(chunk);
	if (r == 0) {
		hasher_final(h, out_hex);
	} else {
		char tmp[HASH_HEX_LEN + 1];
		hasher_final(h, tmp);
	}
	return r;
}

/* Links an anonymous O_TMPFILE inode into place under its digest. No rename: a rename
 * between directories takes the file system's rename lock and both directories' locks, and
 * with several threads storing thousands of files that lock was most of the build's time. */
static int link_tmpfile(struct objstore *os, int fd, const char *hex, bool *out_added, struct err *e)
{
	char rel[HASH_HEX_LEN + 2], proc[64];

	snprintf(rel, sizeof(rel), "%.2s/%s", hex, hex + 2);
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (linkat(AT_FDCWD, proc, os->objects_fd, rel, AT_SYMLINK_FOLLOW) == 0) {
		*out_added = true;
		return 0;
	}
	if (errno == EEXIST)
		return 0; /* same name, same bytes: ours is dropped with the fd */
	return err_set(e, errno, "cannot store object %s: %s", hex, strerror(errno));
}

int objstore_put_file(struct objstore *os, const char *src, const char *known_hex, char *out_hex,
		      bool *out_added, struct err *e)
{
	char hex[HASH_HEX_LEN + 1];
	char *tmp = NULL;
	int in, out = -1, r;
	bool anon;

	*out_added = false;
	if (known_hex && objstore_has(os, known_hex)) {
		memcpy(out_hex, known_hex, HASH_HEX_LEN + 1);
		return 0;
	}
	in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (in < 0)
		return err_set(e, errno, "cannot open %s: %s", src, strerror(errno));
	/* One pass: copy while hashing. A file whose digest is unknown is almost always new
	 * content (unchanged files are known from the build cache); if the object turns out to
	 * exist already, the copy is dropped. */
	out = openat(os->objects_fd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0444);
	anon = out >= 0;
	if (!anon && (r = objstore_tmp_open(os, &out, &tmp, e)) < 0)
		goto done;
	r = copy_hashing(in, out, hex);
	if (r < 0) {
		r = err_set(e, -r, "cannot copy %s into the object store: %s", src, strerror(-r));
		goto done;
	}
	if (fchmod(out, 0444) < 0) {
		r = err_set(e, errno, "chmod object: %s", strerror(errno));
		goto done;
	}
	if (anon)
		r = link_tmpfile(os, out, hex, out_added, e);
	else
		r = objstore_tmp_commit(os, tmp, hex, out_added, e);
	if (r < 0)
		goto done;
	memcpy(out_hex, hex, sizeof(hex));
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
	if (objstore_has(os, hex) && objstore_verify(os, hex, NULL) == 0) {
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
	} else if ((r = objstore_tmp_commit(os, tmp, hex, NULL, e)) == 0) {
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
		r = err_set(e, CAIRN_ECORRUPT, "object %.12s is missing from the store (%s)", hex, path);
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
		r = err_set(e, CAIRN_ECORRUPT, "missing from the store (%s)", path);
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

/* ---- resumable upload in parts ----------------------------------------------------------- */

int objstore_part_put(struct objstore *os, const char *hex, int64_t offset, int64_t size,
		      const void *p, size_t n, int64_t *out_received, bool *out_added,
		      struct err *e)
{
	char name[HASH_HEX_LEN + 16];
	char *path;
	struct stat st;
	int fd, r = 0;

	*out_received = 0;
	if (out_added)
		*out_added = false;
	if (strlen(hex) != HASH_HEX_LEN || !hash_is_hex(hex, HASH_HEX_LEN))
		return err_set(e, CAIRN_EINPUT, "'%.80s' is not an object digest", hex);
	if (size <= 0 || offset < 0 || offset > size || (int64_t)n > size - offset)
		return err_set(e, CAIRN_EINPUT,
			       "a part of %zu bytes at offset %lld does not fit an object of %lld "
			       "bytes",
			       n, (long long)offset, (long long)size);
	if (offset == 0) /* a new upload: parts nobody resumed for a day go */
		objstore_tmp_clean(os, OBJSTORE_PART_TTL_S, NULL);
	snprintf(name, sizeof(name), "part-%s", hex);
	path = fs_join(os->tmp, name);
	/* nothing to send: say it is whole — unless the stored copy is corrupt (checked when a
	 * sender starts; a repair under way has its part file) */
	if (objstore_has(os, hex) &&
	    (offset == 0 ? objstore_verify(os, hex, NULL) == 0 : !fs_exists(path))) {
		*out_received = size;
		free(path);
		return 1;
	}
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		r = err_set(e, errno, "cannot open %s: %s", path, strerror(errno));
		goto out;
	}
	/* one sender per object at a time; the lock goes with the fd */
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		r = err_set(e, EBUSY, "object %.12s… is being received from another sender", hex);
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		r = err_set(e, errno, "stat %s: %s", path, strerror(errno));
		goto out;
	}
	if (offset == 0 && st.st_size > 0) { /* a sender that starts over */
		if (ftruncate(fd, 0) < 0) {
			r = err_set(e, errno, "truncate %s: %s", path, strerror(errno));
			goto out;
		}
		st.st_size = 0;
	}
	if (offset != st.st_size || st.st_size > size) {
		*out_received = st.st_size <= size ? st.st_size : 0;
		r = err_set(e, EEXIST,
			    "object %.12s…: %lld bytes received so far; send the part at offset "
			    "%lld (or start over at 0)",
			    hex, (long long)*out_received, (long long)*out_received);
		goto out;
	}
	/* offset is the file's size here: the part is appended */
	if (lseek(fd, offset, SEEK_SET) < 0 || (r = fs_write_all(fd, p, n)) < 0) {
		r = err_set(e, r < 0 ? -r : errno, "cannot write %s: %s", path,
			    strerror(r < 0 ? -r : errno));
		goto out;
	}
	*out_received = offset + (int64_t)n;
	if (*out_received < size)
		goto out;
	/* the last byte is here: the whole file must hash to its name before it is visible */
	char got[HASH_HEX_LEN + 1];
	if (lseek(fd, 0, SEEK_SET) < 0 || hash_fd(fd, got) != size) {
		r = err_set(e, EIO, "cannot read back %s", path);
		goto out;
	}
	if (strcmp(got, hex)) {
		unlink(path);
		*out_received = 0;
		r = err_set(e, CAIRN_ECORRUPT,
			    "the %lld bytes sent hash to %.12s…, not to %.12s…: the object was not "
			    "stored; send it again from offset 0",
			    (long long)size, got, hex);
		goto out;
	}
	if (fchmod(fd, 0444) < 0) {
		r = err_set(e, errno, "chmod %s: %s", path, strerror(errno));
		goto out;
	}
	if ((r = objstore_tmp_commit(os, path, hex, out_added, e)) == 0)
		r = 1;
out:
	if (fd >= 0)
		close(fd);
	free(path);
	return r;
}

static int part_number(const char *s, size_t n, int64_t *out)
{
	int64_t v = 0;
	if (n == 0 || n > 16)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

int objstore_parse_part_query(const char *q, int64_t *out_offset, int64_t *out_size,
			      struct err *e)
{
	int64_t off = -1, size = -1;

	*out_offset = *out_size = -1;
	if (!q || !*q)
		return 0;
	for (const char *p = q; *p;) {
		const char *amp = strchr(p, '&'), *end = amp ? amp : p + strlen(p);
		const char *eq = memchr(p, '=', (size_t)(end - p));
		int64_t *slot = NULL;
		if (eq && eq - p == 6 && !memcmp(p, "offset", 6))
			slot = &off;
		else if (eq && eq - p == 4 && !memcmp(p, "size", 4))
			slot = &size;
		if (!slot || *slot >= 0 || part_number(eq + 1, (size_t)(end - eq - 1), slot) < 0 ||
		    (amp && !amp[1]))
			goto bad;
		p = amp ? amp + 1 : end;
	}
	if (off < 0 || size < 1 || off >= size || size > OBJSTORE_PART_TOTAL_MAX)
		goto bad;
	*out_offset = off;
	*out_size = size;
	return 1;
bad:
	return err_set(e, CAIRN_EINPUT,
		       "a part is sent with ?offset=N&size=T, whole numbers with 0 <= N < T <= %lld",
		       (long long)OBJSTORE_PART_TOTAL_MAX);
}
