/* auth-tokens.c: from a presented secret to the api Token it belongs to.
 *
 * The index maps each live api Token's hash to what it confers, so that an
 * authenticated request costs one SHA-256 and one bucket, not a parse of
 * every Token. It follows the store's change feed: a write only raises a
 * flag (the feed calls back on the writer's thread), and the next lookup
 * reads the Token events since; a lookup that finds the feed has moved on
 * past what it keeps rebuilds the index from a listing.
 *
 * Agent Tokens are in it too: a join token (no spec.server) and an agent's
 * own credential (spec.server), each with its use in the identity, so that
 * no caller can pass one for another.
 *
 * Hashes are compared in constant time; the bucket is chosen by the hash's
 * first bits, which say nothing about the secret. A Token marked for
 * deletion, or not of type api or agent, is not in the index. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "auth/auth.h"
#include "store/store.h"

#define HASH_PREFIX "sha256:"
#define HASH_HEX_LEN 64

/* One allocation for an agent's entry (a fleet has one per agent): its
 * names live in text[], and its scope, its own namespace, in own_scope. */
typedef struct Entry {
        struct Entry *next;
        char hash[HASH_HEX_LEN];
        const char *ns, *name;
        char *expires;
        uint64_t expires_usec;
        AuthRole role;
        char **scope; /* NULL: every namespace; own_scope or a strv of its own */
        char *own_scope[2];
        AuthUse use;
        const char *server; /* AUTH_USE_AGENT: the Server it speaks for */
        bool single_use;
        char text[];
} Entry;

struct AuthTokens {
        Store *store;
        pthread_mutex_t lock;
        StoreWatch *watch; /* NULL: rebuild at the next lookup */
        atomic_bool changed;
        Entry **buckets;
        size_t n_buckets, n;
        /* "ns/name" -> Entry: a Token's event finds its entry without a
         * walk through every bucket (a fleet's agents have one each). */
        Hashmap *by_name;
};

static char *name_key(const char *ns, const char *name) {
        return xasprintf("%s/%s", ns, name);
}

static void entry_free(Entry *e) {
        if (!e)
                return;
        free(e->expires);
        if (e->scope != e->own_scope)
                auth_strv_free(e->scope);
        free(e);
}

static size_t bucket_of(const AuthTokens *t, const char *hex) {
        uint64_t v = 0;

        for (size_t i = 0; i < 16; i++)
                v = v << 4 | (uint64_t) (hex[i] <= '9' ? hex[i] - '0' : hex[i] - 'a' + 10);
        return (size_t) (v & (t->n_buckets - 1));
}

static void table_clear(AuthTokens *t) {
        for (size_t i = 0; i < t->n_buckets; i++)
                while (t->buckets[i]) {
                        Entry *e = t->buckets[i];
                        t->buckets[i] = e->next;
                        entry_free(e);
                }
        t->n = 0;
        hashmap_free(t->by_name);
        t->by_name = hashmap_new();
}

/* Keeps about two buckets per Token; a power of two. */
static void table_grow(AuthTokens *t) {
        size_t size = t->n_buckets ? t->n_buckets * 2 : 64;
        Entry **old = t->buckets;
        size_t n_old = t->n_buckets;

        t->buckets = xcalloc(size, sizeof *t->buckets);
        t->n_buckets = size;
        for (size_t i = 0; i < n_old; i++)
                while (old[i]) {
                        Entry *e = old[i];
                        old[i] = e->next;
                        size_t b = bucket_of(t, e->hash);
                        e->next = t->buckets[b];
                        t->buckets[b] = e;
                }
        free(old);
}

static void table_remove(AuthTokens *t, const char *ns, const char *name) {
        _cleanup_free_ char *key = name_key(ns, name);
        Entry *e = hashmap_remove(t->by_name, key);

        if (!e)
                return;
        for (Entry **p = &t->buckets[bucket_of(t, e->hash)]; *p; p = &(*p)->next)
                if (*p == e) {
                        *p = e->next;
                        break;
                }
        entry_free(e);
        t->n--;
}

/* The entry a stored Token makes, or NULL when it confers nothing. */
static Entry *entry_new(const char *text, size_t len) {
        _cleanup_json_ json_t *obj = json_loadb(text, len, 0, NULL);
        const json_t *meta = json_object_get(obj, "metadata"), *spec = json_object_get(obj, "spec");
        const char *type = json_str_at(spec, "type"), *hash = json_str_at(spec, "valueHash");
        const char *ns = json_str_at(meta, "namespace") ?: AUTH_HOME_NAMESPACE,
                   *name = json_str_at(meta, "name");
        const char *expires = json_str_at(spec, "expires");

        if (!type || !(STREQ(type, "api") || STREQ(type, "agent")) || !name || !hash ||
            strlen(hash) != strlen(HASH_PREFIX) + HASH_HEX_LEN || !startswith(hash, HASH_PREFIX) ||
            strspn(hash + strlen(HASH_PREFIX), "0123456789abcdef") != HASH_HEX_LEN)
                return NULL;
        /* Deleted, held only by a finalizer: no longer anyone's key. */
        if (json_object_get(meta, "deletionTimestamp"))
                return NULL;

        bool agent = STREQ(type, "agent");
        const char *server = agent ? json_str_at(spec, "server") : NULL;
        size_t lns = strlen(ns) + 1, lname = strlen(name) + 1, lserver = server ? strlen(server) + 1 : 0;
        Entry *e = xcalloc(1, sizeof *e + lns + lname + lserver);
        memcpy(e->hash, hash + strlen(HASH_PREFIX), HASH_HEX_LEN);
        e->ns = memcpy(e->text, ns, lns);
        e->name = memcpy(e->text + lns, name, lname);
        if (agent) {
                /* An agent's secret confers no role: only its own endpoints. */
                e->use = server ? AUTH_USE_AGENT : AUTH_USE_AGENT_JOIN;
                e->server = server ? memcpy(e->text + lns + lname, server, lserver) : NULL;
                e->single_use = json_is_true(json_object_get(spec, "singleUse"));
                e->role = AUTH_ROLE_NONE;
                e->own_scope[0] = (char *) e->ns; /* its own namespace alone */
                e->scope = e->own_scope;
        } else {
                e->use = AUTH_USE_API;
                e->role = auth_role_from_string(json_str_at(spec, "role"));
                if (e->role < 0)
                        e->role = AUTH_ROLE_VIEWER;
                e->scope = auth_token_scope(ns, json_object_get(spec, "namespaces"));
        }
        if (expires) {
                e->expires = xstrdup(expires);
                if (time_parse_rfc3339(expires, &e->expires_usec) < 0)
                        e->expires_usec = 1; /* unreadable: expired long ago */
        }
        return e;
}

static void table_add(AuthTokens *t, const char *text, size_t len) {
        Entry *e = entry_new(text, len);

        if (!e)
                return;
        if (t->n + 1 > t->n_buckets * 2)
                table_grow(t);
        _cleanup_free_ char *key = name_key(e->ns, e->name);
        /* One entry a name: a second one (the listing and an event both
         * carrying it) replaces the first. */
        table_remove(t, e->ns, e->name);
        size_t b = bucket_of(t, e->hash);
        e->next = t->buckets[b];
        t->buckets[b] = e;
        t->n++;
        hashmap_put(t->by_name, key, e);
}

static void list_one(const char *text, size_t len, void *userdata) {
        table_add(userdata, text, len);
}

static void on_change(void *userdata) {
        AuthTokens *t = userdata;

        atomic_store(&t->changed, true);
}

/* A fresh index and a watch from the revision it reflects. Under lock. */
static int rebuild(AuthTokens *t) {
        uint64_t rev;
        int r;

        store_watch_free(TAKE_PTR(t->watch));
        table_clear(t);
        atomic_store(&t->changed, false);
        r = store_list(t->store, "Token", NULL, list_one, t, &rev);
        if (r < 0)
                return r;
        return store_watch(t->store, rev, on_change, t, &t->watch);
}

/* Reads the feed's Token events since the last look. Under lock. */
static int follow(AuthTokens *t) {
        StoreEvent *ev;
        int r;

        if (!t->watch)
                return rebuild(t);
        if (!atomic_exchange(&t->changed, false))
                return 0;
        while ((r = store_watch_next(t->watch, &ev)) > 0) {
                if (STREQ(ev->kind, "Token")) {
                        table_remove(t, ev->ns, ev->name);
                        if (ev->type != STORE_EVENT_DELETED)
                                table_add(t, ev->json, ev->len);
                }
                store_event_free(ev);
        }
        return r == -ERANGE ? rebuild(t) : r;
}

int auth_tokens_new(Store *store, AuthTokens **ret) {
        AuthTokens *t = xcalloc(1, sizeof *t);
        int r;

        t->store = store;
        pthread_mutex_init(&t->lock, NULL);
        t->by_name = hashmap_new();
        table_grow(t);
        r = rebuild(t);
        if (r < 0) {
                auth_tokens_free(t);
                return r;
        }
        *ret = t;
        return 0;
}

void auth_tokens_free(AuthTokens *t) {
        if (!t)
                return;
        store_watch_free(t->watch);
        table_clear(t);
        hashmap_free(t->by_name);
        free(t->buckets);
        pthread_mutex_destroy(&t->lock);
        free(t);
}

size_t auth_tokens_count(AuthTokens *t) {
        pthread_mutex_lock(&t->lock);
        (void) follow(t);
        size_t n = t->n;
        pthread_mutex_unlock(&t->lock);
        return n;
}

static char **strv_copy(char *const *l) {
        size_t n = 0;

        if (!l)
                return NULL;
        while (l[n])
                n++;
        char **c = xcalloc(n + 1, sizeof *c);
        for (size_t i = 0; i < n; i++)
                c[i] = xstrdup(l[i]);
        return c;
}

static AuthIdentity *identity_of(const Entry *e) {
        AuthIdentity *id = xcalloc(1, sizeof *id);

        id->caller.role = e->role;
        id->caller.name = xstrdup(e->name);
        id->caller.namespaces = (const char *const *) strv_copy(e->scope);
        id->ns = xstrdup(e->ns);
        id->expires = e->expires ? xstrdup(e->expires) : NULL;
        id->expires_usec = e->expires_usec;
        id->use = e->use;
        id->server = e->server ? xstrdup(e->server) : NULL;
        id->caller.agent = id->server;
        id->single_use = e->single_use;
        return id;
}

void auth_identity_free(AuthIdentity *id) {
        if (!id)
                return;
        free((char *) id->caller.name);
        auth_strv_free((char **) id->caller.namespaces);
        free(id->ns);
        free(id->expires);
        free(id->server);
        free(id);
}

int auth_tokens_identify(AuthTokens *t, const char *secret, size_t len, AuthIdentity **ret) {
        const Entry *found = NULL;
        char hex[HASH_HEX_LEN + 1];
        int r;

        sha256_hex(secret, len, hex);
        pthread_mutex_lock(&t->lock);
        r = follow(t);
        if (r < 0) {
                pthread_mutex_unlock(&t->lock);
                return r;
        }
        /* Every entry of the bucket is compared, found or not. */
        for (const Entry *e = t->buckets[bucket_of(t, hex)]; e; e = e->next)
                if (memeq_consttime(e->hash, hex, HASH_HEX_LEN) && !found)
                        found = e;
        AuthIdentity *id = found ? identity_of(found) : NULL;
        pthread_mutex_unlock(&t->lock);
        explicit_bzero(hex, sizeof hex);

        if (!id)
                return -EACCES;
        *ret = id;
        return id->expires_usec && now_usec() >= id->expires_usec ? -EKEYEXPIRED : 0;
}
