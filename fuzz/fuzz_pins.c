/* fuzz_pins: the pins readers on arbitrary bytes. The first byte picks the manifest kind
 * (requirements, package.json, pyproject, Pipfile, Gemfile, go.mod, Cargo.toml, Dockerfile,
 * shell script); the rest is the file. Must never crash, leak or read out of bounds. */
#include "release/release.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const names[] = {
	"requirements.txt", "app/package.json", "pyproject.toml", "Pipfile", "Gemfile",
	"go.mod",           "Cargo.toml",       "Dockerfile",     "setup.sh",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pin_report r = { 0 };
	if (size < 1)
		return 0;
	const char *name = names[data[0] % (sizeof(names) / sizeof(names[0]))];
	/* an exact-size copy, so reading one byte past the input is caught */
	char *copy = malloc(size - 1 ? size - 1 : 1);
	memcpy(copy, data + 1, size - 1);
	pins_scan_text(name, copy, size - 1, &r);
	for (size_t i = 0; i < r.n; i++)
		if (r.v[i].line < 1 || r.v[i].col < 1 || !r.v[i].spec || !r.v[i].fix)
			abort();
	pin_report_done(&r);
	free(copy);
	return 0;
}
