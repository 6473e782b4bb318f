/* agent-frame: the frames of an agent's poll stream (README "Agents"):
 * a 4-byte big-endian length, then that many bytes of JSON. Both ends
 * use these, so that what counts as a frame, and as a bad one, is said
 * once. */
#include "agent/agent.h"

int agent_frame_parse(const void *data, size_t len, size_t max, size_t *ret_len) {
        const unsigned char *p = data;
        uint32_t n;

        if (len < AGENT_FRAME_HEAD)
                return 0;
        n = (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | (uint32_t) p[3];
        *ret_len = n;
        if (n == 0)
                return -EBADMSG;
        if (n > max)
                return -EMSGSIZE;
        return len - AGENT_FRAME_HEAD >= n ? 1 : 0;
}

void agent_frame_head(size_t len, unsigned char ret[static AGENT_FRAME_HEAD]) {
        ret[0] = (unsigned char) (len >> 24);
        ret[1] = (unsigned char) (len >> 16);
        ret[2] = (unsigned char) (len >> 8);
        ret[3] = (unsigned char) len;
}
