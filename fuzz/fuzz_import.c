/* fuzz_import: feeds bytes to release_import_archive as an archive, against one temporary state
 * directory per process (removed at exit). Invariants checked beyond "no crash, no leak":
 * whatever the outcome, no staged temp file is left behind, and a success names a release
 * whose objects all verify. */
#include "release/release.h"
#include "store/store.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *state_dir;	    /* owned */
static char *tmp_dir;	    /* owned: <state>/tmp */
static struct objstore *os; /* owned */
static struct store *st;    /* owned */

static void cleanup(void)
{
	store_close(st);
	objstore_free(os);
	if (state_dir)
		fs_rm_rf(state_dir);
	free(state_dir);
	free(tmp_dir);
}

static void init_once(void)
{
	const char *t = getenv("TMPDIR");
	struct err e;

	if (os)
		return;
	state_dir = fs_mkdtemp(t && *t ? t : "/tmp", &e);
	if (!state_dir || objstore_open(state_dir, &os, &e) < 0 ||
	    store_open_sqlite(state_dir, &st, &e) < 0) {
		fprintf(stderr, "fuzz_import: cannot set up a state directory: %s\n", e.msg);
		abort();
	}
	tmp_dir = fs_join(state_dir, "tmp");
	atexit(cleanup);
}

static bool dir_empty(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	bool empty = true;
	if (!d)
		return true;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			empty = false;
	closedir(d);
	return empty;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct release_import_result res;
	struct err e;
	int fd, r;

	init_once();
	fd = memfd_create("fuzz-import", MFD_CLOEXEC);
	if (fd < 0 || fs_write_all(fd, data, size) < 0 || lseek(fd, 0, SEEK_SET) != 0)
		abort();
	r = release_import_archive(os, st, fd, &res, &e);
	close(fd);
	if (!dir_empty(tmp_dir)) {
		fprintf(stderr, "fuzz_import: a temp file was left in %s (r=%d)\n", tmp_dir, r);
		abort();
	}
	if (r == 0 && release_verify(os, res.id, NULL, NULL, &e) < 0) {
		fprintf(stderr, "fuzz_import: imported %s does not verify: %s\n", res.id, e.msg);
		abort();
	}
	return 0;
}
