/* export: writes a stored release as a deterministic tar.zst (pax, uid/gid 0, no user or group
 * names, mtime 0): the manifest first, then meta.json when given, then every entry under
 * files/ in manifest order. Every object is checked against its digest before its bytes leave
 * the store; a missing or corrupt one fails the export, naming the file. Never writes state. */
#include "release/release-internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EXPORT_CHUNK	  (1024 * 1024) /* objects up to this size are read once, into memory */
#define EXPORT_ZSTD_LEVEL "3" /* fixed, so the bytes do not depend on libarchive's default */

/* Where the archive's bytes go. After a failure everything is discarded, so closing the
 * archive (which frees libarchive's buffers) adds no trailer: a failed export is never a
 * valid archive. */
struct sink {
	int fd;
	bool discard;
};

struct exporter {
	const struct objstore *os;
	struct sink sink;
	struct archive *a;	  /* owned */
	struct archive_entry *ae; /* owned; reused for every entry */
	char *chunk;		  /* owned; EXPORT_CHUNK bytes */
};

static la_ssize_t sink_write(struct archive *a, void *ctx, const void *p, size_t n)
{
	struct sink *s = ctx;
	int r;

	if (s->discard)
		return (la_ssize_t)n;
	if ((r = fs_write_all(s->fd, p, n)) < 0) {
		archive_set_error(a, -r, "%s", strerror(-r));
		return -1;
	}
	return (la_ssize_t)n;
}

static int ar_fail(const struct exporter *x, struct err *e, const char *name)
{
	const char *why = archive_error_string(x->a);
	int code = archive_errno(x->a) > 0 ? archive_errno(x->a) : EIO;
	return err_set(e, code, "cannot write the archive at %s: %s", name,
		       why ? why : "write error");
}

/* Sets up x->ae as a fresh entry with the fixed owner and time of every entry we write. */
static void entry_init(struct exporter *x, const char *name, mode_t type, unsigned perm,
		       int64_t size)
{
	archive_entry_clear(x->ae);
	archive_entry_update_pathname_utf8(x->ae, name);
	archive_entry_set_filetype(x->ae, type);
	archive_entry_set_perm(x->ae, perm);
	archive_entry_set_size(x->ae, size);
	archive_entry_set_uid(x->ae, 0);
	archive_entry_set_gid(x->ae, 0);
	archive_entry_set_mtime(x->ae, 0, 0);
}

static int write_data(struct exporter *x, const char *name, const void *p, size_t n, struct err *e)
{
	const char *c = p;
	while (n > 0) {
		la_ssize_t w = archive_write_data(x->a, c, n);
		if (w <= 0)
			return ar_fail(x, e, name);
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

static int write_mem(struct exporter *x, const char *name, const void *p, size_t n, struct err *e)
{
	entry_init(x, name, AE_IFREG, 0644, (int64_t)n);
	if (archive_write_header(x->a, x->ae) != ARCHIVE_OK)
		return ar_fail(x, e, name);
	return write_data(x, name, p, n, e);
}

static int read_full(int fd, char *p, size_t n)
{
	while (n > 0) {
		ssize_t r = read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO; /* shorter than fstat said: changed under us */
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

static int corrupt(struct err *e, const struct manifest_entry *en, const char *got,
		   const char *path)
{
	return err_set(
	    e, CAIRN_ECORRUPT,
	    "files/%s: stored object %.12s is corrupt (its bytes hash to %.12s; %s); nothing "
	    "corrupt was exported — rebuild or re-import the release",
	    en->path, en->digest, got, path);
}

/* Streams one object into the archive. Small objects are read into memory, hashed and only
 * then written; larger ones are hashed in a first pass and hashed again while written, so a
 * corrupt object never reaches the output. */
static int write_object(struct exporter *x, const struct manifest_entry *en, const char *name,
			struct err *e)
{
	char *path = objstore_path(x->os, en->digest);
	char got[HASH_HEX_LEN + 1];
	struct stat st;
	int fd, r = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT)
			r = err_set(
			    e, CAIRN_ECORRUPT,
			    "files/%s: object %.12s is missing from the store (%s); rebuild or "
			    "re-import the release",
			    en->path, en->digest, path);
		else
			r = err_set(e, errno, "files/%s: cannot open %s: %s", en->path, path,
				    strerror(errno));
		goto done;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		r = err_set(e, CAIRN_ECORRUPT, "files/%s: %s is not a readable object file",
			    en->path, path);
		goto done;
	}
	if (st.st_size != en->size) {
		r = err_set(
		    e, CAIRN_ECORRUPT,
		    "files/%s: stored object %.12s is corrupt (%lld bytes, the manifest says "
		    "%lld; %s); nothing corrupt was exported",
		    en->path, en->digest, (long long)st.st_size, (long long)en->size, path);
		goto done;
	}
	if (en->size <= EXPORT_CHUNK) {
		if ((r = read_full(fd, x->chunk, (size_t)en->size)) < 0) {
			r = err_set(e, -r, "files/%s: cannot read %s: %s", en->path, path,
				    strerror(-r));
			goto done;
		}
		hash_mem(x->chunk, (size_t)en->size, got);
		if (strcmp(got, en->digest) != 0) {
			r = corrupt(e, en, got, path);
			goto done;
		}
		entry_init(x, name, AE_IFREG, en->mode, en->size);
		if (archive_write_header(x->a, x->ae) != ARCHIVE_OK) {
			r = ar_fail(x, e, name);
			goto done;
		}
		r = write_data(x, name, x->chunk, (size_t)en->size, e);
		goto done;
	}
	{
		int64_t n = hash_fd(fd, got);
		if (n < 0) {
			r = err_set(e, (int)-n, "files/%s: cannot read %s: %s", en->path, path,
				    strerror((int)-n));
			goto done;
		}
		if (strcmp(got, en->digest) != 0 || n != en->size) {
			r = corrupt(e, en, got, path);
			goto done;
		}
	}
	if (lseek(fd, 0, SEEK_SET) < 0) {
		r = err_set(e, errno, "files/%s: cannot seek %s: %s", en->path, path,
			    strerror(errno));
		goto done;
	}
	entry_init(x, name, AE_IFREG, en->mode, en->size);
	if (archive_write_header(x->a, x->ae) != ARCHIVE_OK) {
		r = ar_fail(x, e, name);
		goto done;
	}
	{
		struct hasher *h = hasher_new();
		int64_t left = en->size;
		while (left > 0 && r == 0) {
			size_t n = left > EXPORT_CHUNK ? EXPORT_CHUNK : (size_t)left;
			if ((r = read_full(fd, x->chunk, n)) < 0) {
				r = err_set(e, -r, "files/%s: cannot read %s: %s", en->path, path,
					    strerror(-r));
				break;
			}
			hasher_update(h, x->chunk, n);
			r = write_data(x, name, x->chunk, n, e);
			left -= (int64_t)n;
		}
		hasher_final(h, got);
		/* The object changed between the two passes: the archive is already partly written,
		 * so fail it (the importer would refuse it too). */
		if (r == 0 && strcmp(got, en->digest) != 0)
			r = corrupt(e, en, got, path);
	}
done:
	if (fd >= 0)
		close(fd);
	free(path);
	return r;
}

static int write_entry(struct exporter *x, const struct manifest_entry *en, struct err *e)
{
	char *name = xasprintf(RELEASE_AR_FILES "%s", en->path);
	int r = 0;

	switch (en->type) {
	case MANIFEST_DIR:
		entry_init(x, name, AE_IFDIR, en->mode, 0);
		if (archive_write_header(x->a, x->ae) != ARCHIVE_OK)
			r = ar_fail(x, e, name);
		break;
	case MANIFEST_LINK:
		entry_init(x, name, AE_IFLNK, 0777, 0);
		archive_entry_update_symlink_utf8(x->ae, en->target);
		if (archive_write_header(x->a, x->ae) != ARCHIVE_OK)
			r = ar_fail(x, e, name);
		break;
	default:
		r = write_object(x, en, name, e);
		break;
	}
	free(name);
	return r;
}

static int write_meta(struct exporter *x, const struct release_meta *meta, struct err *e)
{
	json_t *o = json_pack("{s:I}", "created_at", (json_int_t)meta->created_at);
	char *s;
	int r;

	if (meta->tag && meta->tag[0])
		json_object_set_new(o, "tag", json_string(meta->tag));
	s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	if (!s)
		return err_set(e, EILSEQ, "release tag is not valid UTF-8");
	r = write_mem(x, RELEASE_AR_META, s, strlen(s), e);
	free(s);
	return r;
}

void release__locale_utf8(struct release__locale *l)
{
	l->old = (locale_t)0;
	l->utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
	if (l->utf8)
		l->old = uselocale(l->utf8);
}

void release__locale_restore(struct release__locale *l)
{
	if (!l->utf8)
		return;
	uselocale(l->old);
	freelocale(l->utf8);
	l->utf8 = (locale_t)0;
}

int release_export_meta(const struct objstore *os, const char *id, const struct release_meta *meta,
			int out_fd, struct err *e)
{
	struct exporter x = {.os = os, .sink = {.fd = out_fd}};
	struct release__locale loc = {(locale_t)0, (locale_t)0};
	struct manifest *m = NULL;
	struct buf mb;
	const char *hex;
	int r;

	buf_init(&mb, MANIFEST_MAX_BYTES);
	if ((r = release_id_hex(id, &hex, e)) < 0)
		return r;
	/* The exact stored bytes, digest checked: they are what the id names. */
	if ((r = objstore_read(os, hex, &mb, e)) < 0 ||
	    (r = manifest_parse(buf_str(&mb), mb.len, &m, e)) < 0) {
		err_prefix(e, "release sha256:%.12s", hex);
		goto done;
	}
	release__locale_utf8(&loc);
	x.a = archive_write_new();
	x.ae = archive_entry_new();
	x.chunk = xmalloc(EXPORT_CHUNK);
	if (!x.a || !x.ae) {
		r = err_set(e, ENOMEM, "out of memory");
		goto done;
	}
	if (archive_write_add_filter_zstd(x.a) != ARCHIVE_OK ||
	    archive_write_set_filter_option(x.a, "zstd", "compression-level", EXPORT_ZSTD_LEVEL) !=
		ARCHIVE_OK ||
	    archive_write_set_format_pax_restricted(x.a) != ARCHIVE_OK ||
	    archive_write_set_bytes_in_last_block(x.a, 1) != ARCHIVE_OK ||
	    archive_write_open(x.a, &x.sink, NULL, sink_write, NULL) != ARCHIVE_OK) {
		r = ar_fail(&x, e, "the start");
		goto done;
	}
	if ((r = write_mem(&x, RELEASE_AR_MANIFEST, mb.data, mb.len, e)) < 0)
		goto done;
	if (meta && (r = write_meta(&x, meta, e)) < 0)
		goto done;
	for (size_t i = 0; i < m->n_entries; i++)
		if ((r = write_entry(&x, &m->entries[i], e)) < 0)
			goto done;
	if (archive_write_close(x.a) != ARCHIVE_OK)
		r = ar_fail(&x, e, "the end");
done:
	if (x.a) {
		if (r < 0) {
			x.sink.discard = true;
			archive_write_close(x.a);
		}
		archive_write_free(x.a);
	}
	archive_entry_free(x.ae);
	release__locale_restore(&loc);
	free(x.chunk);
	manifest_free(m);
	buf_done(&mb);
	return r;
}

int release_export(const struct objstore *os, const char *id, int out_fd, struct err *e)
{
	return release_export_meta(os, id, NULL, out_fd, e);
}
