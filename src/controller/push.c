/* controller/push: a release's objects to an ssh host — ask its agent which of the manifest
 * and the objects it names are missing, send only those (each read back and digest-checked
 * from the local store first), then have the agent re-hash the whole release. Counts and
 * bytes go to the step's detail. No decision about the deploy is taken here. */
#include "controller/controller-internal.h"

#include "agent/agent.h"
#include "release/release.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PUSH_BATCH 4096 /* digests per "missing" request (the agent takes OBJSTORE_DIGESTS_MAX) */

static int cmp_hex(const void *a, const void *b)
{
	return memcmp(a, b, HASH_HEX_LEN);
}

/* The release's digests, sorted and unique: its manifest first (as an object), then files. */
static int collect(const struct manifest *m, const char *release, char (**out)[HASH_HEX_LEN + 1],
		   size_t *out_n)
{
	char(*d)[HASH_HEX_LEN + 1] = calloc(m->n_entries + 1, sizeof(*d));
	size_t n = 0, u = 0;
	if (!d)
		return -ENOMEM;
	memcpy(d[n++], release + 7, HASH_HEX_LEN + 1);
	for (size_t i = 0; i < m->n_entries; i++)
		if (m->entries[i].type == MANIFEST_FILE)
			memcpy(d[n++], m->entries[i].digest, HASH_HEX_LEN + 1);
	qsort(d, n, sizeof(*d), cmp_hex);
	for (size_t i = 0; i < n; i++)
		if (u == 0 || memcmp(d[u - 1], d[i], HASH_HEX_LEN))
			memmove(d[u++], d[i], sizeof(*d));
	*out = d;
	*out_n = u;
	return 0;
}

static int ask_missing(const char *host, char (*d)[HASH_HEX_LEN + 1], size_t n, struct strv *miss,
		       struct err *e)
{
	for (size_t off = 0; off < n; off += PUSH_BATCH) {
		json_t *arr = json_array(), *ans = NULL, *v;
		size_t i;
		for (i = off; i < n && i < off + PUSH_BATCH; i++)
			json_array_append_new(arr, json_string(d[i]));
		int r = hosts_call(host, "POST", "/v1/objects/missing",
				   json_pack("{s:o}", "digests", arr), NULL, 0, CTL_AGENT_CALL_MS,
				   &ans, e);
		if (r < 0)
			return r;
		json_array_foreach(json_object_get(ans, "missing"), i, v)
		{
			const char *hex = json_string_value(v);
			if (hex && strlen(hex) == HASH_HEX_LEN)
				strv_push(miss, hex);
		}
		json_decref(ans);
	}
	return 0;
}

/* An object bigger than one part goes in AGENT_PART_BYTES pieces, read from the store file
 * as they are sent (memory stays at one part); the agent hashes the whole object when the last
 * part arrives, so a store file that went bad here is refused there (422). */
static int send_parts(const struct exec_job *j, const char *host, const char *hex,
		      const char *src, int64_t size, struct err *e)
{
	char path[HASH_HEX_LEN + 96], *chunk;
	int fd = open(src, O_RDONLY | O_CLOEXEC), r = 0;

	if (fd < 0)
		return err_set(e, errno, "cannot open object %.12s…: %s", hex, strerror(errno));
	if (!(chunk = malloc(AGENT_PART_BYTES))) {
		close(fd);
		return err_set(e, ENOMEM, "out of memory");
	}
	for (int64_t off = 0; off < size && r == 0;) {
		size_t want = size - off < AGENT_PART_BYTES ? (size_t)(size - off) : AGENT_PART_BYTES;
		if (atomic_load(j->abort)) {
			r = err_set(e, ECANCELED, "stopped while sending objects to %s", host);
			break;
		}
		if ((r = fs_pread_all(fd, chunk, want, off)) < 0) {
			r = err_set(e, -r, "cannot read object %.12s…: %s", hex, strerror(-r));
			break;
		}
		snprintf(path, sizeof(path), "/v1/objects/%s?offset=%lld&size=%lld", hex,
			 (long long)off, (long long)size);
		int64_t t = CTL_AGENT_CALL_MS + (int64_t)(want / (1024 * 1024)) * 1000;
		if ((r = hosts_call(host, "PUT", path, NULL, chunk, want, t, NULL, e)) < 0)
			err_prefix(e, "sending object %.12s (bytes %lld-%lld of %lld) to %s", hex,
				   (long long)off, (long long)(off + (int64_t)want),
				   (long long)size, host);
		off += (int64_t)want;
	}
	free(chunk);
	close(fd);
	return r;
}

int hosts_push_release(const struct exec_job *j, const char *host, struct buf *detail,
		       struct err *e)
{
	struct objstore *os = NULL;
	struct manifest *m = NULL;
	char(*d)[HASH_HEX_LEN + 1] = NULL;
	size_t n = 0;
	struct strv miss;
	struct buf obj;
	int64_t bytes = 0, t0 = time_mono_ns();
	json_t *ver = NULL;
	char path[128];
	int r;

	strv_init(&miss);
	buf_init(&obj, AGENT_PART_BYTES + 1);
	if ((r = objstore_open(j->state_dir, &os, e)) < 0 ||
	    (r = release_load(os, j->release, &m, e)) < 0)
		goto out;
	if ((r = collect(m, j->release, &d, &n)) < 0) {
		err_set(e, -r, "out of memory");
		goto out;
	}
	if ((r = ask_missing(host, d, n, &miss, e)) < 0)
		goto out;
	for (size_t i = 0; i < miss.n; i++) {
		if (atomic_load(j->abort)) {
			r = err_set(e, ECANCELED, "stopped while sending objects to %s", host);
			goto out;
		}
		char *op = objstore_path(os, miss.v[i]);
		struct stat st;
		bool big = stat(op, &st) == 0 && st.st_size > AGENT_PART_BYTES;
		if (big) {
			r = send_parts(j, host, miss.v[i], op, st.st_size, e);
			free(op);
			if (r < 0)
				goto out;
			bytes += st.st_size;
			continue;
		}
		free(op);
		buf_reset(&obj);
		if ((r = objstore_read(os, miss.v[i], &obj, e)) < 0)
			goto out;
		snprintf(path, sizeof(path), "/v1/objects/%s", miss.v[i]);
		/* 20 s, plus 1 s per MiB for the way through ssh */
		int64_t t = CTL_AGENT_CALL_MS + (int64_t)(obj.len / (1024 * 1024)) * 1000;
		if ((r = hosts_call(host, "PUT", path, NULL, obj.data ? obj.data : "", obj.len, t,
				    NULL, e)) < 0) {
			err_prefix(e, "sending object %.12s to %s", miss.v[i], host);
			goto out;
		}
		bytes += (int64_t)obj.len;
	}
	snprintf(path, sizeof(path), "/v1/releases/%s/verify", j->release);
	if ((r = hosts_call(host, "POST", path, json_object(), NULL, 0, 4 * CTL_AGENT_CALL_MS, &ver,
			    e)) < 0)
		goto out;
	buf_addf(
	    detail,
	    "{\"host\":\"%s\",\"objects\":%zu,\"missing\":%zu,\"pushed\":%zu,"
	    "\"pushed_bytes\":%lld,\"verified\":true,\"files\":%lld,\"bytes\":%lld,\"ms\":%lld}",
	    host, n, miss.n, miss.n, (long long)bytes,
	    (long long)json_integer_value(json_object_get(ver, "files")),
	    (long long)json_integer_value(json_object_get(ver, "bytes")),
	    (long long)((time_mono_ns() - t0) / 1000000));
	log_info("controller", "hosts: release %.19s on %s: %zu of %zu objects sent (%lld bytes)",
		 j->release, host, miss.n, n, (long long)bytes);
out:
	json_decref(ver);
	free(d);
	strv_done(&miss);
	buf_done(&obj);
	manifest_free(m);
	objstore_free(os);
	return r;
}
