/* egress.c: the allow-list itself — parsing CIDR networks, matching an
 * address, and the one process-wide policy every connector consults.
 *
 * Networks are kept as 16-byte addresses with their family and prefix; an
 * IPv4-mapped IPv6 address is matched as the IPv4 address it carries, so
 * that ::ffff:10.0.0.5 cannot slip past a list that leaves 10.0.0.0/8 out. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "egress/egress.h"

#define MAX_NETWORKS 256
#define SHOWN_LIST_MAX 96 /* of the list in a refusal message */

typedef struct Network {
        int family; /* AF_INET or AF_INET6 */
        unsigned prefix;
        uint8_t addr[16]; /* network order; 4 bytes for AF_INET */
} Network;

struct EgressList {
        size_t n;
        Network nets[MAX_NETWORKS];
        char *text;
};

static EgressList *policy;

/* ---- parsing ------------------------------------------------------------------ */

static void mask_host_bits(Network *net) {
        size_t len = net->family == AF_INET ? 4 : 16;

        for (size_t i = 0; i < len; i++) {
                unsigned keep = net->prefix > i * 8 ? net->prefix - i * 8 : 0;
                if (keep < 8)
                        net->addr[i] &= (uint8_t) (0xff << (8 - keep));
        }
}

static int parse_prefix(const char *s, unsigned max, unsigned *ret) {
        unsigned n = 0;

        if (!*s || strlen(s) > 3)
                return -EINVAL;
        for (; *s; s++) {
                if (*s < '0' || *s > '9')
                        return -EINVAL;
                n = n * 10 + (unsigned) (*s - '0');
        }
        if (n > max)
                return -ERANGE;
        *ret = n;
        return 0;
}

static int parse_network(const char *entry, Network *ret, char *err, size_t errsize) {
        char addr[INET6_ADDRSTRLEN + 8];
        const char *slash = strchr(entry, '/');
        size_t alen = slash ? (size_t) (slash - entry) : strlen(entry);
        Network net = {0};

        if (alen == 0 || alen >= sizeof addr)
                goto bad;
        memcpy(addr, entry, alen);
        addr[alen] = 0;
        if (inet_pton(AF_INET, addr, net.addr) == 1)
                net.family = AF_INET;
        else if (inet_pton(AF_INET6, addr, net.addr) == 1)
                net.family = AF_INET6;
        else
                goto bad;
        unsigned max = net.family == AF_INET ? 32 : 128;
        net.prefix = max;
        if (slash) {
                int r = parse_prefix(slash + 1, max, &net.prefix);
                if (r == -ERANGE) {
                        snprintf(err, errsize, "--allow-networks: \"%s\": the prefix length must be 0..%u for an %s network",
                                 entry, max, net.family == AF_INET ? "IPv4" : "IPv6");
                        return -EINVAL;
                }
                if (r < 0)
                        goto bad;
        }
        mask_host_bits(&net);
        *ret = net;
        return 0;
bad:
        snprintf(err, errsize,
                 "--allow-networks: \"%s\" is not a network (want an address with a prefix length, such as "
                 "127.0.0.0/8 or ::1/128)",
                 entry);
        return -EINVAL;
}

static void append_text(Buf *b, const Network *net) {
        char a[INET6_ADDRSTRLEN];

        inet_ntop(net->family, net->addr, a, sizeof a);
        buf_printf(b, "%s%s/%u", b->len ? ", " : "", a, net->prefix);
}

int egress_list_parse(const char *text, EgressList **ret, char *err, size_t errsize) {
        EgressList *l = xcalloc(1, sizeof *l);
        Buf shown = {0};
        int r = 0;

        for (const char *p = text; *p && r >= 0;) {
                p += strspn(p, ", ");
                size_t len = strcspn(p, ", ");
                if (len == 0)
                        break;
                _cleanup_free_ char *entry = xstrndup(p, len);
                p += len;
                if (l->n == MAX_NETWORKS) {
                        snprintf(err, errsize, "--allow-networks: at most %d networks", MAX_NETWORKS);
                        r = -EINVAL;
                        break;
                }
                r = parse_network(entry, &l->nets[l->n], err, errsize);
                if (r >= 0)
                        append_text(&shown, &l->nets[l->n++]);
        }
        if (r >= 0 && l->n == 0) {
                snprintf(err, errsize, "--allow-networks: \"%s\" names no network (want e.g. 127.0.0.0/8,::1/128)",
                         text);
                r = -EINVAL;
        }
        if (r < 0) {
                buf_free(&shown);
                egress_list_free(l);
                return r;
        }
        l->text = buf_steal(&shown);
        *ret = l;
        return 0;
}

EgressList *egress_list_free(EgressList *l) {
        if (l) {
                free(l->text);
                free(l);
        }
        return NULL;
}

const char *egress_list_text(const EgressList *l) {
        return l->text;
}

/* ---- matching ------------------------------------------------------------------ */

static bool network_has(const Network *net, int family, const uint8_t *addr) {
        unsigned bits = net->prefix;

        if (net->family != family)
                return false;
        if (memcmp(net->addr, addr, bits / 8) != 0)
                return false;
        if (bits % 8 == 0)
                return true;
        uint8_t mask = (uint8_t) (0xff << (8 - bits % 8));
        return (addr[bits / 8] & mask) == net->addr[bits / 8];
}

/* The family and address bytes of sa, an IPv4-mapped IPv6 address as IPv4. */
static bool address_of(const struct sockaddr *sa, int *ret_family, const uint8_t **ret_addr) {
        if (sa->sa_family == AF_INET) {
                *ret_family = AF_INET;
                *ret_addr = (const uint8_t *) &((const struct sockaddr_in *) sa)->sin_addr;
                return true;
        }
        if (sa->sa_family == AF_INET6) {
                const struct in6_addr *a6 = &((const struct sockaddr_in6 *) sa)->sin6_addr;
                *ret_family = IN6_IS_ADDR_V4MAPPED(a6) ? AF_INET : AF_INET6;
                *ret_addr = *ret_family == AF_INET ? a6->s6_addr + 12 : a6->s6_addr;
                return true;
        }
        return false;
}

bool egress_list_allows(const EgressList *l, const struct sockaddr *sa) {
        const uint8_t *addr;
        int family;

        if (!address_of(sa, &family, &addr))
                return false; /* not an internet socket: nothing rprd connects out with */
        for (size_t i = 0; i < l->n; i++)
                if (network_has(&l->nets[i], family, addr))
                        return true;
        return false;
}

/* ---- the policy ------------------------------------------------------------------ */

void egress_policy_set(EgressList *l) {
        egress_list_free(policy);
        policy = l;
}

void egress_policy_reset(void) {
        policy = egress_list_free(policy);
}

int egress_check(const char *host, const struct sockaddr *sa, char *msg, size_t msgsize) {
        char a[INET6_ADDRSTRLEN] = "?";
        const uint8_t *addr;
        int family;

        if (!policy || egress_list_allows(policy, sa))
                return 0;
        if (address_of(sa, &family, &addr))
                inet_ntop(family, addr, a, sizeof a);
        size_t len = strlen(policy->text);
        bool cut = len > SHOWN_LIST_MAX;
        if (host && *host && !STREQ(host, a))
                snprintf(msg, msgsize, "%.*s%s only: %s (%s) " EGRESS_REFUSED, (int) (cut ? SHOWN_LIST_MAX : len),
                         policy->text, cut ? "..." : "", host, a);
        else
                snprintf(msg, msgsize, "%.*s%s only: %s " EGRESS_REFUSED, (int) (cut ? SHOWN_LIST_MAX : len),
                         policy->text, cut ? "..." : "", a);
        return -EACCES;
}
