/* egress-curl.c: libcurl asks us for every socket it opens (the first
 * connection, each redirect, a proxy), with the address already resolved:
 * the place to refuse one before a packet leaves. */
#include <curl/curl.h>
#include <string.h>

#include "egress/egress.h"

static curl_socket_t open_socket(void *userdata, curlsocktype purpose, struct curl_sockaddr *address) {
        EgressCurl *state = userdata;
        char msg[sizeof state->message];

        (void) purpose;
        if (egress_check(NULL, &address->addr, msg, sizeof msg) < 0) {
                if (!state->refused)
                        memcpy(state->message, msg, sizeof msg);
                state->refused = true;
                return CURL_SOCKET_BAD;
        }
        int fd = socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
        return fd < 0 ? CURL_SOCKET_BAD : fd;
}

void egress_curl_setup(void *c, EgressCurl *state) {
        *state = (EgressCurl){0};
        curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket);
        curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, state);
}
