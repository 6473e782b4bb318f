/* textdiff: a unified diff of two texts, by line, with three lines of
 * context, as `diff -u` prints it.
 *
 * The line diff is a longest-common-subsequence table over the lines left
 * once the common head and tail are cut off: manifests are small, and the
 * table is bounded so that a huge input degrades to "all replaced" rather
 * than to a huge allocation. */
#include <string.h>
#include <sys/param.h>

#include "rprctl.h"

#define DIFF_CONTEXT 3
#define DIFF_MAX_CELLS (16u * 1024 * 1024)

typedef struct Lines {
        char **v;
        size_t n;
} Lines;

typedef struct Op {
        char type;     /* ' ', '-', '+' */
        size_t ai, bi; /* lines of a and b consumed before this one */
        const char *text;
} Op;

static void lines_split(const char *text, Lines *ret) {
        *ret = (Lines){0};
        for (const char *p = text; p && *p;) {
                const char *nl = strchr(p, '\n');
                size_t n = nl ? (size_t) (nl - p) : strlen(p);
                ret->v = xrealloc(ret->v, (ret->n + 1) * sizeof(char *));
                ret->v[ret->n++] = xstrndup(p, n);
                p = nl ? nl + 1 : p + n;
        }
}

static void lines_free(Lines *l) {
        for (size_t i = 0; i < l->n; i++)
                free(l->v[i]);
        free(l->v);
}

static void push(Op **ops, size_t *n, char type, size_t ai, size_t bi, const char *text) {
        *ops = xrealloc(*ops, (*n + 1) * sizeof(Op));
        (*ops)[(*n)++] = (Op){type, ai, bi, text};
}

/* The edit script turning a into b. */
static size_t edit_script(const Lines *a, const Lines *b, Op **ret) {
        size_t head = 0, tail = 0, n_ops = 0;
        Op *ops = NULL;

        while (head < a->n && head < b->n && STREQ(a->v[head], b->v[head]))
                head++;
        while (tail < a->n - head && tail < b->n - head && STREQ(a->v[a->n - 1 - tail], b->v[b->n - 1 - tail]))
                tail++;

        size_t n = a->n - head - tail, m = b->n - head - tail;
        uint32_t *L = NULL;
        if (n > 0 && m > 0 && (n + 1) * (m + 1) <= DIFF_MAX_CELLS) {
                /* L[i][j]: LCS length of a[head+i..] and b[head+j..] in the middle. */
                L = xcalloc((n + 1) * (m + 1), sizeof(uint32_t));
                for (size_t i = n; i-- > 0;)
                        for (size_t j = m; j-- > 0;)
                                L[i * (m + 1) + j] = STREQ(a->v[head + i], b->v[head + j])
                                                             ? L[(i + 1) * (m + 1) + j + 1] + 1
                                                             : MAX(L[(i + 1) * (m + 1) + j], L[i * (m + 1) + j + 1]);
        }

        for (size_t i = 0; i < head; i++)
                push(&ops, &n_ops, ' ', i, i, a->v[i]);
        size_t i = 0, j = 0;
        while (i < n || j < m) {
                if (L && i < n && j < m && STREQ(a->v[head + i], b->v[head + j])) {
                        push(&ops, &n_ops, ' ', head + i, head + j, a->v[head + i]);
                        i++, j++;
                } else if (i < n && (j == m || !L || L[(i + 1) * (m + 1) + j] >= L[i * (m + 1) + j + 1])) {
                        push(&ops, &n_ops, '-', head + i, head + j, a->v[head + i]);
                        i++;
                } else {
                        push(&ops, &n_ops, '+', head + i, head + j, b->v[head + j]);
                        j++;
                }
        }
        for (size_t k = 0; k < tail; k++)
                push(&ops, &n_ops, ' ', head + n + k, head + m + k, a->v[head + n + k]);
        free(L);
        *ret = ops;
        return n_ops;
}

static void range(Buf *out, char sign, size_t start, size_t count) {
        /* An empty range names the line before it, as diff -u does. */
        if (count == 1)
                buf_printf(out, "%c%zu", sign, start + 1);
        else
                buf_printf(out, "%c%zu,%zu", sign, count == 0 ? start : start + 1, count);
}

static void hunk(Buf *out, const Op *ops, size_t from, size_t to) {
        size_t ac = 0, bc = 0;

        for (size_t k = from; k < to; k++) {
                ac += ops[k].type != '+';
                bc += ops[k].type != '-';
        }
        buf_puts(out, "@@ ");
        range(out, '-', ops[from].ai, ac);
        buf_puts(out, " ");
        range(out, '+', ops[from].bi, bc);
        buf_puts(out, " @@\n");
        for (size_t k = from; k < to; k++)
                buf_printf(out, "%c%s\n", ops[k].type, ops[k].text);
}

char *text_diff(const char *a, const char *b, const char *label_a, const char *label_b) {
        Lines la, lb;
        Op *ops = NULL;
        Buf out = BUF_INIT;

        lines_split(a, &la);
        lines_split(b, &lb);
        size_t n = edit_script(&la, &lb, &ops);

        for (size_t k = 0; k < n;) {
                if (ops[k].type == ' ') {
                        k++;
                        continue;
                }
                /* A hunk: this change and every one within 2*context equal lines of the last. */
                size_t last = k;
                for (size_t e = k + 1; e < n && e <= last + 2 * DIFF_CONTEXT + 1; e++)
                        if (ops[e].type != ' ')
                                last = e;
                size_t from = k > DIFF_CONTEXT ? k - DIFF_CONTEXT : 0;
                size_t to = MIN(n, last + 1 + DIFF_CONTEXT);
                if (out.len == 0)
                        buf_printf(&out, "--- %s\n+++ %s\n", label_a, label_b);
                hunk(&out, ops, from, to);
                k = last + 1;
        }
        free(ops);
        lines_free(&la);
        lines_free(&lb);
        return out.len > 0 ? buf_steal(&out) : (buf_free(&out), NULL);
}
