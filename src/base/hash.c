/* hash: SHA-256 (OpenSSL libcrypto) of memory, fds and files, as lowercase hex. */
#include "base/base.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct hasher {
	EVP_MD_CTX *ctx;
};

static void to_hex(const unsigned char *d, unsigned n, char *out)
{
	static const char hx[] = "0123456789abcdef";
	for (unsigned i = 0; i < n; i++) {
		out[2 * i] = hx[d[i] >> 4];
		out[2 * i + 1] = hx[d[i] & 15];
	}
	out[2 * n] = 0;
}

struct hasher *hasher_new(void)
{
	struct hasher *h = xmalloc(sizeof(*h));
	h->ctx = EVP_MD_CTX_new();
	if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
		fputs("cairn: error: OpenSSL SHA-256 unavailable\n", stderr);
		abort();
	}
	return h;
}

void hasher_update(struct hasher *h, const void *p, size_t n)
{
	EVP_DigestUpdate(h->ctx, p, n);
}

void hasher_final(struct hasher *h, char *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned n = 0;
	EVP_DigestFinal_ex(h->ctx, md, &n);
	to_hex(md, n, out);
	EVP_MD_CTX_free(h->ctx);
	free(h);
}

void hash_mem(const void *p, size_t n, char *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdn = 0;
	EVP_Digest(p, n, md, &mdn, EVP_sha256(), NULL);
	to_hex(md, mdn, out);
}

#define HASH_CHUNK (256 * 1024)

int64_t hash_fd(int fd, char *out)
{
	struct hasher *h = hasher_new();
	char *chunk = xmalloc(HASH_CHUNK);
	int64_t total = 0;

	for (;;) {
		ssize_t r = read(fd, chunk, HASH_CHUNK);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int saved = errno;
			char tmp[HASH_HEX_LEN + 1];
			hasher_final(h, tmp);
			free(chunk);
			return -saved;
		}
		if (r == 0)
			break;
		hasher_update(h, chunk, (size_t)r);
		total += r;
	}
	free(chunk);
	hasher_final(h, out);
	return total;
}

int hash_file(const char *path, char *out, struct err *e)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	int64_t r;
	if (fd < 0)
		return err_set(e, errno, "cannot open %s: %s", path, strerror(errno));
	r = hash_fd(fd, out);
	close(fd);
	if (r < 0)
		return err_set(e, (int)-r, "cannot read %s: %s", path, strerror((int)-r));
	return 0;
}

bool hash_is_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}
