/* cli transfer: `cairn export REF` and `cairn import FILE` — moving a release between machines
 * as a tar.zst archive (docs/archive.md). Parsing options, choosing where bytes go and telling
 * the person what happened live here; the archive itself is release/export.c and import.c. */
#include "cli/cli.h"

#include "release/release.h"
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int run_export(int argc, char **argv);
static int run_import(int argc, char **argv);

const struct cli_command cli_cmd_export = {
    .name = "export",
    .run = run_export,
    .summary = "write a release as a tar.zst archive, to move it to another machine",
    .help = "NAME\n"
	    "    cairn export - write a release as a tar.zst archive\n"
	    "\n"
	    "SYNOPSIS\n"
	    "    cairn export REF [-o FILE] [--json] [--state DIR]\n"
	    "\n"
	    "DESCRIPTION\n"
	    "    Writes the release REF (a release id, a unique prefix of one, or a tag) as a\n"
	    "    zstd-compressed tar archive: first its manifest (whose SHA-256 is the release\n"
	    "    id), then its tag and creation time, then every file, directory and symlink\n"
	    "    under files/. The output is deterministic: exporting the same release twice\n"
	    "    gives the same bytes. Every file is checked against its digest before it is\n"
	    "    written; a missing or corrupt object fails the export and names the file, so\n"
	    "    a corrupt release never leaves the machine. 'cairn import' reads the archive\n"
	    "    on the other side. The format is described in docs/archive.md.\n"
	    "\n"
	    "    Without -o the archive goes to standard output, which must not be a terminal.\n"
	    "\n"
	    "OPTIONS\n"
	    "    -o, --output FILE  write to FILE (atomically: a failed export leaves no FILE);\n"
	    "                       '-' is standard output\n"
	    "    --json             print a JSON summary on standard output (needs -o FILE)\n"
	    "    --state DIR        state directory (default: CAIRN_STATE, then\n"
	    "                       $XDG_STATE_HOME/cairn)\n"
	    "    -h, --help         show this page\n"
	    "\n"
	    "EXIT STATUS\n"
	    "    0  the archive was written\n"
	    "    1  one of the release's objects is missing or corrupt, or the archive could\n"
	    "       not be written\n"
	    "    2  usage error, or REF matches no release or several\n"
	    "\n"
	    "EXAMPLES\n"
	    "    cairn export v1 -o urlshort-v1.tar.zst\n"
	    "    cairn export sha256:3f2a9c1b0d4e | ssh web2 cairn import -\n",
};

const struct cli_command cli_cmd_import = {
    .name = "import",
    .run = run_import,
    .summary = "store a release from an archive written by 'cairn export'",
    .help = "NAME\n"
	    "    cairn import - store a release from a tar.zst archive\n"
	    "\n"
	    "SYNOPSIS\n"
	    "    cairn import FILE|- [--json] [--state DIR]\n"
	    "    cairn import FILE|- --addr HOST:PORT [--token-file FILE] [--json]\n"
	    "\n"
	    "DESCRIPTION\n"
	    "    Reads an archive written by 'cairn export' (from FILE, or standard input for\n"
	    "    '-') and stores the release it holds, with the same id. Archives are\n"
	    "    outside input and are checked entry by entry against the manifest they\n"
	    "    carry: absolute paths, '..' components, entries outside files/, entries not\n"
	    "    in the manifest or missing from the archive, duplicates, hard links, device\n"
	    "    files, fifos and sockets, symlinks that leave the release, and any file whose\n"
	    "    type, mode, size or SHA-256 disagrees with the manifest are refused, as are\n"
	    "    truncated or corrupt archives and archives that expand beyond what the\n"
	    "    manifest accounts for. A refused archive changes nothing: no object and no\n"
	    "    release is recorded. Importing a release that is already stored is harmless.\n"
	    "\n"
	    "    The archive's tag is kept unless it already names another release of the\n"
	    "    app here: then the release is imported untagged, with a warning.\n"
	    "\n"
	    "    With a remote controller (--addr or CAIRN_ADDR) the archive is imported into\n"
	    "    the local build cache (as for 'cairn build') and then uploaded: only the\n"
	    "    objects the controller lacks are sent, and the release is registered there.\n"
	    "\n"
	    "OPTIONS\n"
	    "    --json             print the result as JSON\n"
	    "    --state DIR        state directory (default: CAIRN_STATE, then\n"
	    "                       $XDG_STATE_HOME/cairn); with --addr: the build cache\n"
	    "    --addr HOST:PORT   a remote controller (default $CAIRN_ADDR): upload to it\n"
	    "    --token-file FILE  its bearer token (default $CAIRN_TOKEN_FILE)\n"
	    "    -h, --help         show this page\n"
	    "\n"
	    "EXIT STATUS\n"
	    "    0  the release is stored\n"
	    "    1  the archive could not be read or stored (I/O, disk full), or the\n"
	    "       controller refused the upload or is unreachable\n"
	    "    2  usage error, or the archive was refused (the message names the entry)\n"
	    "\n"
	    "EXAMPLES\n"
	    "    cairn import urlshort-v1.tar.zst\n"
	    "    ssh build1 cairn export v1 | cairn import -\n",
};

/* ---- export -------------------------------------------------------------------------- */

/* Writes the archive to a temp file beside `path` and renames it into place on success. */
static int export_to_file(struct objstore *os, const char *id, const struct release_meta *meta,
			  const char *path, int64_t *out_size, struct err *e)
{
	char *copy = xstrdup(path);
	char *tmp = xasprintf("%s/.cairn-export-XXXXXX", dirname(copy));
	struct stat st;
	int fd = mkostemp(tmp, O_CLOEXEC), r;

	free(copy);
	if (fd < 0) {
		r = err_set(e, errno, "cannot create a file beside %s: %s", path, strerror(errno));
		free(tmp);
		return r;
	}
	r = release_export_meta(os, id, meta, fd, e);
	if (r == 0 && (fchmod(fd, 0644) < 0 || fsync(fd) < 0 || fstat(fd, &st) < 0))
		r = err_set(e, errno, "cannot write %s: %s", path, strerror(errno));
	if (close(fd) < 0 && r == 0)
		r = err_set(e, errno, "cannot write %s: %s", path, strerror(errno));
	if (r == 0 && rename(tmp, path) < 0)
		r = err_set(e, errno, "cannot create %s: %s", path, strerror(errno));
	if (r < 0)
		unlink(tmp);
	else
		*out_size = st.st_size;
	free(tmp);
	return r;
}

static int run_export(int argc, char **argv)
{
	static const struct option opts[] = {
	    CLI_COMMON_OPTS, {"output", required_argument, NULL, 'o'}, {NULL, 0, NULL, 0}};
	struct cli_ctx ctx = {.cmd = "export"};
	const char *output = NULL;
	struct objstore *os = NULL;
	struct store *st = NULL;
	struct store_release rel;
	struct release_meta meta;
	char id[HASH_ID_LEN + 1];
	int64_t size = 0;
	struct err e;
	int c, r, rc;

	while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT "o:", opts, NULL)) != -1) {
		if (c == 'o') {
			output = optarg;
			continue;
		}
		if ((rc = cli_common_opt(&ctx, &cli_cmd_export, c, optarg)) >= 100)
			return rc - 100;
		if (rc == 0)
			return cli_usage(&cli_cmd_export, "unknown option");
	}
	if (optind != argc - 1)
		return cli_usage(&cli_cmd_export,
				 "give exactly one release (an id, a prefix or a tag)");
	if (output && !strcmp(output, "-"))
		output = NULL;
	if (!output && ctx.json)
		return cli_usage(&cli_cmd_export,
				 "--json prints a summary on standard output, so the "
				 "archive needs -o FILE");
	if (!output && isatty(STDOUT_FILENO))
		return cli_usage(&cli_cmd_export,
				 "refusing to write a binary archive to a terminal; "
				 "use -o FILE or redirect standard output");
	if ((r = cli_open_state_existing(&ctx, &os, &st, &e)) < 0)
		return cli_fail(&ctx, &e);
	if ((r = store_release_resolve(st, NULL, argv[optind], id, &e)) < 0 ||
	    (r = store_release_get(st, id, &rel, &e)) < 0)
		goto fail;
	meta = (struct release_meta){.tag = rel.tag, .created_at = rel.created_at};
	if (output)
		r = export_to_file(os, id, &meta, output, &size, &e);
	else
		r = release_export_meta(os, id, &meta, STDOUT_FILENO, &e);
	if (r < 0)
		goto fail;
	if (ctx.json) {
		json_t *o = json_pack("{s:s,s:s,s:s?,s:I,s:I,s:s,s:I}", "id", id, "app", rel.app,
				      "tag", rel.tag[0] ? rel.tag : NULL, "files",
				      (json_int_t)rel.n_files, "bytes", (json_int_t)rel.bytes,
				      "output", output, "archive_bytes", (json_int_t)size);
		json_dumpf(o, stdout, JSON_COMPACT);
		fputc('\n', stdout);
		json_decref(o);
	} else if (output) {
		printf("exported %s (%s, %lld files) to %s\n", id, rel.app, (long long)rel.n_files,
		       output);
	}
	store_close(st);
	objstore_free(os);
	return 0;
fail:
	store_close(st);
	objstore_free(os);
	return cli_fail(&ctx, &e);
}

/* ---- import -------------------------------------------------------------------------- */

static int run_import(int argc, char **argv)
{
	static const struct option opts[] = {CLI_COMMON_OPTS,
					     {"addr", required_argument, NULL, 'A'},
					     {"token-file", required_argument, NULL, 'T'},
					     {NULL, 0, NULL, 0}};
	struct cli_ctx ctx = {.cmd = "import"};
	struct cli_api_opts ao = {0};
	struct cli_api api = {0};
	struct cli_upload_result up = {0};
	struct release_import_result res;
	struct objstore *os = NULL;
	struct store *st = NULL;
	const char *path, *unused_app = NULL;
	char *cache = NULL;
	bool remote;
	struct err e;
	int c, fd, r, rc;

	while ((c = getopt_long(argc, argv, CLI_COMMON_SHORT, opts, NULL)) != -1) {
		if ((rc = cli_common_opt(&ctx, &cli_cmd_import, c, optarg)) >= 100)
			return rc - 100;
		if (rc == 0 && !cli_api_opt(&ao, &unused_app, c, optarg))
			return cli_usage(&cli_cmd_import, "unknown option");
	}
	if (optind != argc - 1)
		return cli_usage(&cli_cmd_import,
				 "give exactly one archive file (or '-' for standard "
				 "input)");
	path = argv[optind];
	if (!strcmp(path, "-")) {
		if (isatty(STDIN_FILENO))
			return cli_usage(&cli_cmd_import, "standard input is a terminal; pipe an "
							  "archive in or give a file");
		fd = STDIN_FILENO;
	} else if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		err_set(&e, CAIRN_EINPUT, "cannot open %s: %s", path, strerror(errno));
		return cli_fail(&ctx, &e);
	}
	if ((remote = cli_api_is_remote(&ao))) {
		cache = cli_cache_dir(&ctx);
		ctx.state_flag = cache;
		r = cli_api_open(&ctx, &ao, &api, &e);
	} else {
		r = 0;
	}
	if (r == 0 && (r = cli_open_state(&ctx, &os, &st, &e)) == 0)
		r = release_import_archive(os, st, fd, &res, &e);
	if (fd != STDIN_FILENO)
		close(fd);
	if (r == 0 && remote) {
		/* the archive's tag, whatever the cache's own database made of it */
		const char *tag = res.tag[0] ? res.tag : res.dropped_tag;
		if ((r = cli_upload_release(&api, &ctx, os, res.id, tag, true, &up, &e)) == 0) {
			memcpy(res.tag, up.tag, sizeof(res.tag));
			memcpy(res.dropped_tag, up.dropped_tag, sizeof(res.dropped_tag));
			res.existed = up.existed;
		}
	}
	store_close(st);
	objstore_free(os);
	free(cache);
	if (r < 0) {
		cli_api_done(&api);
		if (e.code == CAIRN_EINPUT && strcmp(path, "-") != 0)
			err_prefix(&e, "%s", path);
		return cli_fail(&ctx, &e);
	}
	if (remote && !ctx.json)
		fprintf(stderr, "uploaded %zu objects (%.1f MiB) to %s, skipped %zu already there\n",
			up.uploaded, (double)up.uploaded_bytes / 1048576.0, cli_api_where(&api),
			up.skipped);
	if (ctx.json) {
		json_t *w = json_array();
		if (res.dropped_tag[0])
			json_array_append_new(
			    w, json_pack("{s:s,s:s}", "code", "tag_taken", "tag", res.dropped_tag));
		json_t *o =
		    json_pack("{s:s,s:s,s:s?,s:I,s:I,s:I,s:I,s:b,s:o}", "id", res.id, "app", res.app,
			      "tag", res.tag[0] ? res.tag : NULL, "files", (json_int_t)res.n_files,
			      "bytes", (json_int_t)res.bytes, "new_objects",
			      (json_int_t)res.n_new_objects, "repaired_objects",
			      (json_int_t)res.n_repaired, "existed", res.existed, "warnings", w);
		if (o && remote)
			json_object_set_new(
			    o, "upload",
			    json_pack("{s:s,s:I,s:I,s:I,s:I,s:I}", "to", cli_api_where(&api), "objects",
				      (json_int_t)up.objects, "uploaded", (json_int_t)up.uploaded,
				      "uploaded_bytes", (json_int_t)up.uploaded_bytes, "skipped",
				      (json_int_t)up.skipped, "skipped_bytes",
				      (json_int_t)up.skipped_bytes));
		cli_api_done(&api);
		json_dumpf(o, stdout, JSON_COMPACT);
		fputc('\n', stdout);
		json_decref(o);
		return 0;
	}
	if (res.dropped_tag[0])
		fprintf(stderr,
			"cairn import: warning: tag '%s' already names another release of %s here; "
			"imported untagged\n",
			res.dropped_tag, res.app);
	printf("imported %s (%s, %zu files%s%s)%s", res.id, res.app, res.n_files,
	       res.tag[0] ? ", tag " : "", res.tag,
	       res.existed && !res.n_repaired && !res.tag_added ? " — already stored, nothing changed"
	       : res.existed && res.tag_added ? " — already stored; tag added"
					      : "");
	if (res.n_repaired)
		printf(" — repaired %zu corrupt object%s", res.n_repaired,
		       res.n_repaired == 1 ? "" : "s");
	putchar('\n');
	cli_api_done(&api);
	return 0;
}
