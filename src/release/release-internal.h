/* release-internal: helpers shared between the files of release/, never included from
 * outside the module. */
#ifndef CAIRN_RELEASE_INTERNAL_H
#define CAIRN_RELEASE_INTERNAL_H

#include "release/release.h"

#endif
