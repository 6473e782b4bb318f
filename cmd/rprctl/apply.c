/* apply: read the manifests, check every object locally, send them to
 * POST /api/v1/apply and print one line per object: "server/web-1 created".
 *
 * Up to CHUNK_BYTES of objects go in one request, all or nothing on the
 * server too. A larger input goes in several requests of that size, one
 * after the other, with progress on a terminal; a request that rprd finds
 * too large (413: its --max-body is smaller) wrote nothing and is sent
 * again in halves. A request that fails otherwise stops the apply, and
 * what the requests before it applied stays applied (rprctl says how
 * much). --atomic sends everything in one request instead, all or nothing
 * however large, up to rprd's --max-body. */
#include <string.h>
#include <unistd.h>

#include "resource/resource.h"
#include "rprctl.h"

#define CHUNK_BYTES (1u << 20)

typedef struct Apply {
        Ctl *ctl;
        ManifestSet set;
        bool dry_run;
        const char *output; /* NULL, "name", "json" or "yaml" */
        json_t *items;      /* every answer's items, in order */
        size_t done;        /* objects applied so far */
        uint64_t started;
        bool progress_shown;
        size_t requests;
} Apply;

/* "server/web-1 created" (or "server/web-1" for -o name) for one item. */
static void print_outcome(const Apply *a, const json_t *item) {
        const char *kind = json_string_value(json_object_get(item, "kind"));
        const char *name = json_string_value(json_object_get(item, "name"));
        const char *outcome = json_string_value(json_object_get(item, "outcome"));
        const Kind *k = kind ? kind_lookup(kind) : NULL;
        char singular[64];

        printf("%s/%s", k ? ctl_kind_singular(k, singular, sizeof(singular)) : (kind ?: "object"), name ?: "?");
        if (!a->output)
                printf(" %s%s", outcome ?: "applied", a->dry_run ? " (dry run)" : "");
        putchar('\n');
}

static void progress(Apply *a) {
        if (!isatty(STDERR_FILENO) || now_mono_usec() - a->started < USEC_PER_SEC)
                return;
        fprintf(stderr, "\rrprctl: applied %zu of %zu objects", a->done, a->set.n);
        a->progress_shown = true;
}

/* One request of objects [first, first + n): 0; -EFBIG for a 413 that
 * may be split (nothing printed); or 1 after printing why. */
static int send_chunk(Apply *a, const char *path, const Buf *body, size_t first, bool may_split) {
        ClientResponse resp = {0};
        int ret = 0;

        if (ctl_request(a->ctl, "POST", path, body->data, body->len, &resp) < 0)
                return 1;
        if (resp.status == 413 && may_split) {
                client_response_clear(&resp);
                return -EFBIG;
        }
        if (a->progress_shown && resp.status != 200)
                fputc('\n', stderr);
        /* 409: objects a Sync manages, each named */
        if (resp.status == 422 || resp.status == 400 || resp.status == 409)
                ret = manifests_print_status(&a->set, &resp, first);
        else if (resp.status != 200)
                ret = ctl_http_error(a->ctl, &resp);
        else {
                _cleanup_json_ json_t *j = json_loadb(resp.body, resp.len, 0, NULL);
                json_t *items = json_object_get(j, "items");
                if (!json_is_array(items))
                        ret = ctl_error("rprd answered something that is not an ApplyResult");
                else {
                        json_array_extend(a->items, items);
                        a->done += json_array_size(items);
                        a->requests++;
                }
        }
        client_response_clear(&resp);
        return ret;
}

static int send_all(Apply *a, bool atomic) {
        bool objects = a->output && (STREQ(a->output, "json") || STREQ(a->output, "yaml"));
        _cleanup_free_ char *path = xasprintf("/api/v1/apply?objects=%d%s%s", objects, a->dry_run ? "&dryRun=1" : "",
                                              ctl_flag(a->ctl, "force") ? "&force=1" : "");

        size_t max_bytes = atomic ? SIZE_MAX : CHUNK_BYTES;

        for (size_t first = 0; first < a->set.n;) {
                Buf body = BUF_INIT;
                size_t n = manifests_body_range(&a->set, first, max_bytes, &body);
                int r = send_chunk(a, path, &body, first, !atomic && n > 1);
                size_t sent = body.len;
                buf_free(&body);
                if (r == -EFBIG) {
                        max_bytes = sent / 2;
                        continue;
                }
                if (r != 0) {
                        if (a->done > 0)
                                ctl_error("%zu of %zu objects were %s before this; the rest were not sent", a->done,
                                          a->set.n, a->dry_run ? "checked" : "applied");
                        return 1;
                }
                first += n;
                progress(a);
        }
        if (a->progress_shown)
                fputc('\n', stderr);
        if (a->requests > 1)
                fprintf(stderr, "rprctl: %zu objects went in %zu requests, each all or nothing (--atomic: one for all)\n",
                        a->set.n, a->requests);
        return 0;
}

static void print_result(const Apply *a) {
        if (a->output && !STREQ(a->output, "name")) {
                _cleanup_json_ json_t *result =
                        json_pack("{s:s, s:s, s:b, s:O}", "apiVersion", "rpr/v1", "kind", "ApplyResult", "dryRun",
                                  a->dry_run, "items", a->items);
                if (STREQ(a->output, "json"))
                        ctl_print_json(result);
                else
                        ctl_print_yaml(result);
                return;
        }
        size_t i;
        json_t *v;
        json_array_foreach(a->items, i, v)
                print_outcome(a, v);
}

int verb_apply(Ctl *c) {
        Apply a = {.ctl = c, .dry_run = ctl_flag(c, "dry-run"), .output = ctl_opt(c, "output")};
        int ret = 1;

        if (ctl_flag(c, "prune"))
                return ctl_error("--prune is not implemented yet");
        if (c->n_pos > 0)
                return ctl_error("apply takes no arguments besides flags (got \"%s\"); use -f", c->pos[0]);
        if (a.output && !STREQ(a.output, "name") && !STREQ(a.output, "json") && !STREQ(a.output, "yaml"))
                return ctl_error("unknown output format \"%s\" for apply (name, json or yaml)", a.output);
        if (manifests_load(c, &a.set) < 0 || manifests_prepare(c, &a.set) < 0)
                goto out;

        a.items = json_array();
        a.started = now_mono_usec();
        ret = send_all(&a, ctl_flag(c, "atomic"));
        if (ret == 0 || json_array_size(a.items) > 0)
                print_result(&a); /* after a failure: what the requests before it did */
out:
        json_decref(a.items);
        manifests_free(&a.set);
        return ret;
}
