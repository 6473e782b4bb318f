/* base-random: randomness, hashing and secret comparison.
 *
 * Tokens and uids come straight from getrandom(2); SHA-256 from OpenSSL,
 * which h2o and libssh2 already pull in. */
#include "base/base.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

int random_bytes(void *buf, size_t n) {
        unsigned char *p = buf;

        while (n > 0) {
                ssize_t r = getrandom(p, n, 0);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                p += r;
                n -= (size_t) r;
        }
        return 0;
}

int random_token(char *buf, size_t len) {
        static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        size_t i = 0;

        while (i < len) {
                unsigned char raw[64];
                int r = random_bytes(raw, sizeof raw);
                if (r < 0)
                        return r;
                /* Rejection sampling keeps every character equally likely. */
                for (size_t j = 0; j < sizeof raw && i < len; j++)
                        if (raw[j] < 248)
                                buf[i++] = alphabet[raw[j] % 62];
        }
        buf[len] = '\0';
        return 0;
}

int uuid_v4(char buf[static 37]) {
        unsigned char u[16];
        int r = random_bytes(u, sizeof u);
        if (r < 0)
                return r;

        u[6] = (u[6] & 0x0f) | 0x40;
        u[8] = (u[8] & 0x3f) | 0x80;
        snprintf(buf, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1],
                 u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
        return 0;
}

static void hex32(const unsigned char md[static 32], char out[static 65]) {
        static const char hex[] = "0123456789abcdef";

        for (unsigned i = 0; i < 32; i++) {
                out[2 * i] = hex[md[i] >> 4];
                out[2 * i + 1] = hex[md[i] & 15];
        }
        out[64] = '\0';
}

void sha256_hex(const void *data, size_t n, char out[static 65]) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned len = 0;

        if (EVP_Digest(data, n, md, &len, EVP_sha256(), NULL) != 1 || len != 32)
                abort();
        hex32(md, out);
}

void hmac_sha256_hex(const void *key, size_t key_len, const void *data, size_t n, char out[static 65]) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned len = 0;

        if (!HMAC(EVP_sha256(), key, (int) key_len, data, n, md, &len) || len != 32)
                abort();
        hex32(md, out);
        explicit_bzero(md, sizeof md);
}

bool memeq_consttime(const void *a, const void *b, size_t n) {
        const volatile unsigned char *x = a, *y = b;
        unsigned char diff = 0;

        for (size_t i = 0; i < n; i++)
                diff |= x[i] ^ y[i];
        return diff == 0;
}
