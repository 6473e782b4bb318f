/* api-tls: the TLS identity of rprd's TLS listeners.
 *
 * A certificate and key given with --tls-cert/--tls-key are used as they
 * are; without them rprd makes a self-signed one on first start
 * ($STATE/tls/cert.pem, key.pem 0600) and keeps it, so that what an agent
 * pinned stays true across restarts. The fingerprint people pin is the
 * SHA-256 of the certificate's public key (SubjectPublicKeyInfo), written
 * "SHA256:BASE64" as OpenSSH writes host keys: it survives a renewed
 * certificate with the same key, and libcurl pins it as it is
 * (CURLOPT_PINNEDPUBLICKEY "sha256//BASE64"). */
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <string.h>
#include <sys/stat.h>

#include "api/api-private.h"

#define TLS_SELF_SIGNED_DAYS (10 * 365)

/* OpenSSL's first queued error, for a message; the queue is emptied. */
static const char *openssl_error(char buf[static 256]) {
        unsigned long e = ERR_get_error();

        ERR_clear_error();
        if (!e)
                return "unknown OpenSSL error";
        if (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
                return "the key does not belong to the certificate";
        ERR_error_string_n(e, buf, 256);
        return buf;
}

/* "SHA256:" + unpadded base64 of the SHA-256 of the public key's DER. */
static char *key_fingerprint(X509 *cert) {
        unsigned char *der = NULL, digest[32];
        unsigned char b64[64];
        int n = i2d_PUBKEY(X509_get0_pubkey(cert), &der);

        if (n <= 0)
                return NULL;
        SHA256(der, (size_t) n, digest);
        OPENSSL_free(der);
        n = EVP_EncodeBlock(b64, digest, sizeof digest);
        while (n > 0 && b64[n - 1] == '=')
                n--;
        return xasprintf("SHA256:%.*s", n, (const char *) b64);
}

static int add_san(X509 *cert) {
        X509V3_CTX v3;
        X509_EXTENSION *ext;

        X509V3_set_ctx(&v3, cert, cert, NULL, NULL, 0);
        ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1");
        if (!ext)
                return -EIO;
        X509_add_ext(cert, ext, -1);
        X509_EXTENSION_free(ext);
        return 0;
}

/* A P-256 key and a self-signed certificate for it, as PEM texts. */
static int make_self_signed(char **ret_cert, char **ret_key, char **ret_error) {
        EVP_PKEY *key = EVP_EC_gen("P-256");
        X509 *cert = X509_new();
        BIO *cb = BIO_new(BIO_s_mem()), *kb = BIO_new(BIO_s_mem());
        char *p;
        long n;
        int r = -EIO;

        if (!key || !cert || !cb || !kb)
                goto out;
        X509_set_version(cert, 2);
        ASN1_INTEGER_set(X509_get_serialNumber(cert), (long) (now_usec() / USEC_PER_SEC));
        X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
        X509_gmtime_adj(X509_getm_notAfter(cert), (long) TLS_SELF_SIGNED_DAYS * 24 * 3600);
        X509_set_pubkey(cert, key);
        X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC, (const unsigned char *) "rprd",
                                   -1, -1, 0);
        X509_set_issuer_name(cert, X509_get_subject_name(cert));
        if (add_san(cert) < 0 || X509_sign(cert, key, EVP_sha256()) <= 0)
                goto out;
        if (!PEM_write_bio_X509(cb, cert) || !PEM_write_bio_PrivateKey(kb, key, NULL, NULL, 0, NULL, NULL))
                goto out;
        n = BIO_get_mem_data(cb, &p);
        *ret_cert = xstrndup(p, (size_t) n);
        n = BIO_get_mem_data(kb, &p);
        *ret_key = xstrndup(p, (size_t) n);
        r = 0;
out:
        if (r < 0)
                *ret_error = xasprintf("cannot make a self-signed certificate: %s", openssl_error((char[256]){0}));
        BIO_free(cb);
        BIO_free_all(kb);
        X509_free(cert);
        EVP_PKEY_free(key);
        return r;
}

/* $STATE/tls/{cert,key}.pem, made when missing. The key is written
 * before the certificate: a crash between the two leaves no certificate,
 * and the next start makes both anew. */
static int ensure_self_signed(const char *state_dir, char **ret_cert, char **ret_key, char **ret_error) {
        _cleanup_free_ char *dir = xasprintf("%s/tls", state_dir);
        _cleanup_free_ char *cert = xasprintf("%s/cert.pem", dir), *key = xasprintf("%s/key.pem", dir);
        _cleanup_free_ char *cert_pem = NULL, *key_pem = NULL;
        struct stat st;
        int r;

        if (stat(cert, &st) == 0 && stat(key, &st) == 0)
                goto done;
        r = mkdir_p(dir, 0700);
        if (r < 0) {
                *ret_error = xasprintf("cannot create %s: %s", dir, strerror(-r));
                return r;
        }
        r = make_self_signed(&cert_pem, &key_pem, ret_error);
        if (r < 0)
                return r;
        r = write_file_atomic(key, key_pem, strlen(key_pem), 0600);
        if (r >= 0)
                r = write_file_atomic(cert, cert_pem, strlen(cert_pem), 0644);
        explicit_bzero(key_pem, strlen(key_pem));
        if (r < 0) {
                *ret_error = xasprintf("cannot write the TLS certificate to %s: %s", dir, strerror(-r));
                return r;
        }
done:
        *ret_cert = TAKE_PTR(cert);
        *ret_key = TAKE_PTR(key);
        return 0;
}

static int context_new(const char *cert, const char *key, SSL_CTX **ret, char **ret_fingerprint, char **ret_error) {
        SSL_CTX *c = SSL_CTX_new(TLS_server_method());

        if (!c) {
                *ret_error = xasprintf("cannot set up TLS: %s", openssl_error((char[256]){0}));
                return -ENOMEM;
        }
        SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
        /* An agent's held poll keeps its connection idle for 25 s: its read
         * and write buffers go back between requests (40 -> 24 KB each). */
        SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
        /* ChaCha20-Poly1305 first (TLS 1.3): the agents are often boards
         * without AES instructions (a Raspberry Pi), where it is the fast
         * one, and its state is 0.4 KB smaller a connection than AES-GCM's
         * (4 MB at 10,000 agents). AES-GCM stays for clients without it. */
        if (SSL_CTX_set_ciphersuites(c, "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256:"
                                        "TLS_AES_256_GCM_SHA384") != 1) {
                *ret_error = xasprintf("cannot set up TLS: %s", openssl_error((char[256]){0}));
                goto fail;
        }
        SSL_CTX_set_options(c, SSL_OP_CIPHER_SERVER_PREFERENCE);
        if (SSL_CTX_use_certificate_chain_file(c, cert) != 1) {
                *ret_error = xasprintf("cannot use the TLS certificate %s: %s", cert, openssl_error((char[256]){0}));
                goto fail;
        }
        if (SSL_CTX_use_PrivateKey_file(c, key, SSL_FILETYPE_PEM) != 1) {
                *ret_error = xasprintf("cannot use the TLS key %s: %s", key, openssl_error((char[256]){0}));
                goto fail;
        }
        if (SSL_CTX_check_private_key(c) != 1) {
                *ret_error = xasprintf("the TLS key %s does not belong to the certificate %s", key, cert);
                goto fail;
        }
        *ret_fingerprint = key_fingerprint(SSL_CTX_get0_certificate(c));
        if (!*ret_fingerprint) {
                *ret_error = xasprintf("cannot read the public key of %s", cert);
                goto fail;
        }
        /* h2 and http/1.1 by ALPN, as the plain listeners serve both. */
        h2o_ssl_register_alpn_protocols(c, h2o_alpn_protocols);
        *ret = c;
        return 0;
fail:
        ERR_clear_error();
        SSL_CTX_free(c);
        return -EINVAL;
}

int api_tls_init(ApiServer *a, const ApiOptions *o, char **ret_error) {
        _cleanup_free_ char *cert = NULL, *key = NULL;
        int r;

        if (o->tls_cert && o->tls_key) {
                cert = xstrdup(o->tls_cert);
                key = xstrdup(o->tls_key);
        } else {
                r = ensure_self_signed(a->state_dir, &cert, &key, ret_error);
                if (r < 0)
                        return r;
        }
        r = context_new(cert, key, &a->tls_accept_ctx.ssl_ctx, &a->tls_fingerprint, ret_error);
        if (r < 0)
                return r;
        a->tls_accept_ctx.ctx = &a->ctx;
        a->tls_accept_ctx.hosts = a->config.hosts;
        a->tls_cert_path = TAKE_PTR(cert);
        return 0;
}

void api_tls_done(ApiServer *a) {
        SSL_CTX_free(a->tls_accept_ctx.ssl_ctx);
        a->tls_accept_ctx.ssl_ctx = NULL;
        free(a->tls_fingerprint);
        free(a->tls_cert_path);
        a->tls_fingerprint = a->tls_cert_path = NULL;
}

const char *api_tls_fingerprint(ApiServer *a) {
        return a->tls_fingerprint;
}

const char *api_tls_cert_path(ApiServer *a) {
        return a->tls_cert_path;
}
