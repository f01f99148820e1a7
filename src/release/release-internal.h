/* release-internal: helpers shared between the files of release/, never included from
 * outside the module. */
#ifndef CAIRN_RELEASE_INTERNAL_H
#define CAIRN_RELEASE_INTERNAL_H

#include "release/release.h"

#include <locale.h>

/* "sha256:<hex>" or "<hex>" → pointer to the 64 hex digits inside id. */
int release_id_hex(const char *id, const char **out_hex, struct err *e);

/* Names inside a release archive (docs/archive.md). */
#define RELEASE_AR_MANIFEST "cairn-release/manifest.json"
#define RELEASE_AR_META "cairn-release/meta.json"
#define RELEASE_AR_DIR "cairn-release/"
#define RELEASE_AR_FILES "files/"
#define RELEASE_AR_META_MAX (64 * 1024)

/* libarchive converts names through the thread's locale; archive names are UTF-8, so export
 * and import switch this thread to C.UTF-8 while they run (the process locale is untouched). */
struct release__locale {
	locale_t old, utf8; /* utf8 owned; (locale_t)0 when unavailable */
};
void release__locale_utf8(struct release__locale *l);
void release__locale_restore(struct release__locale *l);

#endif
