/* base/names: the one definition of what an app name and a release tag may be, and the
 * escaping of text from outside before it reaches a terminal. Every path that takes an app
 * name or a tag (cairn.yml, build, import, the controller's API, the agent) asks here, so the
 * rules and their messages cannot drift apart. Nothing here allocates. */
#include "base/base.h"

#include <errno.h>
#include <string.h>

bool name_app_ok(const char *s, size_t n)
{
	if (n == 0 || n > NAME_APP_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			  (i > 0 && (c == '_' || c == '.' || c == '-'));
		if (!ok)
			return false;
	}
	return true;
}

static bool is_hex_any_case(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
			return false;
	}
	return true;
}

bool name_is_id_like(const char *s, size_t n)
{
	if (n >= 7 && !strncmp(s, "sha256:", 7))
		return true;
	return n >= NAME_ID_PREFIX_MIN && n <= HASH_HEX_LEN && is_hex_any_case(s, n);
}

int name_tag_check(const char *s, size_t n, struct err *e)
{
	if (n == 0 || n > NAME_TAG_MAX)
		return err_set(e, CAIRN_EINPUT, "a tag has 1-%d characters", NAME_TAG_MAX);
	if (name_is_id_like(s, n))
		return err_set(e, CAIRN_EINPUT,
			       "a tag may not look like a release id or id prefix (%d or more hex "
			       "digits): it would stand for a release it is not; add a word (e.g. build-%.12s)",
			       NAME_ID_PREFIX_MIN, s[0] == 's' ? s + 7 : s);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x21 || c > 0x7e || c == '/' || c == ':')
			return err_set(e, CAIRN_EINPUT,
				       "a tag is printable ASCII without spaces, '/' or ':' (e.g. v1.2)");
	}
	return 0;
}

void name_fput_safe(const char *s, FILE *out)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			fprintf(out, "\\x%02x", *p);
		else
			fputc(*p, out);
	}
}

const char *name_safe(const char *s, char *out, size_t n)
{
	size_t o = 0;
	if (n == 0)
		return "";
	for (const unsigned char *p = (const unsigned char *)s; *p && o + 1 < n; p++) {
		if (*p < 0x20 || *p == 0x7f) {
			if (o + 5 > n)
				break;
			snprintf(out + o, n - o, "\\x%02x", *p);
			o += 4;
		} else {
			out[o++] = (char)*p;
		}
	}
	out[o] = 0;
	return out;
}
