/* resource-selector.c: label selectors as kubectl writes them.
 *
 *   k=v  k==v  k!=v  k  !k  k in (a,b)  k notin (a,b)
 *
 * joined by commas, all of which must hold. "!=" and "notin" also match
 * objects without the label, as in Kubernetes. Parse errors name the part
 * that is wrong. */
#include <string.h>

#include "resource/resource-private.h"

typedef enum SelectorOp {
        SELECTOR_EQ,
        SELECTOR_NEQ,
        SELECTOR_EXISTS,
        SELECTOR_NOT_EXISTS,
        SELECTOR_IN,
        SELECTOR_NOT_IN,
} SelectorOp;

typedef struct Requirement {
        char *key;
        SelectorOp op;
        char **values;
        size_t n_values;
} Requirement;

struct Selector {
        Requirement *reqs;
        size_t n;
};

void selector_free(Selector *s) {
        if (!s)
                return;
        for (size_t i = 0; i < s->n; i++) {
                free(s->reqs[i].key);
                for (size_t j = 0; j < s->reqs[i].n_values; j++)
                        free(s->reqs[i].values[j]);
                free(s->reqs[i].values);
        }
        free(s->reqs);
        free(s);
}

static void selector_freep(Selector **s) {
        selector_free(*s);
}

/* ---- lexing helpers ----------------------------------------------------- */

static const char *skip_space(const char *p) {
        while (*p == ' ' || *p == '\t')
                p++;
        return p;
}

static bool is_word_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
               c == '_' || c == '.' || c == '/';
}

static int fail(char **ret_error, const char *fmt, ...) _printf_(2, 3);
static int fail(char **ret_error, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(ret_error, fmt, ap) < 0)
                *ret_error = xstrdup("out of memory");
        va_end(ap);
        return -EINVAL;
}

/* A key or value: a run of label characters; NULL (and p unchanged) if none. */
static char *read_word(const char **p) {
        const char *s = *p, *e = s;

        while (is_word_char(*e))
                e++;
        if (e == s)
                return NULL;
        *p = e;
        return xstrndup(s, (size_t) (e - s));
}

/* Is the word at p exactly w, followed by a space or "("? */
static bool at_keyword(const char *p, const char *w) {
        size_t n = strlen(w);
        return strncmp(p, w, n) == 0 && (p[n] == ' ' || p[n] == '\t' || p[n] == '(');
}

/* "(a, b)" → values. */
static int read_set(const char **p, Requirement *r, char **ret_error) {
        const char *q = skip_space(*p);

        if (*q != '(')
                return fail(ret_error, "expected \"(\" after \"%s in\"", r->key);
        q++;
        for (;;) {
                q = skip_space(q);
                char *v = read_word(&q);
                if (!v)
                        return fail(ret_error, "expected a value in the set of \"%s\"", r->key);
                r->values = xrealloc(r->values, (r->n_values + 1) * sizeof(char *));
                r->values[r->n_values++] = v;
                q = skip_space(q);
                if (*q == ')')
                        break;
                if (*q != ',')
                        return fail(ret_error, "missing \")\" in the set of \"%s\"", r->key);
                q++;
        }
        *p = q + 1;
        return 0;
}

/* One requirement at *p. */
static int read_requirement(const char **p, Requirement *r, char **ret_error) {
        const char *q = skip_space(*p);
        int ret;

        if (*q == '!') {
                q = skip_space(q + 1);
                r->key = read_word(&q);
                if (!r->key)
                        return fail(ret_error, "expected a label key after \"!\" at \"%s\"", *p);
                r->op = SELECTOR_NOT_EXISTS;
                *p = q;
                return 0;
        }

        r->key = read_word(&q);
        if (!r->key)
                return fail(ret_error, "expected a label key at \"%s\"", q);
        q = skip_space(q);

        if (*q == ',' || *q == 0) {
                r->op = SELECTOR_EXISTS;
                *p = q;
                return 0;
        }
        if (at_keyword(q, "in") || at_keyword(q, "notin")) {
                r->op = q[0] == 'i' ? SELECTOR_IN : SELECTOR_NOT_IN;
                q += r->op == SELECTOR_IN ? 2 : 5;
                ret = read_set(&q, r, ret_error);
                if (ret < 0)
                        return ret;
                *p = q;
                return 0;
        }

        if (startswith(q, "==")) {
                r->op = SELECTOR_EQ;
                q += 2;
        } else if (startswith(q, "!=")) {
                r->op = SELECTOR_NEQ;
                q += 2;
        } else if (*q == '=') {
                r->op = SELECTOR_EQ;
                q += 1;
        } else
                return fail(ret_error, "unexpected \"%s\" after label key \"%s\"", q, r->key);

        q = skip_space(q);
        char *v = read_word(&q);
        r->values = xcalloc(1, sizeof(char *));
        r->values[0] = v ? v : xstrdup(""); /* "k=" matches an empty value */
        r->n_values = 1;
        *p = q;
        return 0;
}

int selector_parse(const char *text, Selector **ret, char **ret_error) {
        _cleanup_(selector_freep) Selector *s = xcalloc(1, sizeof(Selector));
        const char *p = text ? text : "";
        int r;

        *ret_error = NULL;
        p = skip_space(p);
        while (*p) {
                s->reqs = xrealloc(s->reqs, (s->n + 1) * sizeof(Requirement));
                s->reqs[s->n] = (Requirement){0};
                s->n++;
                r = read_requirement(&p, &s->reqs[s->n - 1], ret_error);
                if (r < 0) {
                        char *inner = *ret_error;
                        *ret_error = xasprintf("invalid label selector \"%s\": %s", text, inner);
                        free(inner);
                        return r;
                }
                p = skip_space(p);
                if (*p == 0)
                        break;
                if (*p != ',') {
                        *ret_error = xasprintf("invalid label selector \"%s\": expected \",\" at \"%s\"",
                                               text, p);
                        return -EINVAL;
                }
                p = skip_space(p + 1);
                if (*p == 0) {
                        *ret_error = xasprintf("invalid label selector \"%s\": nothing after the last \",\"",
                                               text);
                        return -EINVAL;
                }
        }
        *ret = TAKE_PTR(s);
        return 0;
}

static bool value_in(const Requirement *r, const char *v) {
        for (size_t i = 0; i < r->n_values; i++)
                if (STREQ(r->values[i], v))
                        return true;
        return false;
}

static bool requirement_matches(const Requirement *r, const char *v) {
        switch (r->op) {
        case SELECTOR_EXISTS:
                return v != NULL;
        case SELECTOR_NOT_EXISTS:
                return v == NULL;
        case SELECTOR_EQ:
        case SELECTOR_IN:
                return v && value_in(r, v);
        case SELECTOR_NEQ:
        case SELECTOR_NOT_IN:
                return !v || !value_in(r, v);
        }
        return false;
}

bool selector_matches_with(const Selector *s, const char *(*label)(const char *key, void *userdata),
                           void *userdata) {
        if (!s)
                return true;
        for (size_t i = 0; i < s->n; i++)
                if (!requirement_matches(&s->reqs[i], label(s->reqs[i].key, userdata)))
                        return false;
        return true;
}

static const char *json_label(const char *key, void *userdata) {
        return json_string_value(json_object_get(userdata, key));
}

bool selector_matches(const Selector *s, const json_t *labels) {
        return selector_matches_with(s, json_label, (void *) labels);
}

bool selector_equality(const Selector *s, size_t i, const char **ret_key, const char **ret_value) {
        for (size_t k = 0; s && k < s->n; k++) {
                const Requirement *r = &s->reqs[k];
                bool single = r->op == SELECTOR_EQ || (r->op == SELECTOR_IN && r->n_values == 1);
                if (!single)
                        continue;
                if (i-- == 0) {
                        *ret_key = r->key;
                        *ret_value = r->values[0];
                        return true;
                }
        }
        return false;
}

Selector *selector_from_labels(const json_t *match_labels) {
        Selector *s = xcalloc(1, sizeof *s);
        const char *key;
        json_t *value;

        s->reqs = xcalloc(json_object_size(match_labels) + 1, sizeof *s->reqs);
        json_object_foreach((json_t *) match_labels, key, value) {
                if (!json_is_string(value))
                        continue;
                Requirement *r = &s->reqs[s->n++];
                r->key = xstrdup(key);
                r->op = SELECTOR_EQ;
                r->values = xcalloc(1, sizeof *r->values);
                r->values[0] = xstrdup(json_string_value(value));
                r->n_values = 1;
        }
        return s;
}
