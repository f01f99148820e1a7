/* fuzz_api_headers: the controller's header and path parsers (Idempotency-Key, Last-Event-ID,
 * Authorization, request paths) on arbitrary bytes: no crash, and what they accept is within
 * their documented bounds. */
#include "controller/controller.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), key[STORE_IDEM_KEY_MAX + 1];
	struct api_path p;
	struct err e;
	int64_t id;
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (api_parse_idem_key(s, key, &e) == 0) {
		size_t n = strlen(key);
		if (n == 0 || n > STORE_IDEM_KEY_MAX || strchr(key, ' ') || strchr(key, '"')) {
			fprintf(stderr, "fuzz_api_headers: bad key accepted\n");
			abort();
		}
	}
	if (api_parse_event_id(s, &id) == 0 && id < 0)
		abort();
	const char *tok = api_parse_bearer(s);
	if (tok && (tok < s || tok > s + size || !*tok))
		abort();
	api_match_path(s, &p);
	if (p.route != ROUTE_NONE && p.app[0] && !api_app_name_ok(p.app, strlen(p.app)))
		abort();
	if (p.route == ROUTE_JOB && p.job_id <= 0)
		abort();
	free(s);
	return 0;
}
