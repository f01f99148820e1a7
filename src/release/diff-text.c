/* diff-text: renders the JSON result of release_diff for a terminal or a log: summary first
 * (dependencies, run config, file list), then the line diffs. */
#include "release/release-internal.h"

#include <stdlib.h>
#include <string.h>

#define C_RED "\033[31m"
#define C_GREEN "\033[32m"
#define C_CYAN "\033[36m"
#define C_BOLD "\033[1m"
#define C_OFF "\033[0m"

static void add_versions(struct buf *out, json_t *arr)
{
	size_t i;
	json_t *v;
	if (!json_array_size(arr)) {
		buf_adds(out, "(none)");
		return;
	}
	json_array_foreach(arr, i, v) {
		if (i)
			buf_adds(out, ", ");
		buf_adds(out, json_string_value(v));
	}
}

static void add_value(struct buf *out, json_t *v)
{
	if (!v || json_is_null(v)) {
		buf_adds(out, "(unset)");
	} else if (json_is_string(v)) {
		buf_adds(out, json_string_value(v));
	} else {
		char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		buf_adds(out, s ? s : "?");
		free(s);
	}
}

static void add_colored_diff(struct buf *out, const char *d, bool color)
{
	if (!color) {
		buf_adds(out, d);
		return;
	}
	for (const char *l = d; *l;) {
		const char *nl = strchr(l, '\n');
		size_t n = nl ? (size_t)(nl - l) : strlen(l);
		const char *c = *l == '+' ? C_GREEN : *l == '-' ? C_RED : *l == '@' ? C_CYAN : NULL;
		if (c)
			buf_adds(out, c);
		buf_add(out, l, n);
		if (c)
			buf_adds(out, C_OFF);
		buf_addc(out, '\n');
		l += n + (nl ? 1 : 0);
	}
}

int diff_render_text(json_t *root, bool color, struct buf *out)
{
	json_t *files = json_object_get(root, "files"), *deps = json_object_get(root, "deps");
	json_t *cfg = json_object_get(root, "config"), *v;
	size_t i, added = 0, removed = 0, changed = 0, renamed = 0;

	buf_addf(out, "%sdiff %s → %s%s\n", color ? C_BOLD : "",
		 json_string_value(json_object_get(root, "a")),
		 json_string_value(json_object_get(root, "b")), color ? C_OFF : "");
	if (!json_is_true(json_object_get(root, "differs")))
		return buf_adds(out, "no differences\n");
	if (json_array_size(deps)) {
		buf_adds(out, "\ndependencies:\n");
		json_array_foreach(deps, i, v) {
			buf_addf(out, "  %s %s ", json_string_value(json_object_get(v, "ecosystem")),
				 json_string_value(json_object_get(v, "name")));
			add_versions(out, json_object_get(v, "old"));
			buf_adds(out, " → ");
			add_versions(out, json_object_get(v, "new"));
			buf_addc(out, '\n');
		}
	}
	if (json_array_size(cfg)) {
		buf_adds(out, "\nrun config:\n");
		json_array_foreach(cfg, i, v) {
			buf_addf(out, "  %s: ", json_string_value(json_object_get(v, "key")));
			add_value(out, json_object_get(v, "old"));
			buf_adds(out, " → ");
			add_value(out, json_object_get(v, "new"));
			buf_addc(out, '\n');
		}
	}
	json_array_foreach(files, i, v) {
		const char *st = json_string_value(json_object_get(v, "status"));
		if (!strcmp(st, "added"))
			added++;
		else if (!strcmp(st, "removed"))
			removed++;
		else if (!strcmp(st, "renamed"))
			renamed++;
		else
			changed++;
	}
	if (json_array_size(files)) {
		buf_addf(out, "\nfiles: %zu added, %zu removed, %zu changed", added, removed, changed);
		if (renamed)
			buf_addf(out, ", %zu renamed", renamed);
		buf_addc(out, '\n');
		json_array_foreach(files, i, v) {
			const char *st = json_string_value(json_object_get(v, "status"));
			json_t *o = json_object_get(v, "old"), *n = json_object_get(v, "new");
			char mark = !strcmp(st, "added")     ? 'A'
				    : !strcmp(st, "removed") ? 'D'
				    : !strcmp(st, "renamed") ? 'R'
							     : 'M';
			if (mark == 'R')
				buf_addf(out, "  R %s → %s", json_string_value(json_object_get(v, "old_path")),
					 json_string_value(json_object_get(v, "path")));
			else
				buf_addf(out, "  %c %s", mark, json_string_value(json_object_get(v, "path")));
			if (!strcmp(st, "mode_changed") || (o && n && json_object_get(o, "mode") &&
							    json_object_get(n, "mode") &&
							    !json_equal(json_object_get(o, "mode"),
									json_object_get(n, "mode"))))
				buf_addf(out, " (mode %s → %s)", json_string_value(json_object_get(o, "mode")),
					 json_string_value(json_object_get(n, "mode")));
			if (!strcmp(st, "type_changed"))
				buf_addf(out, " (%s → %s)", json_string_value(json_object_get(o, "type")),
					 json_string_value(json_object_get(n, "type")));
			if (json_is_true(json_object_get(v, "binary")))
				buf_addf(out, " (binary, %lld → %lld bytes)",
					 (long long)json_integer_value(json_object_get(o, "size")),
					 (long long)json_integer_value(json_object_get(n, "size")));
			if (json_object_get(v, "note"))
				buf_addf(out, " (%s)", json_string_value(json_object_get(v, "note")));
			if ((o && json_object_get(o, "target")) || (n && json_object_get(n, "target")))
				buf_addf(out, " (link → %s)",
					 json_string_value(json_object_get(n ? n : o, "target")));
			buf_addc(out, '\n');
		}
	}
	json_array_foreach(files, i, v) {
		const char *d = json_string_value(json_object_get(v, "diff"));
		const char *path = json_string_value(json_object_get(v, "path"));
		const char *st = json_string_value(json_object_get(v, "status"));
		if (!d || !*d)
			continue;
		const char *old_path = json_string_value(json_object_get(v, "old_path"));
		buf_addf(out, "\n%s--- %s%s\n+++ %s%s%s\n", color ? C_BOLD : "",
			 !strcmp(st, "added") ? "/dev/null" : "a/",
			 !strcmp(st, "added") ? "" : old_path ? old_path : path,
			 !strcmp(st, "removed") ? "/dev/null" : "b/", !strcmp(st, "removed") ? "" : path,
			 color ? C_OFF : "");
		add_colored_diff(out, d, color);
	}
	return 0;
}
