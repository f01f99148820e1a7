/* release-internal: helpers shared between the files of release/, never included from
 * outside the module. */
#ifndef CAIRN_RELEASE_INTERNAL_H
#define CAIRN_RELEASE_INTERNAL_H

#include "release/release.h"

/* "sha256:<hex>" or "<hex>" → pointer to the 64 hex digits inside id. */
int release_id_hex(const char *id, const char **out_hex, struct err *e);

#endif
