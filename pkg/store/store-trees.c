/* store-trees: a few objects kept parsed as last written.
 *
 * A write of an object's status parses its stored text to build the new
 * object around it. For a Pipeline's job, rewritten many times a second
 * while it runs and as large as its tasks, that parse was the largest
 * part of each write. A writer that opts in (StoreOp.keep_tree) has the
 * object as written kept here, parsed, for its next write: nothing shared
 * with it changes afterwards (the store's own trees are never changed, and
 * the writer promised not to change the status it gave). A handful of
 * entries, found by key and revision: a tree is used only while it is
 * still the object stored. All calls under the store's write_lock. */
#include <string.h>

#include "store/store-backend.h"

#define TREES 8

struct TreeCache {
        struct {
                char *key;
                uint64_t revision;
                json_t *tree;
                uint64_t used;
        } e[TREES];
        uint64_t clock;
};

TreeCache *tree_cache_new(void) {
        return xcalloc(1, sizeof(TreeCache));
}

static void entry_clear(TreeCache *c, size_t i) {
        free(c->e[i].key);
        json_decref(c->e[i].tree);
        memset(&c->e[i], 0, sizeof c->e[i]);
}

void tree_cache_free(TreeCache *c) {
        if (!c)
                return;
        for (size_t i = 0; i < TREES; i++)
                entry_clear(c, i);
        free(c);
}

static ssize_t find(TreeCache *c, const char *key) {
        for (size_t i = 0; i < TREES; i++)
                if (c->e[i].key && STREQ(c->e[i].key, key))
                        return (ssize_t) i;
        return -1;
}

json_t *tree_cache_get(TreeCache *c, const char *kind, const char *ns, const char *name, uint64_t revision) {
        _cleanup_free_ char *key = xasprintf("%s/%s/%s", kind, ns, name);
        ssize_t i = find(c, key);

        if (i < 0 || c->e[i].revision != revision)
                return NULL;
        c->e[i].used = ++c->clock;
        return json_incref(c->e[i].tree);
}

void tree_cache_put(TreeCache *c, const char *kind, const char *ns, const char *name, uint64_t revision,
                    json_t *tree) {
        _cleanup_free_ char *key = xasprintf("%s/%s/%s", kind, ns, name);
        ssize_t i = find(c, key);

        if (i < 0) /* a free entry, or the least recently used */
                for (size_t k = 0; k < TREES; k++)
                        if (i < 0 || !c->e[k].key || (c->e[i].key && c->e[k].used < c->e[i].used))
                                i = (ssize_t) k;
        entry_clear(c, (size_t) i);
        c->e[i].key = TAKE_PTR(key);
        c->e[i].revision = revision;
        c->e[i].tree = tree;
        c->e[i].used = ++c->clock;
}

void tree_cache_drop(TreeCache *c, const char *kind, const char *ns, const char *name) {
        _cleanup_free_ char *key = xasprintf("%s/%s/%s", kind, ns, name);
        ssize_t i = find(c, key);

        if (i >= 0)
                entry_clear(c, (size_t) i);
}
