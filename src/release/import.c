/* import: reads a release archive (docs/archive.md) from outside and stores it only when every
 * entry checks out against the manifest it carries. File content is staged in the object
 * store's tmp dir and hashed while written; nothing is committed — no object, no manifest, no
 * release row — until the whole archive has been read and found consistent. On any refusal
 * every staged file is unlinked. Hostile archives are the expected input here. */
#include "release/release-internal.h"

#include "store/store.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

_Static_assert(RELEASE_TAG_MAX == STORE_TAG_MAX, "tag bounds of release/ and store/ differ");

#define IMPORT_CHUNK (256 * 1024)
#define IMPORT_BLOCK 65536
/* Uncompressed bytes allowed beyond the content the manifest accounts for: tar headers, pax
 * records for long names (a path is at most 4 KiB) and padding, per entry and overall. */
#define IMPORT_SLACK_PER_ENTRY (16 * 1024)
#define IMPORT_SLACK	       (1024 * 1024)
#define IMPORT_NAME_SHOWN      600 /* bytes of an entry name quoted in a message */

struct digest_slot {
	const char *hex; /* borrowed from the manifest */
	bool have;	 /* already in the store, or staged by this import */
};

struct staged {
	char *tmp;	 /* owned; the temp file (NULL once committed or removed) */
	const char *hex; /* borrowed from the manifest */
	bool repair;     /* replaces a stored object whose bytes no longer match */
};

struct importer {
	struct objstore *os;
	struct archive *a;  /* owned */
	struct manifest *m; /* owned */
	struct buf mbytes;  /* the manifest's exact bytes */
	char hex[HASH_HEX_LEN + 1];
	bool *seen;		   /* owned; one per manifest entry */
	struct digest_slot *slots; /* owned; unique file digests, sorted */
	size_t n_slots;
	struct staged *staged; /* owned array */
	size_t n_staged, cap_staged;
	char *chunk;	/* owned; IMPORT_CHUNK bytes */
	struct buf q;	/* the current entry's name, quoted for messages */
	uint64_t limit; /* uncompressed bytes we read at most */
	size_t n_read;	/* entries read so far */
	char *last;	/* owned; the name of the last entry read */
	bool have_meta;
	char tag[RELEASE_TAG_MAX + 1];
	int64_t created_at;
	int64_t bytes;
	size_t n_files;
};

/* ---- helpers ------------------------------------------------------------------------- */

/* s as a quoted string with control characters escaped, cut at IMPORT_NAME_SHOWN bytes: names
 * and targets come from the archive and must not reach a terminal raw. q is bounded by
 * IMPORT_NAME_SHOWN. */
static const char *quote_into(struct buf *q, const char *s)
{
	buf_reset(q);
	if (buf_add_quoted(q, s) < 0) {
		q->len = IMPORT_NAME_SHOWN - 8;
		q->data[q->len] = 0;
		buf_adds(q, "...\"");
	}
	return buf_str(q);
}

static const char *quoted(struct importer *im, const char *s)
{
	return quote_into(&im->q, s);
}

static int refuse(struct err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int refuse(struct err *e, const char *fmt, ...)
{
	char msg[ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return err_set(e, CAIRN_EINPUT, "archive refused: %s", msg);
}

static const char *ar_why(struct importer *im)
{
	const char *s = archive_error_string(im->a);
	return s ? s : "unreadable data";
}

static int check_limit(struct importer *im, const char *name, struct err *e)
{
	int64_t n = archive_filter_bytes(im->a, 0);
	if (n >= 0 && (uint64_t)n > im->limit)
		return refuse(
		    e,
		    "%s: the archive expands to more than %llu bytes, more than its manifest "
		    "accounts for",
		    name, (unsigned long long)im->limit);
	return 0;
}

static bool has_dotdot(const char *p)
{
	for (const char *c = p; *c;) {
		const char *end = strchr(c, '/');
		size_t n = end ? (size_t)(end - c) : strlen(c);
		if (n == 2 && c[0] == '.' && c[1] == '.')
			return true;
		c += n + (end ? 1 : 0);
	}
	return false;
}

static int cmp_slot(const void *a, const void *b)
{
	return strcmp(((const struct digest_slot *)a)->hex, ((const struct digest_slot *)b)->hex);
}

static struct digest_slot *find_slot(struct importer *im, const char *hex)
{
	struct digest_slot key = {.hex = hex};
	return im->n_slots ? bsearch(&key, im->slots, im->n_slots, sizeof(key), cmp_slot) : NULL;
}

/* Reads the current entry's data into b (bounded by b->max). */
static int read_small(struct importer *im, const char *name, struct buf *b, struct err *e)
{
	for (;;) {
		la_ssize_t n = archive_read_data(im->a, im->chunk, IMPORT_CHUNK);
		if (n == 0)
			return 0;
		if (n < 0)
			return refuse(e, "%s: the archive is truncated or corrupt: %s", name,
				      ar_why(im));
		if (buf_add(b, im->chunk, (size_t)n) < 0)
			return refuse(e, "%s is larger than %zu bytes", name, b->max);
		if (check_limit(im, name, e) < 0)
			return -CAIRN_EINPUT;
	}
}

/* ---- the manifest and meta.json ------------------------------------------------------- */

static int read_manifest(struct importer *im, struct archive_entry *ae, struct err *e)
{
	const char *name = archive_entry_pathname_utf8(ae);
	struct buf canon;
	uint64_t total = 0;
	int r;

	if (!name || strcmp(name, RELEASE_AR_MANIFEST) != 0)
		return refuse(e,
			      "the first entry must be %s, not %s: this is not a cairn release "
			      "archive",
			      RELEASE_AR_MANIFEST, quoted(im, name ? name : "(unnamed)"));
	if (archive_entry_filetype(ae) != AE_IFREG || archive_entry_hardlink(ae))
		return refuse(e, "%s is not a regular file", RELEASE_AR_MANIFEST);
	if (archive_entry_size(ae) > (int64_t)MANIFEST_MAX_BYTES)
		return refuse(e, "%s is larger than %u bytes", RELEASE_AR_MANIFEST,
			      MANIFEST_MAX_BYTES);
	if ((r = read_small(im, RELEASE_AR_MANIFEST, &im->mbytes, e)) < 0)
		return r;
	if ((r = manifest_parse(buf_str(&im->mbytes), im->mbytes.len, &im->m, e)) < 0) {
		err_prefix(e, "archive refused: %s", RELEASE_AR_MANIFEST);
		return r;
	}
	/* The id is the digest of these exact bytes: they must be the canonical form, or the same
	 * release would get two ids. */
	buf_init(&canon, MANIFEST_MAX_BYTES);
	r = manifest_serialize(im->m, &canon);
	if (r < 0 || canon.len != im->mbytes.len || memcmp(canon.data, im->mbytes.data, canon.len))
		r = refuse(e,
			   "%s is valid but not in canonical form (compact JSON, sorted keys, as "
			   "cairn writes it)",
			   RELEASE_AR_MANIFEST);
	buf_done(&canon);
	if (r < 0)
		return r;
	if (!name_app_ok(im->m->app, strlen(im->m->app)))
		return refuse(e, "%s: app name %s is not [a-z0-9][a-z0-9_.-]{0,62}",
			      RELEASE_AR_MANIFEST, quoted(im, im->m->app));
	hash_mem(im->mbytes.data, im->mbytes.len, im->hex);

	im->seen = xcalloc(im->m->n_entries ? im->m->n_entries : 1, sizeof(bool));
	im->slots = xcalloc(im->m->n_entries ? im->m->n_entries : 1, sizeof(*im->slots));
	for (size_t i = 0; i < im->m->n_entries; i++) {
		const struct manifest_entry *en = &im->m->entries[i];
		if (en->type != MANIFEST_FILE)
			continue;
		im->n_files++;
		total += (uint64_t)en->size; /* each size <= INT64_MAX: no wrap */
		if (total > (uint64_t)INT64_MAX / 4)
			return refuse(e, "%s claims an absurd total size", RELEASE_AR_MANIFEST);
		im->slots[im->n_slots++].hex = en->digest;
	}
	im->bytes = (int64_t)total;
	qsort(im->slots, im->n_slots, sizeof(*im->slots), cmp_slot);
	if (im->n_slots) { /* unique */
		size_t w = 1;
		for (size_t i = 1; i < im->n_slots; i++)
			if (strcmp(im->slots[i].hex, im->slots[w - 1].hex) != 0)
				im->slots[w++] = im->slots[i];
		im->n_slots = w;
	}
	im->limit = im->mbytes.len + RELEASE_AR_META_MAX + total +
		    (uint64_t)(im->m->n_entries + 4) * IMPORT_SLACK_PER_ENTRY + IMPORT_SLACK;
	return 0;
}

static int read_meta(struct importer *im, struct archive_entry *ae, struct err *e)
{
	struct buf b;
	json_t *root = NULL, *v;
	int r;

	if (im->n_read != 1)
		return refuse(e, "%s must come right after the manifest", RELEASE_AR_META);
	if (archive_entry_filetype(ae) != AE_IFREG || archive_entry_hardlink(ae))
		return refuse(e, "%s is not a regular file", RELEASE_AR_META);
	buf_init(&b, RELEASE_AR_META_MAX);
	if ((r = read_small(im, RELEASE_AR_META, &b, e)) < 0)
		goto done;
	root = json_loadb(buf_str(&b), b.len, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(root)) {
		r = refuse(e, "%s is not a JSON object", RELEASE_AR_META);
		goto done;
	}
	if ((v = json_object_get(root, "tag"))) {
		const char *t = json_string_value(v);
		struct err te;
		if (!t || strlen(t) != json_string_length(v) ||
		    name_tag_check(t, strlen(t), &te) < 0) {
			r = refuse(e, "%s: \"tag\" is not a usable tag: %s", RELEASE_AR_META,
				   t && strlen(t) == json_string_length(v) ? te.msg : "not a string");
			goto done;
		}
		snprintf(im->tag, sizeof(im->tag), "%s", t);
	}
	if ((v = json_object_get(root, "created_at"))) {
		if (!json_is_integer(v) || json_integer_value(v) < 0) {
			r = refuse(e, "%s: \"created_at\" is not a non-negative integer",
				   RELEASE_AR_META);
			goto done;
		}
		im->created_at = json_integer_value(v);
	}
	im->have_meta = true;
done:
	json_decref(root);
	buf_done(&b);
	return r;
}

/* ---- entries under files/ ------------------------------------------------------------ */

/* Stages (or, when the object is already stored or staged, only checks) one file's data. */
static int read_file_data(struct importer *im, const struct manifest_entry *en, const char *name,
			  struct err *e)
{
	struct digest_slot *slot = find_slot(im, en->digest);
	/* stored objects are re-hashed: an import replaces one whose bytes no longer match its
	 * digest (the repair path, docs/releases.md) */
	bool stored = slot && !slot->have && objstore_has(im->os, en->digest);
	bool repair = stored && objstore_verify(im->os, en->digest, NULL) < 0;
	bool write = slot && !slot->have && (!stored || repair);
	struct hasher *h;
	char got[HASH_HEX_LEN + 1];
	char *tmp = NULL;
	int64_t total = 0;
	int fd = -1, r = 0;

	if (write && (r = objstore_tmp_open(im->os, &fd, &tmp, e)) < 0)
		return r;
	h = hasher_new();
	for (;;) {
		la_ssize_t n = archive_read_data(im->a, im->chunk, IMPORT_CHUNK);
		if (n == 0)
			break;
		if (n < 0) {
			r = refuse(e, "%s: the archive is truncated or corrupt: %s", name,
				   ar_why(im));
			break;
		}
		total += n;
		if (total > en->size) {
			r = refuse(e, "%s has more than the %lld bytes its manifest entry says",
				   name, (long long)en->size);
			break;
		}
		if ((r = check_limit(im, name, e)) < 0)
			break;
		hasher_update(h, im->chunk, (size_t)n);
		if (write && (r = fs_write_all(fd, im->chunk, (size_t)n)) < 0) {
			r = err_set(e, -r, "cannot write %s: %s", tmp, strerror(-r));
			break;
		}
	}
	hasher_final(h, got);
	if (r == 0 && total != en->size)
		r = refuse(e, "%s has %lld bytes, its manifest entry says %lld", name,
			   (long long)total, (long long)en->size);
	if (r == 0 && strcmp(got, en->digest) != 0)
		r = refuse(
		    e, "%s: content hashes to sha256:%.12s, its manifest entry says sha256:%.12s",
		    name, got, en->digest);
	if (fd >= 0)
		close(fd);
	if (r < 0) {
		if (tmp)
			unlink(tmp);
		free(tmp);
		return r;
	}
	if (write) {
		if (im->n_staged == im->cap_staged) {
			im->cap_staged = im->cap_staged ? im->cap_staged * 2 : 64;
			im->staged = xrealloc(im->staged, im->cap_staged * sizeof(*im->staged));
		}
		im->staged[im->n_staged++] =
		    (struct staged){.tmp = tmp, .hex = en->digest, .repair = repair};
	}
	if (slot)
		slot->have = true;
	return 0;
}

static const char *type_word(char t)
{
	return t == MANIFEST_FILE  ? "a regular file"
	       : t == MANIFEST_DIR ? "a directory"
				   : "a symlink";
}

static int read_files_entry(struct importer *im, struct archive_entry *ae, const char *name,
			    struct err *e)
{
	const char *qn = quoted(im, name);
	mode_t ft = archive_entry_filetype(ae);
	char *rel = xstrdup(name + strlen(RELEASE_AR_FILES));
	size_t len = strlen(rel);
	const struct manifest_entry *en;
	char type;
	int r = 0;

	if (archive_entry_hardlink(ae)) {
		r = refuse(e, "%s is a hard link (hard links are never accepted)", qn);
		goto done;
	}
	if (ft == AE_IFREG)
		type = MANIFEST_FILE;
	else if (ft == AE_IFDIR)
		type = MANIFEST_DIR;
	else if (ft == AE_IFLNK)
		type = MANIFEST_LINK;
	else {
		r = refuse(e, "%s is a %s, which a release never contains", qn,
			   ft == AE_IFCHR || ft == AE_IFBLK ? "device file"
			   : ft == AE_IFIFO		    ? "fifo"
			   : ft == AE_IFSOCK		    ? "socket"
							    : "file of unknown type");
		goto done;
	}
	if (type == MANIFEST_DIR && len && rel[len - 1] == '/')
		rel[--len] = 0;
	if (!(en = manifest_find(im->m, rel))) {
		r = refuse(e, "%s is not in the release's manifest", qn);
		goto done;
	}
	if (im->seen[en - im->m->entries]) {
		r = refuse(e, "%s appears twice in the archive", qn);
		goto done;
	}
	im->seen[en - im->m->entries] = true;
	if (en->type != type) {
		r = refuse(e, "%s is %s in the archive but %s in the manifest", qn, type_word(type),
			   type_word(en->type));
		goto done;
	}
	if (archive_entry_sparse_count(ae) > 0) {
		r = refuse(e, "%s is a sparse file entry, which cairn never writes", qn);
		goto done;
	}
	if (type != MANIFEST_LINK && (archive_entry_perm(ae) & 07777) != en->mode) {
		r = refuse(e, "%s has mode %04o in the archive, %04o in the manifest", qn,
			   (unsigned)(archive_entry_perm(ae) & 07777), en->mode);
		goto done;
	}
	if (type == MANIFEST_LINK) {
		const char *t = archive_entry_symlink_utf8(ae);
		struct buf q1, q2;
		buf_init(&q1, IMPORT_NAME_SHOWN);
		buf_init(&q2, IMPORT_NAME_SHOWN);
		if (!t || !manifest_link_inside(rel, t))
			r = refuse(e, "%s is a symlink pointing outside the release (-> %s)", qn,
				   t ? quote_into(&q1, t) : "(unreadable)");
		else if (strcmp(t, en->target) != 0)
			r = refuse(e, "%s points to %s in the archive, to %s in the manifest", qn,
				   quote_into(&q1, t), quote_into(&q2, en->target));
		buf_done(&q1);
		buf_done(&q2);
		if (r < 0)
			goto done;
	}
	if (type != MANIFEST_FILE) {
		if (archive_entry_size_is_set(ae) && archive_entry_size(ae) != 0)
			r = refuse(e, "%s is %s with data attached", qn, type_word(type));
		goto done;
	}
	if (!archive_entry_size_is_set(ae) || archive_entry_size(ae) != en->size) {
		r = refuse(e, "%s has %lld bytes in the archive, %lld in the manifest", qn,
			   (long long)archive_entry_size(ae), (long long)en->size);
		goto done;
	}
	r = read_file_data(im, en, qn, e);
done:
	free(rel);
	return r;
}

/* Refuses names that are absolute, climb with "..", or live outside files/ and
 * cairn-release/; dispatches the rest. */
static int read_entry(struct importer *im, struct archive_entry *ae, struct err *e)
{
	const char *name = archive_entry_pathname_utf8(ae);
	const char *qn;

	if (!name || !name[0])
		return refuse(e, "entry %zu has no usable name", im->n_read + 1);
	qn = quoted(im, name);
	if (name[0] == '/')
		return refuse(e, "%s is an absolute path", qn);
	if (has_dotdot(name))
		return refuse(e, "%s has a \"..\" component", qn);
	if (!strcmp(name, RELEASE_AR_META))
		return read_meta(im, ae, e);
	if (!strcmp(name, RELEASE_AR_MANIFEST))
		return refuse(e, "%s appears twice in the archive", qn);
	if (str_starts(name, RELEASE_AR_DIR))
		return refuse(e, "%s is not an entry cairn writes (only %s and %s)", qn,
			      RELEASE_AR_MANIFEST, RELEASE_AR_META);
	if (str_starts(name, RELEASE_AR_FILES) && name[strlen(RELEASE_AR_FILES)])
		return read_files_entry(im, ae, name, e);
	return refuse(e, "%s is outside files/ and cairn-release/", qn);
}

/* ---- commit -------------------------------------------------------------------------- */

static int check_space(struct importer *im, struct err *e)
{
	struct statvfs sv;
	uint64_t need = 0, have;

	for (size_t i = 0; i < im->m->n_entries; i++) {
		const struct manifest_entry *en = &im->m->entries[i];
		struct digest_slot *s;
		if (en->type != MANIFEST_FILE || !(s = find_slot(im, en->digest)) || s->have)
			continue;
		s->have = true; /* counted once; reset below */
		if (!objstore_has(im->os, en->digest))
			need += (uint64_t)en->size;
	}
	for (size_t i = 0; i < im->n_slots; i++)
		im->slots[i].have = false;
	if (statvfs(objstore_state_dir(im->os), &sv) < 0)
		return 0; /* unknown: the writes themselves will tell */
	have = (uint64_t)sv.f_bavail * sv.f_frsize;
	if (need > have)
		return err_set(
		    e, ENOSPC,
		    "the release needs %llu bytes of new objects but the state directory's "
		    "file system has %llu free",
		    (unsigned long long)need, (unsigned long long)have);
	return 0;
}

static int commit(struct importer *im, struct store *st, struct release_import_result *res,
		  struct err *e)
{
	struct store_release rel, old;
	struct err ge;
	char mhex[HASH_HEX_LEN + 1];
	int r;

	for (size_t i = 0; i < im->n_staged; i++) {
		if (im->staged[i].repair)
			res->n_repaired++;
		else if (!objstore_has(im->os, im->staged[i].hex))
			res->n_new_objects++;
		if ((r = objstore_tmp_commit(im->os, im->staged[i].tmp, im->staged[i].hex, NULL, e)) < 0)
			return r;
		free(im->staged[i].tmp);
		im->staged[i].tmp = NULL;
	}
	if ((r = objstore_put_mem(im->os, im->mbytes.data, im->mbytes.len, mhex, e)) < 0)
		return r;
	if ((r = objstore_sync(im->os)) < 0)
		return err_set(e, -r, "cannot sync the object store: %s", strerror(-r));

	memset(&rel, 0, sizeof(rel));
	snprintf(rel.id, sizeof(rel.id), "sha256:%s", im->hex);
	snprintf(rel.app, sizeof(rel.app), "%s", im->m->app);
	rel.created_at = im->have_meta ? im->created_at : time_now_ns() / 1000000000;
	rel.state = RELEASE_UNTESTED;
	rel.n_files = (int64_t)im->n_files;
	rel.bytes = im->bytes;
	r = store_release_get(st, rel.id, &old, &ge);
	if (r < 0 && ge.code != CAIRN_ENOTFOUND) {
		*e = ge;
		return r;
	}
	res->existed = r == 0;
	/* a release keeps every tag it was given: the archive's tag is added to the others */
	snprintf(rel.tag, sizeof(rel.tag), "%s", im->tag);
	char holder[HASH_ID_LEN + 1];
	bool tag_new = rel.tag[0] && store_tag_get(st, rel.app, rel.tag, holder, &ge) == 0;
	r = store_release_put(st, &rel, &ge);
	if (r < 0 && ge.code == CAIRN_EINPUT && rel.tag[0]) {
		/* the tag names another release here: tags never move, so import untagged */
		snprintf(res->dropped_tag, sizeof(res->dropped_tag), "%s", rel.tag);
		rel.tag[0] = 0;
		if (res->existed)
			return 0;
		r = store_release_put(st, &rel, &ge);
	}
	if (r < 0) {
		*e = ge;
		return r;
	}
	snprintf(res->tag, sizeof(res->tag), "%s", rel.tag[0] || !res->existed ? rel.tag : old.tag);
	res->tag_added = tag_new && res->existed;
	return 0;
}

/* ---- entry points -------------------------------------------------------------------- */

int release_import_archive(struct objstore *os, struct store *st, int in_fd,
			   struct release_import_result *out, struct err *e)
{
	struct importer im = {.os = os};
	struct release__locale loc;
	struct release_import_result res;
	struct archive_entry *ae;
	const char *name;
	int r, ar;

	memset(&res, 0, sizeof(res));
	objstore_tmp_clean(os, OBJSTORE_PART_TTL_S, NULL); /* what a killed import left */
	buf_init(&im.mbytes, MANIFEST_MAX_BYTES);
	buf_init(&im.q, IMPORT_NAME_SHOWN);
	im.chunk = xmalloc(IMPORT_CHUNK);
	im.limit = MANIFEST_MAX_BYTES + (uint64_t)RELEASE_AR_META_MAX + IMPORT_SLACK;
	release__locale_utf8(&loc);
	im.a = archive_read_new();
	if (!im.a) {
		r = err_set(e, ENOMEM, "out of memory");
		goto done;
	}
	/* zstd (built in, never an external program) or uncompressed; tar formats only */
	if (archive_read_support_filter_zstd(im.a) != ARCHIVE_OK ||
	    archive_read_support_format_tar(im.a) != ARCHIVE_OK) {
		r = err_set(e, ENOTSUP,
			    "this libarchive cannot read tar.zst without an external "
			    "program: %s",
			    ar_why(&im));
		goto done;
	}
	if (archive_read_open_fd(im.a, in_fd, IMPORT_BLOCK) != ARCHIVE_OK) {
		r = refuse(e, "not a tar.zst archive written by 'cairn export': %s", ar_why(&im));
		goto done;
	}
	for (;;) {
		ar = archive_read_next_header(im.a, &ae);
		if (ar == ARCHIVE_EOF)
			break;
		if (ar != ARCHIVE_OK) {
			r = im.n_read
				? refuse(e, "the archive is truncated or corrupt after %s: %s",
					 quoted(&im, im.last), ar_why(&im))
				: refuse(e, "not a tar.zst archive written by 'cairn export': %s",
					 ar_why(&im));
			goto done;
		}
		name = archive_entry_pathname_utf8(ae);
		if ((r = check_limit(&im, quoted(&im, name ? name : "(an unnamed entry)"), e)) < 0)
			goto done;
		r = im.n_read ? read_entry(&im, ae, e) : read_manifest(&im, ae, e);
		if (r < 0)
			goto done;
		im.n_read++;
		free(im.last);
		im.last = xstrdup(archive_entry_pathname_utf8(ae));
	}
	if (!im.m) {
		r = refuse(e, "the archive is empty: no %s", RELEASE_AR_MANIFEST);
		goto done;
	}
	for (size_t i = 0; i < im.m->n_entries; i++)
		if (!im.seen[i]) {
			char *missing = xasprintf(RELEASE_AR_FILES "%s", im.m->entries[i].path);
			r = refuse(e, "%s is in the manifest but missing from the archive",
				   quoted(&im, missing));
			free(missing);
			goto done;
		}
	if ((r = check_space(&im, e)) < 0 || (r = commit(&im, st, &res, e)) < 0)
		goto done;
	snprintf(res.id, sizeof(res.id), "sha256:%s", im.hex);
	snprintf(res.app, sizeof(res.app), "%s", im.m->app);
	res.n_files = im.n_files;
	res.bytes = im.bytes;
	*out = res;
	r = 0;
done:
	for (size_t i = 0; i < im.n_staged; i++)
		if (im.staged[i].tmp) {
			unlink(im.staged[i].tmp);
			free(im.staged[i].tmp);
		}
	free(im.staged);
	if (im.a)
		archive_read_free(im.a);
	release__locale_restore(&loc);
	manifest_free(im.m);
	buf_done(&im.mbytes);
	buf_done(&im.q);
	free(im.seen);
	free(im.last);
	free(im.slots);
	free(im.chunk);
	return r;
}

int release_import(struct objstore *os, struct store *st, int in_fd, char *out_id, struct err *e)
{
	struct release_import_result res;
	int r = release_import_archive(os, st, in_fd, &res, e);
	if (r == 0)
		memcpy(out_id, res.id, sizeof(res.id));
	return r;
}
