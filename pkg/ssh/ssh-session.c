/* ssh-session: one connection, verified and authenticated, on libssh2.
 *
 * Each step has its own timeout and its own failure, so that a Server's
 * condition can say exactly what went wrong: the name, the TCP connect, the
 * handshake, the host key, the key file, the authentication. The host key
 * is checked before any credential is offered. */
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "egress/egress.h"
#include "ssh/ssh-private.h"

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init_libssh2(void) {
        if (libssh2_init(0) != 0)
                abort();
}

static uint64_t or_default(uint64_t usec) {
        return usec ? usec : SSH_DEFAULT_TIMEOUT_USEC;
}

char *ssh_target_config(const SshTarget *t) {
        char key_hash[65] = "";

        /* The key itself is a secret: only its hash is kept. */
        if (t->key_data)
                sha256_hex(t->key_data, t->key_len, key_hash);
        return xasprintf("%s|%u|%s|%s|%s|%s|%s|%d", t->host ? t->host : "", t->port ? t->port : 22,
                         t->user ? t->user : "root", t->key_file ? t->key_file : "", key_hash,
                         t->host_key ? t->host_key : "", t->known_hosts_file ? t->known_hosts_file : "",
                         t->accept_new);
}

/* ---- TCP ------------------------------------------------------------------ */

/* Resolving, the allow-list (--allow-networks) and the connect itself are
 * egress_connect's; here its errors become the failure a condition names. */
static int tcp_connect(const SshTarget *t, int *ret_fd, SshResult *result) {
        char port[12], msg[sizeof result->message];

        snprintf(port, sizeof port, "%u", t->port ? t->port : 22);
        int r = egress_connect(t->host, port, or_default(t->connect_timeout_usec), ret_fd, msg, sizeof msg);
        switch (r) {
        case 0:
                return 0;
        case -EACCES:
                return ssh_fail(result, SSH_FAIL_NOT_ALLOWED, -r, "%s", msg);
        case -ENXIO:
                return ssh_fail(result, SSH_FAIL_NAME_RESOLUTION, -r, "%s", msg);
        case -ECONNREFUSED:
                return ssh_fail(result, SSH_FAIL_CONNECTION_REFUSED, -r,
                                "connection to %s port %s refused: is sshd running and listening there?",
                                t->host, port);
        case -ETIMEDOUT:
                return ssh_fail(result, SSH_FAIL_TIMEOUT, -r, "%s", msg);
        default:
                return ssh_fail(result, SSH_FAIL_NETWORK, -r, "%s", msg);
        }
}

/* ---- host key ----------------------------------------------------------------- */

static const char *key_type_name(int type) {
        switch (type) {
        case LIBSSH2_HOSTKEY_TYPE_RSA:
                return "ssh-rsa";
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_256:
                return "ecdsa-sha2-nistp256";
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_384:
                return "ecdsa-sha2-nistp384";
        case LIBSSH2_HOSTKEY_TYPE_ECDSA_521:
                return "ecdsa-sha2-nistp521";
        case LIBSSH2_HOSTKEY_TYPE_ED25519:
                return "ssh-ed25519";
        default:
                return "unknown";
        }
}

/* "TYPE SHA256:b64" of the session's host key, as ssh-keygen -lf prints. */
static int host_key_seen(SshSession *s, char ret[static 128]) {
        const unsigned char *hash =
                (const unsigned char *) libssh2_hostkey_hash(s->session, LIBSSH2_HOSTKEY_HASH_SHA256);
        size_t len;
        int type;
        unsigned char b64[64];

        if (!hash || !libssh2_session_hostkey(s->session, &len, &type))
                return -EIO;
        int n = EVP_EncodeBlock(b64, hash, 32);
        while (n > 0 && b64[n - 1] == '=')
                n--;
        snprintf(ret, 128, "%s SHA256:%.*s", key_type_name(type), n, (const char *) b64);
        return 0;
}

/* "SHA256:b64" of a key given as base64 (as known_hosts holds it). */
static void fingerprint_of_base64(const char *b64, char ret[static 64]) {
        size_t len = strlen(b64);
        _cleanup_free_ unsigned char *blob = xmalloc(len);
        unsigned char hash[32], out[48];
        int n = EVP_DecodeBlock(blob, (const unsigned char *) b64, (int) len);

        snprintf(ret, 64, "SHA256:?");
        if (n < 0)
                return;
        /* EVP_DecodeBlock counts the padding as data. */
        for (size_t i = len; i > 0 && b64[i - 1] == '='; i--)
                n--;
        if (!EVP_Digest(blob, (size_t) n, hash, NULL, EVP_sha256(), NULL))
                return;
        n = EVP_EncodeBlock(out, hash, 32);
        while (n > 0 && out[n - 1] == '=')
                n--;
        snprintf(ret, 64, "SHA256:%.*s", n, (const char *) out);
}

static int check_known_hosts(SshSession *s, const SshTarget *t, SshResult *result) {
        LIBSSH2_KNOWNHOSTS *kh = libssh2_knownhost_init(s->session);
        struct libssh2_knownhost *known = NULL;
        char known_fp[64] = "";
        size_t len;
        int type, r;
        const char *key = libssh2_session_hostkey(s->session, &len, &type);

        if (!kh || !key)
                return ssh_fail(result, SSH_FAIL_HANDSHAKE, EIO, "cannot read the host key of %s", t->host);
        if (libssh2_knownhost_readfile(kh, t->known_hosts_file, LIBSSH2_KNOWNHOST_FILE_OPENSSH) < 0) {
                libssh2_knownhost_free(kh);
                return ssh_fail(result, SSH_FAIL_HOST_KEY_UNKNOWN, ENOENT, "cannot read known hosts file %s",
                                t->known_hosts_file);
        }
        r = libssh2_knownhost_checkp(kh, t->host, (int) (t->port ? t->port : 22), key, len,
                                     LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW, &known);
        if (r == LIBSSH2_KNOWNHOST_CHECK_MISMATCH && known && known->key)
                fingerprint_of_base64(known->key, known_fp);
        libssh2_knownhost_free(kh);
        if (r == LIBSSH2_KNOWNHOST_CHECK_MATCH)
                return 0;
        if (r == LIBSSH2_KNOWNHOST_CHECK_MISMATCH)
                return ssh_fail(
                        result, SSH_FAIL_HOST_KEY_MISMATCH, EPERM,
                        "host key mismatch for %s: expected %s (from %s), got %s; refusing to connect (if "
                        "the host was reinstalled, update that file)",
                        t->host, *known_fp ? known_fp : "another key", t->known_hosts_file, s->host_key);
        if (t->accept_new) {
                result->host_key_new = true;
                return 0;
        }
        return ssh_fail(result, SSH_FAIL_HOST_KEY_UNKNOWN, EPERM,
                        "host key of %s (%s) is not in %s; add it there, pin it with spec.hostKey, or set "
                        "hostKeyPolicy: accept-new",
                        t->host, s->host_key, t->known_hosts_file);
}

static int check_host_key(SshSession *s, const SshTarget *t, SshResult *result) {
        char type[32], fp[64];

        if (host_key_seen(s, s->host_key) < 0)
                return ssh_fail(result, SSH_FAIL_HANDSHAKE, EIO, "cannot read the host key of %s", t->host);
        snprintf(result->host_key, sizeof result->host_key, "%s", s->host_key);
        if (t->host_key && ssh_host_key_parse(t->host_key, type, fp) >= 0) {
                const char *seen_fp = strchr(s->host_key, ' ') + 1;
                bool type_ok = !*type || strncmp(s->host_key, type, strlen(type)) == 0;
                if (type_ok && STREQ(seen_fp, fp))
                        return 0;
                return ssh_fail(
                        result, SSH_FAIL_HOST_KEY_MISMATCH, EPERM,
                        "host key mismatch for %s: expected %s, got %s; refusing to connect (if the host "
                        "was reinstalled, update spec.hostKey)",
                        t->host, t->host_key, s->host_key);
        }
        if (t->known_hosts_file)
                return check_known_hosts(s, t, result);
        if (t->accept_new) {
                result->host_key_new = true;
                return 0;
        }
        return ssh_fail(result, SSH_FAIL_HOST_KEY_UNKNOWN, EPERM,
                        "host key of %s is not known (%s); pin it with spec.hostKey or set hostKeyPolicy: "
                        "accept-new",
                        t->host, s->host_key);
}

/* ---- handshake and authentication ------------------------------------------------ */

/* libssh2 1.10 knows no rsa-sha2-* host key algorithms: ssh-rsa is SHA-1. */
static const char *const host_key_types[] = {
        "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa",
};

static int known_type_index(int knownhost_typemask) {
        switch (knownhost_typemask & LIBSSH2_KNOWNHOST_KEY_MASK) {
        case LIBSSH2_KNOWNHOST_KEY_ED25519:
                return 0;
        case LIBSSH2_KNOWNHOST_KEY_ECDSA_256:
                return 1;
        case LIBSSH2_KNOWNHOST_KEY_ECDSA_384:
                return 2;
        case LIBSSH2_KNOWNHOST_KEY_ECDSA_521:
                return 3;
        case LIBSSH2_KNOWNHOST_KEY_SSHRSA:
                return 4;
        default:
                return -1;
        }
}

/* Marks the key types that a known_hosts file holds. */
static void known_hosts_types(LIBSSH2_SESSION *session, const char *path, bool wanted[]) {
        LIBSSH2_KNOWNHOSTS *kh = libssh2_knownhost_init(session);
        struct libssh2_knownhost *k = NULL;

        if (!kh)
                return;
        if (libssh2_knownhost_readfile(kh, path, LIBSSH2_KNOWNHOST_FILE_OPENSSH) >= 0)
                while (libssh2_knownhost_get(kh, &k, k) == 0) {
                        int i = known_type_index(k->typemask);
                        if (i >= 0)
                                wanted[i] = true;
                }
        libssh2_knownhost_free(kh);
}

/* The host key algorithms in the order to ask for them: the pinned type, or
 * the types in known_hosts, first; then ed25519 before ECDSA, as OpenSSH
 * does (libssh2 on its own would prefer ECDSA). */
static void host_key_preference(LIBSSH2_SESSION *session, const SshTarget *t) {
        bool wanted[ELEMENTSOF(host_key_types)] = {};
        char type[32] = "", fp[64];
        Buf b = BUF_INIT;

        if (t->host_key && ssh_host_key_parse(t->host_key, type, fp) >= 0) {
                for (size_t i = 0; i < ELEMENTSOF(host_key_types); i++)
                        wanted[i] = STREQ(type, host_key_types[i]);
        } else if (t->known_hosts_file)
                known_hosts_types(session, t->known_hosts_file, wanted);
        for (int pass = 0; pass < 2; pass++)
                for (size_t i = 0; i < ELEMENTSOF(host_key_types); i++)
                        if (wanted[i] == (pass == 0))
                                buf_printf(&b, "%s%s", b.len ? "," : "", host_key_types[i]);
        libssh2_session_method_pref(session, LIBSSH2_METHOD_HOSTKEY, b.data);
        buf_free(&b);
}

static int handshake(SshSession *s, const SshTarget *t, SshResult *result) {
        int r;

        host_key_preference(s->session, t);
        libssh2_session_set_timeout(s->session, (long) (or_default(t->connect_timeout_usec) / 1000));
        r = libssh2_session_handshake(s->session, s->fd);
        if (r == LIBSSH2_ERROR_TIMEOUT)
                return ssh_fail(result, SSH_FAIL_TIMEOUT, ETIMEDOUT,
                                "SSH handshake with %s timed out after %.1f s", t->host,
                                (double) or_default(t->connect_timeout_usec) / 1e6);
        if (r == LIBSSH2_ERROR_KEX_FAILURE)
                return ssh_fail(
                        result, SSH_FAIL_HANDSHAKE, EPROTO,
                        "SSH handshake with %s failed: no common algorithm (libssh2 1.10 offers host keys "
                        "ssh-ed25519, ecdsa-sha2-* and SHA-1 ssh-rsa, ciphers aes*-ctr/cbc); give the "
                        "server an ed25519 or ECDSA host key",
                        t->host);
        if (r == LIBSSH2_ERROR_BANNER_RECV || r == LIBSSH2_ERROR_SOCKET_DISCONNECT ||
            r == LIBSSH2_ERROR_SOCKET_RECV)
                return ssh_fail(
                        result, SSH_FAIL_HANDSHAKE, ECONNABORTED,
                        "%s closed the connection before the SSH handshake (too many connections at once "
                        "for sshd's MaxStartups, or not an SSH server on that port?)",
                        t->host);
        if (r < 0) {
                char *msg = NULL;
                libssh2_session_last_error(s->session, &msg, NULL, 0);
                return ssh_fail(result, SSH_FAIL_HANDSHAKE, EPROTO, "SSH handshake with %s failed: %s",
                                t->host, msg ? msg : "unknown error");
        }
        return check_host_key(s, t, result);
}

/* Whether a private key (OpenSSH or PEM text) is an RSA key. */
static bool key_is_rsa(const char *text, size_t len) {
        static const char begin[] = "-----BEGIN OPENSSH PRIVATE KEY-----";
        unsigned char raw[512];

        if (memmem(text, len, "BEGIN RSA PRIVATE KEY", 21))
                return true;
        const char *p = memmem(text, len, begin, sizeof begin - 1);
        if (!p)
                return false;
        p += sizeof begin - 1;
        while (p < text + len && (*p == '\n' || *p == '\r'))
                p++;
        /* The public key, near the start of the blob, names the type. */
        size_t n = (size_t) (text + len - p);
        char b64[341];
        size_t k = 0;
        for (size_t i = 0; i < n && k < sizeof b64 - 1; i++)
                if (p[i] != '\n' && p[i] != '\r')
                        b64[k++] = p[i];
        k -= k % 4;
        int got = EVP_DecodeBlock(raw, (const unsigned char *) b64, (int) k);
        return got > 0 && memmem(raw, (size_t) got, "ssh-rsa", 7);
}

static int auth_failed(SshSession *s, const SshTarget *t, const char *user, bool rsa, SshResult *result) {
        if (rsa)
                return ssh_fail(
                        result, SSH_FAIL_AUTH, EACCES,
                        "%s@%s refused the RSA key %s: libssh2 1.10 signs RSA keys only with SHA-1 "
                        "(ssh-rsa), which OpenSSH 8.8 and later refuse by default; use an ed25519 or "
                        "ECDSA key, or allow it on the server with PubkeyAcceptedAlgorithms +ssh-rsa "
                        "(and check that the public key is in authorized_keys)",
                        user, t->host, t->key_file ? t->key_file : "(from keyRef)");
        (void) s;
        return ssh_fail(result, SSH_FAIL_AUTH, EACCES,
                        "%s@%s refused the key %s: is its public key in ~%s/.ssh/authorized_keys?", user,
                        t->host, t->key_file ? t->key_file : "(from keyRef)", user);
}

static int auth_error(SshSession *s, const SshTarget *t, const char *user, int r, bool rsa,
                      SshResult *result) {
        const char *key_name = t->key_file ? t->key_file : "from keyRef";

        switch (r) {
        case LIBSSH2_ERROR_AUTHENTICATION_FAILED: /* also PUBLICKEY_UNRECOGNIZED */
        case LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED:
                return auth_failed(s, t, user, rsa, result);
        case LIBSSH2_ERROR_TIMEOUT:
                return ssh_fail(result, SSH_FAIL_TIMEOUT, ETIMEDOUT, "authentication at %s timed out",
                                t->host);
        case LIBSSH2_ERROR_SOCKET_SEND:
        case LIBSSH2_ERROR_SOCKET_RECV:
        case LIBSSH2_ERROR_SOCKET_DISCONNECT:
                return ssh_fail(result, SSH_FAIL_NETWORK, ECONNRESET,
                                "%s closed the connection during authentication", t->host);
        default:
                /* libssh2 says "key too short", "unable to extract public key", ...:
                 * the key text itself is the problem. It never appears in the message. */
                return ssh_fail(
                        result, SSH_FAIL_KEY, EINVAL,
                        "the private key %s cannot be used: not an unencrypted OpenSSH or PEM private key "
                        "(passphrases are not supported)",
                        key_name);
        }
}

static int authenticate(SshSession *s, const SshTarget *t, SshResult *result) {
        const char *user = t->user ? t->user : "root";
        _cleanup_free_ char *file_data = NULL;
        const char *key = t->key_data;
        size_t key_len = t->key_len;
        bool rsa;
        int r;

        if (!key) {
                if (!t->key_file)
                        return ssh_fail(result, SSH_FAIL_KEY, EINVAL,
                                        "no key: set spec.identityFile or spec.keyRef");
                r = read_file(t->key_file, 1 << 20, &file_data, &key_len);
                if (r < 0)
                        return ssh_fail(result, SSH_FAIL_KEY, -r, "cannot read identity file %s: %s",
                                        t->key_file, strerror(-r));
                key = file_data;
        }
        libssh2_session_set_timeout(s->session, (long) (or_default(t->auth_timeout_usec) / 1000));
        r = libssh2_userauth_publickey_frommemory(s->session, user, strlen(user), NULL, 0, key, key_len,
                                                  NULL);
        rsa = r < 0 && key_is_rsa(key, key_len); /* before the copy is wiped */
        if (file_data)
                explicit_bzero(file_data, key_len);
        if (r < 0)
                return auth_error(s, t, user, r, rsa, result);
        result->logged_in = true;
        return 0;
}

static int session_open_once(const SshTarget *t, SshSession **ret, SshResult *result) {
        SshSession *s = xcalloc(1, sizeof *s);
        int r;

        s->fd = -1;
        r = tcp_connect(t, &s->fd, result);
        if (r >= 0) {
                s->session = libssh2_session_init();
                if (!s->session)
                        r = ssh_fail(result, SSH_FAIL_EXEC, ENOMEM, "cannot create an SSH session");
        }
        if (r >= 0)
                r = handshake(s, t, result);
        if (r >= 0)
                r = authenticate(s, t, result);
        /* Only now: libssh2 1.10 configured for keepalives before the
         * handshake breaks the key exchange ("Unable to exchange
         * encryption keys"). */
        if (r >= 0)
                libssh2_keepalive_config(s->session, 1, 30);
        if (r < 0) {
                ssh_session_close(s);
                return r;
        }
        s->config = ssh_target_config(t);
        *ret = s;
        return 0;
}

int ssh_session_open(const SshTarget *t, SshSession **ret, SshResult *result) {
        int r;

        pthread_once(&init_once, init_libssh2);
        /* sshd drops connections at random beyond MaxStartups (10 not yet
         * authenticated, by default), also other clients' ones: such a drop
         * is retried after a short, random pause. */
        for (int attempt = 0;; attempt++) {
                r = session_open_once(t, ret, result);
                if (r != -ECONNABORTED || attempt == 2)
                        return r;
                uint32_t jitter = 0;
                random_bytes(&jitter, sizeof jitter);
                usleep(50 * 1000 + jitter % (100 * 1000));
        }
}

void ssh_session_close(SshSession *s) {
        if (!s)
                return;
        if (s->session) {
                libssh2_session_set_blocking(s->session, 1);
                libssh2_session_set_timeout(s->session, 1000);
                libssh2_session_disconnect(s->session, "rpr closes the session");
                libssh2_session_free(s->session);
        }
        if (s->fd >= 0)
                close(s->fd);
        free(s->config);
        free(s);
}
