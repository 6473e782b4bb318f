/* Unit tests for pkg/egress: CIDR lists parsed (IPv4, IPv6, bare addresses,
 * host bits, spaces) and refused with a message naming the bad entry;
 * matching at prefix boundaries, IPv4-mapped IPv6 as IPv4, families kept
 * apart; the policy's refusal message; and the two connectors proven
 * against a real listener on 127.0.0.2 that must see no connection when
 * the policy is 127.0.0.1/32 — egress_connect and libcurl — while
 * 127.0.0.1 still connects. */
/* cmocka needs these three first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "egress/egress.h"

static EgressList *parse_ok(const char *text) {
        EgressList *l = NULL;
        char err[256] = "";

        assert_int_equal(egress_list_parse(text, &l, err, sizeof err), 0);
        assert_non_null(l);
        return l;
}

static void parse_bad(const char *text, const char *want_in_message) {
        EgressList *l = NULL;
        char err[256] = "";

        assert_int_equal(egress_list_parse(text, &l, err, sizeof err), -EINVAL);
        assert_null(l);
        if (!strstr(err, want_in_message))
                fail_msg("message for \"%s\" is \"%s\", wanted \"%s\" in it", text, err, want_in_message);
        assert_non_null(strstr(err, "--allow-networks"));
}

static struct sockaddr_storage addr(const char *text) {
        struct sockaddr_storage ss = {0};
        struct sockaddr_in *in = (struct sockaddr_in *) &ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &ss;

        if (inet_pton(AF_INET, text, &in->sin_addr) == 1)
                in->sin_family = AF_INET;
        else {
                assert_int_equal(inet_pton(AF_INET6, text, &in6->sin6_addr), 1);
                in6->sin6_family = AF_INET6;
        }
        return ss;
}

static bool allows(const EgressList *l, const char *a) {
        struct sockaddr_storage ss = addr(a);
        return egress_list_allows(l, (struct sockaddr *) &ss);
}

static void test_parse_and_normalise(void **state) {
        (void) state;
        EgressList *l = parse_ok("127.0.0.0/8,::1/128");
        assert_string_equal(egress_list_text(l), "127.0.0.0/8, ::1/128");
        egress_list_free(l);

        l = parse_ok(" 127.0.0.1/8 , 198.51.100.7, 2001:db8::1/32 ");
        assert_string_equal(egress_list_text(l), "127.0.0.0/8, 198.51.100.7/32, 2001:db8::/32");
        egress_list_free(l);

        l = parse_ok("0.0.0.0/0,::/0");
        assert_string_equal(egress_list_text(l), "0.0.0.0/0, ::/0");
        egress_list_free(l);
}

static void test_parse_refuses_bad_entries(void **state) {
        (void) state;
        parse_bad("", "names no network");
        parse_bad(" , ,", "names no network");
        parse_bad("127.0.0.0/8,localhost", "\"localhost\" is not a network");
        parse_bad("127.0.0.300/8", "\"127.0.0.300/8\" is not a network");
        parse_bad("127.0.0.0/33", "the prefix length must be 0..32 for an IPv4 network");
        parse_bad("::1/129", "the prefix length must be 0..128 for an IPv6 network");
        parse_bad("127.0.0.0/", "is not a network");
        parse_bad("127.0.0.0/8x", "is not a network");
        parse_bad("127.0.0.0/-1", "is not a network");
        parse_bad("/8", "is not a network");
}

static void test_matching(void **state) {
        (void) state;
        EgressList *l = parse_ok("127.0.0.0/8,198.51.100.128/25,2001:db8:1::/48");

        assert_true(allows(l, "127.0.0.1"));
        assert_true(allows(l, "127.255.255.255"));
        assert_false(allows(l, "128.0.0.1"));
        assert_false(allows(l, "198.51.100.127"));
        assert_true(allows(l, "198.51.100.128"));
        assert_true(allows(l, "198.51.100.255"));
        assert_true(allows(l, "2001:db8:1:ffff::1"));
        assert_false(allows(l, "2001:db8:2::1"));
        /* an IPv4-mapped IPv6 address is the IPv4 address it maps */
        assert_true(allows(l, "::ffff:127.0.0.1"));
        assert_false(allows(l, "::ffff:203.0.113.5"));
        /* ::1 is not 127.0.0.1: families are apart */
        assert_false(allows(l, "::1"));
        egress_list_free(l);

        l = parse_ok("203.0.113.9");
        assert_true(allows(l, "203.0.113.9"));
        assert_false(allows(l, "203.0.113.8"));
        egress_list_free(l);

        l = parse_ok("0.0.0.0/0");
        assert_true(allows(l, "203.0.113.8"));
        assert_false(allows(l, "2001:db8::1"));
        egress_list_free(l);
}

static void test_policy_message(void **state) {
        (void) state;
        struct sockaddr_storage ok = addr("127.0.0.1"), no = addr("127.0.0.2");
        char msg[256] = "";

        /* no policy: everything */
        assert_int_equal(egress_check("x", (struct sockaddr *) &no, msg, sizeof msg), 0);

        egress_policy_set(parse_ok("127.0.0.1/32"));
        assert_int_equal(egress_check(NULL, (struct sockaddr *) &ok, msg, sizeof msg), 0);
        assert_int_equal(egress_check(NULL, (struct sockaddr *) &no, msg, sizeof msg), -EACCES);
        assert_string_equal(msg, "127.0.0.1/32 only: 127.0.0.2 refused by --allow-networks");
        assert_int_equal(egress_check("web-1.example.com", (struct sockaddr *) &no, msg, sizeof msg), -EACCES);
        assert_string_equal(msg, "127.0.0.1/32 only: web-1.example.com (127.0.0.2) refused by --allow-networks");
        egress_policy_reset();
}

/* ---- the connectors against a listener that must see nothing ---------------------- */

static int listener_on(const char *ip, unsigned *ret_port) {
        struct sockaddr_in sa = {.sin_family = AF_INET};
        socklen_t len = sizeof sa;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

        assert_true(fd >= 0);
        assert_int_equal(inet_pton(AF_INET, ip, &sa.sin_addr), 1);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof sa), 0);
        assert_int_equal(listen(fd, 16), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &sa, &len), 0);
        *ret_port = ntohs(sa.sin_port);
        return fd;
}

/* How many connections wait on the listener (each accepted and closed). */
static int connections_seen(int lfd) {
        int n = 0, c;

        while ((c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
                close(c);
                n++;
        }
        return n;
}

static void test_connect_refused_before_any_packet(void **state) {
        (void) state;
        unsigned port2, port1;
        int l2 = listener_on("127.0.0.2", &port2), l1 = listener_on("127.0.0.1", &port1);
        char p[16], msg[256] = "";
        int fd = -1;

        egress_policy_set(parse_ok("127.0.0.1/32"));
        snprintf(p, sizeof p, "%u", port2);
        assert_int_equal(egress_connect("127.0.0.2", p, 2 * USEC_PER_SEC, &fd, msg, sizeof msg), -EACCES);
        assert_int_equal(fd, -1);
        assert_string_equal(msg, "127.0.0.1/32 only: 127.0.0.2 refused by --allow-networks");
        assert_int_equal(connections_seen(l2), 0);

        snprintf(p, sizeof p, "%u", port1);
        assert_int_equal(egress_connect("127.0.0.1", p, 2 * USEC_PER_SEC, &fd, msg, sizeof msg), 0);
        assert_true(fd >= 0);
        close(fd);
        usleep(50 * 1000);
        assert_int_equal(connections_seen(l1), 1);

        /* the other errors still name what went wrong */
        assert_int_equal(egress_connect("127.0.0.1", "1", 2 * USEC_PER_SEC, &fd, msg, sizeof msg), -ECONNREFUSED);
        assert_non_null(strstr(msg, "connection to 127.0.0.1 port 1 refused"));
        assert_int_equal(egress_connect("no-such-host.invalid", "22", 2 * USEC_PER_SEC, &fd, msg, sizeof msg), -ENXIO);
        assert_non_null(strstr(msg, "cannot resolve host name no-such-host.invalid"));
        egress_policy_reset();
        close(l1);
        close(l2);
}

static size_t discard(char *p, size_t size, size_t n, void *userdata) {
        (void) p, (void) userdata;
        return size * n;
}

static CURLcode curl_get(const char *url, EgressCurl *st) {
        CURL *c = curl_easy_init();

        assert_non_null(c);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 2000L);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
        egress_curl_setup(c, st);
        CURLcode code = curl_easy_perform(c);
        curl_easy_cleanup(c);
        return code;
}

static void test_curl_refused_before_any_packet(void **state) {
        (void) state;
        unsigned port2, port1;
        int l2 = listener_on("127.0.0.2", &port2), l1 = listener_on("127.0.0.1", &port1);
        char url[64];
        EgressCurl st;

        egress_policy_set(parse_ok("127.0.0.1/32"));
        snprintf(url, sizeof url, "http://127.0.0.2:%u/", port2);
        assert_int_not_equal(curl_get(url, &st), CURLE_OK);
        assert_true(st.refused);
        assert_string_equal(st.message, "127.0.0.1/32 only: 127.0.0.2 refused by --allow-networks");
        assert_int_equal(connections_seen(l2), 0);

        /* allowed: the connection is made (the listener never answers: a timeout) */
        snprintf(url, sizeof url, "http://127.0.0.1:%u/", port1);
        (void) curl_get(url, &st);
        assert_false(st.refused);
        assert_int_equal(connections_seen(l1), 1);
        egress_policy_reset();
        close(l1);
        close(l2);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_and_normalise),
                cmocka_unit_test(test_parse_refuses_bad_entries),
                cmocka_unit_test(test_matching),
                cmocka_unit_test(test_policy_message),
                cmocka_unit_test(test_connect_refused_before_any_packet),
                cmocka_unit_test(test_curl_refused_before_any_packet),
        };
        curl_global_init(CURL_GLOBAL_DEFAULT);
        int r = cmocka_run_group_tests(tests, NULL, NULL);
        curl_global_cleanup();
        return r;
}
