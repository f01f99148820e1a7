/* config faults: the faults: section of cairn.yml — where `cairn serve` answers the
 * Toxiproxy-compatible API, and standalone proxies with their toxics. Toxic types and attribute
 * names are the proxy engine's (src/proxy), so the file can never declare what the engine
 * cannot run; every error is FILE:LINE:COL with the key path. */
#include "config/config-internal.h"

#include "proxy/proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static bool name_char(char c, bool first)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (!first && strchr("_.-", c));
}

/* A proxy or toxic name: it ends up in API paths (/proxies/NAME/toxics/NAME). */
static bool valid_fault_name(const char *s)
{
	size_t i;
	for (i = 0; s[i]; i++)
		if (!name_char(s[i], i == 0))
			return false;
	return i > 0 && i <= 63;
}

static int name_err(struct cfg_parse *p, const struct cnode *n, const char *path)
{
	char q[CONFIG__QUOTE_BUF];
	return config__err(p, n,
			   "%s: %s is not a valid name: use letters, digits, '_', '.' and '-', "
			   "starting with a letter or digit, at most 63 characters (e.g. redis)",
			   path, config__quote(n->text, q));
}

/* HOST:PORT with an IPv4 address, [IPv6] or a host name; port min_port..65535. */
static int parse_addr(struct cfg_parse *p, const struct cnode *n, const char *path, int min_port,
		      char **out)
{
	char q[CONFIG__QUOTE_BUF], host[256];
	unsigned char bin[16];
	const char *s, *colon, *h;
	size_t hlen;
	long port;
	int r = config__str(p, n, path, out);

	if (r < 0)
		return r;
	s = *out;
	colon = strrchr(s, ':');
	h = s;
	if (!colon || colon == s || !config__is_uint(colon + 1) || strlen(colon + 1) > 5)
		goto bad;
	hlen = (size_t)(colon - s);
	if (s[0] == '[') {
		if (hlen < 3 || s[hlen - 1] != ']')
			goto bad;
		h = s + 1;
		hlen -= 2;
	}
	if (hlen >= sizeof(host))
		goto bad;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	if (h != s ? inet_pton(AF_INET6, host, bin) != 1
		   : inet_pton(AF_INET, host, bin) != 1 &&
			 (host[0] == '-' || host[0] == '.' ||
			  strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				       "0123456789.-") != hlen))
		goto bad;
	port = strtol(colon + 1, NULL, 10);
	if (port < min_port || port > 65535) {
		r = config__err(p, n, "%s: port %ld is out of range; it must be between %d and 65535",
				path, port, min_port);
		goto fail;
	}
	return 0;
bad:
	r = config__err(p, n,
			"%s: %s is not HOST:PORT; write e.g. \"127.0.0.1:%s\" (IPv6: \"[::1]:%s\")",
			path, config__quote(n->text, q), min_port ? "6379" : "26379",
			min_port ? "6379" : "26379");
fail:
	free(*out);
	*out = NULL;
	return r;
}

static int parse_attrs(struct cfg_parse *p, struct config_toxic *t, enum proxy_toxic_type type,
		       const struct cnode *n, const char *path)
{
	const char *const *names = proxy_toxic_attr_names(type);
	const struct cnode *v[4];
	char sub[CONFIG__PATH_MAX];
	int r;

	if (!names[0] && n->kind == CNODE_MAP && n->first)
		return config__err(p, n->first, "%s: a %s toxic has no attributes; remove %s", path,
				   t->type, n->first->text);
	r = config__fields(p, n, path, names, v);
	for (size_t i = 0; r == 0 && names[i]; i++) {
		int val;
		if (!v[i])
			continue;
		config__path(sub, path, names[i]);
		r = config__int(p, v[i], sub, 0, INT_MAX, &val);
		if (r == 0 && !(t->attrs[t->n_attrs].name = strdup(names[i])))
			r = err_set(p->e, ENOMEM, "out of memory");
		if (r == 0)
			t->attrs[t->n_attrs++].value = val;
	}
	return r;
}

static int parse_toxic(struct cfg_parse *p, struct config_toxic *t, const struct cnode *n,
		       const char *path)
{
	static const char *const keys[] = {"name", "type", "stream", "toxicity", "attributes",
					   NULL};
	static const char *const streams[] = {"downstream", "upstream", NULL};
	enum { NAME, TYPE, STREAM, TOXICITY, ATTRS };
	const char *types[TOXIC__COUNT + 1];
	const struct cnode *v[5];
	char sub[CONFIG__PATH_MAX];
	enum proxy_toxic_type type;
	int r, k, stream = 0;

	t->line = n->line;
	t->col = n->col;
	t->toxicity = 1.0;
	if (n->kind != CNODE_MAP)
		return config__type_err(p, n, path,
					"a mapping, e.g. {type: latency, attributes: {latency: 100}}");
	r = config__fields(p, n, path, keys, v);
	if (r < 0)
		return r;
	if (!v[TYPE])
		return config__missing(p, n, path, "type", "type: latency");
	for (k = 0; k < TOXIC__COUNT; k++)
		types[k] = proxy_toxic_type_name((enum proxy_toxic_type)k);
	types[TOXIC__COUNT] = NULL;
	config__path(sub, path, "type");
	if (v[TYPE]->kind == CNODE_SCALAR && !strcmp(v[TYPE]->text, "down"))
		return config__err(p, v[TYPE],
				   "%s: down is not a toxic; write enabled: false on the proxy "
				   "(its listener is closed, clients are refused)",
				   sub);
	r = config__enum(p, v[TYPE], sub, types, &k);
	if (r < 0)
		return r;
	type = (enum proxy_toxic_type)k;
	if ((r = config__set_str(p, &t->type, types[k])) < 0)
		return r;
	if (v[STREAM]) {
		config__path(sub, path, "stream");
		if ((r = config__enum(p, v[STREAM], sub, streams, &stream)) < 0)
			return r;
	}
	t->upstream = stream == 1;
	if (v[NAME]) {
		config__path(sub, path, "name");
		if ((r = config__str(p, v[NAME], sub, &t->name)) < 0)
			return r;
		if (!valid_fault_name(t->name))
			return name_err(p, v[NAME], sub);
	} else {
		char dflt[PROXY_TOXIC_NAME_MAX];
		snprintf(dflt, sizeof(dflt), "%s_%s", t->type, streams[stream]);
		if ((r = config__set_str(p, &t->name, dflt)) < 0)
			return r;
	}
	if (v[TOXICITY]) {
		config__path(sub, path, "toxicity");
		if ((r = config__number(p, v[TOXICITY], sub, &t->toxicity)) < 0)
			return r;
		if (t->toxicity > 1.0)
			return config__err(p, v[TOXICITY],
					   "%s: %s is out of range; it is a probability between 0 "
					   "and 1 (1: every connection)",
					   sub, v[TOXICITY]->text);
	}
	if (v[ATTRS]) {
		config__path(sub, path, "attributes");
		r = parse_attrs(p, t, type, v[ATTRS], sub);
	}
	return r;
}

static int parse_toxics(struct cfg_parse *p, struct config_fault_proxy *fp, const struct cnode *n,
			const char *path)
{
	char item[CONFIG__PATH_MAX], q[CONFIG__QUOTE_BUF];
	size_t i = 0, per[2] = {0, 0};
	int r = 0;

	if (config__is_null(n))
		return 0;
	if (n->kind != CNODE_SEQ)
		return config__type_err(p, n, path,
					"a list, e.g. [{type: latency, attributes: {latency: 100}}]");
	if (n->n == 0)
		return 0;
	fp->toxics = calloc(n->n, sizeof(*fp->toxics));
	if (!fp->toxics)
		return err_set(p->e, ENOMEM, "out of memory");
	for (const struct cnode *it = n->first; it && r == 0; it = it->next, i++) {
		struct config_toxic *t = &fp->toxics[i];
		config__path_index(item, path, i);
		fp->n_toxics = i + 1;
		r = parse_toxic(p, t, it, item);
		for (size_t j = 0; r == 0 && j < i; j++)
			if (!strcmp(fp->toxics[j].name, t->name))
				r = config__err(p, it,
						"%s: toxic name %s is used twice in proxy %s (first "
						"at line %d); give one a name: NAME",
						item, config__quote(t->name, q), fp->name,
						fp->toxics[j].line);
		if (r == 0 && ++per[t->upstream] > CONFIG_FAULT_TOXICS_MAX)
			r = config__err(p, it, "%s: more than %d toxics on one stream of a proxy",
					item, CONFIG_FAULT_TOXICS_MAX);
	}
	return r;
}

static int parse_proxy(struct cfg_parse *p, struct config_fault_proxy *fp, const struct cnode *n,
		       const char *path)
{
	static const char *const keys[] = {"name", "listen", "upstream", "enabled", "toxics", NULL};
	static const char *const example =
	    "{name: redis, listen: \"127.0.0.1:26379\", upstream: \"127.0.0.1:6379\"}";
	enum { NAME, LISTEN, UPSTREAM, ENABLED, TOXICS };
	const struct cnode *v[5];
	char sub[CONFIG__PATH_MAX];
	int r;

	fp->line = n->line;
	fp->col = n->col;
	fp->enabled = true;
	if (n->kind != CNODE_MAP)
		return config__type_err(p, n, path, "a mapping, e.g. " "{name: redis, listen: ..., "
						    "upstream: ...}");
	r = config__fields(p, n, path, keys, v);
	if (r < 0)
		return r;
	if (!v[NAME])
		return config__missing(p, n, path, "name", example);
	config__path(sub, path, "name");
	if ((r = config__str(p, v[NAME], sub, &fp->name)) < 0)
		return r;
	if (!valid_fault_name(fp->name))
		return name_err(p, v[NAME], sub);
	if (!v[LISTEN])
		return config__missing(p, n, path, "listen", "listen: \"127.0.0.1:26379\"");
	if (!v[UPSTREAM])
		return config__missing(p, n, path, "upstream", "upstream: \"127.0.0.1:6379\"");
	config__path(sub, path, "listen");
	if ((r = parse_addr(p, v[LISTEN], sub, 0, &fp->listen)) < 0)
		return r;
	config__path(sub, path, "upstream");
	if ((r = parse_addr(p, v[UPSTREAM], sub, 1, &fp->upstream)) < 0)
		return r;
	if (v[ENABLED]) {
		config__path(sub, path, "enabled");
		if ((r = config__bool(p, v[ENABLED], sub, &fp->enabled)) < 0)
			return r;
	}
	if (v[TOXICS]) {
		config__path(sub, path, "toxics");
		r = parse_toxics(p, fp, v[TOXICS], sub);
	}
	return r;
}

static bool port_zero(const char *addr)
{
	const char *c = strrchr(addr, ':');
	return c && !strcmp(c + 1, "0");
}

/* Two proxies (or a proxy and the API) on one fixed address: the second bind would fail. */
static int check_listen_unique(struct cfg_parse *p, struct config *c, const struct cnode *n,
			       size_t i, const struct cnode *listen_node)
{
	struct config_fault_proxy *fp = &c->faults.proxies[i];
	char q[CONFIG__QUOTE_BUF];
	const struct cnode *at = n;

	if (port_zero(fp->listen))
		return 0;
	for (const struct cnode *k = n->kind == CNODE_MAP ? n->first : NULL; k && k->next;
	     k = k->next->next)
		if (!strcmp(k->text, "listen"))
			at = k->next;
	for (size_t j = 0; j < i; j++)
		if (!strcmp(c->faults.proxies[j].listen, fp->listen))
			return config__err(p, at,
					   "faults.proxies[%zu].listen: %s is already the listen "
					   "address of proxy %s (line %d); give each its own port",
					   i, config__quote(fp->listen, q), c->faults.proxies[j].name,
					   c->faults.proxies[j].line);
	if (c->faults.listen && !strcmp(c->faults.listen, fp->listen))
		return config__err(p, at,
				   "faults.proxies[%zu].listen: %s is the address of the fault API "
				   "(faults.listen, line %d); give the proxy another port",
				   i, config__quote(fp->listen, q), listen_node->line);
	return 0;
}

int config__faults(struct cfg_parse *p, struct config *c, const struct cnode *n)
{
	static const char *const keys[] = {"listen", "proxies", NULL};
	char path[CONFIG__PATH_MAX], q[CONFIG__QUOTE_BUF];
	const struct cnode *v[2], *item;
	size_t i = 0;
	int r = config__fields(p, n, "faults", keys, v);

	if (r < 0)
		return r;
	if (v[0] && !config__is_null(v[0]) &&
	    (r = parse_addr(p, v[0], "faults.listen", 0, &c->faults.listen)) < 0)
		return r;
	if (!v[1] || config__is_null(v[1]))
		return 0;
	if (v[1]->kind != CNODE_SEQ)
		return config__type_err(p, v[1], "faults.proxies",
					"a list of proxies, e.g. [{name: redis, listen: "
					"\"127.0.0.1:26379\", upstream: \"127.0.0.1:6379\"}]");
	if (v[1]->n > CONFIG_FAULT_PROXIES_MAX)
		return config__err(p, v[1], "faults.proxies has %zu entries; at most %d are allowed",
				   v[1]->n, CONFIG_FAULT_PROXIES_MAX);
	if (v[1]->n == 0)
		return 0;
	c->faults.proxies = calloc(v[1]->n, sizeof(*c->faults.proxies));
	if (!c->faults.proxies)
		return err_set(p->e, ENOMEM, "out of memory");
	for (item = v[1]->first; item && r == 0; item = item->next, i++) {
		config__path_index(path, "faults.proxies", i);
		c->faults.n_proxies = i + 1;
		r = parse_proxy(p, &c->faults.proxies[i], item, path);
		for (size_t j = 0; r == 0 && j < i; j++)
			if (!strcmp(c->faults.proxies[j].name, c->faults.proxies[i].name))
				r = config__err(p, item,
						"%s: proxy name %s is used twice (first at line %d); "
						"names must be unique",
						path, config__quote(c->faults.proxies[i].name, q),
						c->faults.proxies[j].line);
		if (r == 0)
			r = check_listen_unique(p, c, item, i, v[0]);
	}
	return r;
}

void config__faults_free(struct config *c)
{
	free(c->faults.listen);
	for (size_t i = 0; c->faults.proxies && i < c->faults.n_proxies; i++) {
		struct config_fault_proxy *fp = &c->faults.proxies[i];
		free(fp->name);
		free(fp->listen);
		free(fp->upstream);
		for (size_t j = 0; fp->toxics && j < fp->n_toxics; j++) {
			free(fp->toxics[j].name);
			free(fp->toxics[j].type);
			for (size_t k = 0; k < fp->toxics[j].n_attrs; k++)
				free(fp->toxics[j].attrs[k].name);
		}
		free(fp->toxics);
	}
	free(c->faults.proxies);
}
