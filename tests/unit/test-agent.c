/* Unit tests for pkg/agent: the protocol's rules without HTTP — offers,
 * two-phase accept, output by offset (each byte once, gaps refused), the
 * checksum at the end, a job lost by its agent, cancels, versions, and
 * that one agent cannot touch another's job. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/agent.h"

typedef struct Sink {
        Buf out, err;
        int ends;
        AgentJobResult result;
        bool refuse;
} Sink;

static int sink_output(void *userdata, AgentStream stream, const char *data, size_t n) {
        Sink *s = userdata;

        if (s->refuse)
                return -EAGAIN;
        return buf_append(stream == AGENT_STDERR ? &s->err : &s->out, data, n);
}

static void sink_done(void *userdata, const AgentJobResult *r) {
        Sink *s = userdata;

        s->ends++;
        s->result = *r;
}

static json_t *hb(const char *version, json_t *jobs) {
        return json_pack("{s:s, s:i, s:i, s:o}", "version", version, "wait", 0, "pollSeconds", 1, "jobs",
                         jobs ? jobs : json_array());
}

/* The end of a job of one stream. */
static int finish(Agents *a, const char *server, const char *id, int exit_code, const char *signal,
                  uint64_t bytes, const char *sha256, uint64_t *ret_offset) {
        AgentFinish f = {.exit_code = exit_code, .signal = signal, .bytes = {bytes}, .sha256 = {sha256}};
        uint64_t offsets[AGENT_STREAMS] = {0};
        int r = agent_job_finish(a, "default", server, id, &f, offsets);

        *ret_offset = offsets[AGENT_STDOUT];
        return r;
}

static int output(Agents *a, const char *server, const char *id, uint64_t offset, const char *data, size_t n,
                  uint64_t *ret_offset) {
        return agent_job_output(a, "default", server, id, AGENT_STDOUT, offset, data, n, ret_offset);
}

/* Submits a job for ns/server and returns its id through a poll's offer. */
static void submit(Agents *a, const char *server, Sink *s, char id[static AGENT_JOB_ID_LEN + 1]) {
        AgentJobSpec spec = {.command = "echo hi"};
        AgentJobSink sink = {sink_output, sink_done, s};

        assert_int_equal(agent_job_submit(a, "default", server, &spec, &sink, id), 0);
}

static json_t *poll_of(Agents *a, const char *server, json_t *heartbeat) {
        json_t *answer = NULL;
        uint64_t wait;

        (void) agent_poll(a, "default", server, heartbeat, &answer, &wait);
        json_decref(heartbeat);
        return answer;
}

static void test_offer_accept_output_finish(void **state) {
        (void) state;
        Agents *a = agents_new();
        Sink s = {0};
        char id[AGENT_JOB_ID_LEN + 1], hex[65];
        uint64_t lease, off = 0;

        submit(a, "edge", &s, id);
        json_t *ans = poll_of(a, "edge", hb("0.1.0", NULL));
        assert_int_equal(json_array_size(json_object_get(ans, "offers")), 1);
        assert_string_equal(json_str_at(json_array_get(json_object_get(ans, "offers"), 0), "id"), id);
        json_decref(ans);

        assert_int_equal(agent_job_accept(a, "default", "edge", id, &lease), 0);
        assert_true(lease > 0);
        assert_int_equal(output(a, "edge", id, 0, "hello ", 6, &off), 0);
        assert_int_equal(off, 6);
        /* Sent again: taken once. Overlapping: only the new part. */
        assert_int_equal(output(a, "edge", id, 0, "hello ", 6, &off), 0);
        assert_int_equal(output(a, "edge", id, 3, "lo world", 8, &off), 0);
        assert_int_equal(off, 11);
        /* A gap is refused with what rprd holds. */
        assert_int_equal(output(a, "edge", id, 20, "x", 1, &off), -ERANGE);
        assert_int_equal(off, 11);
        /* A sink that cannot take it now: not counted. */
        s.refuse = true;
        assert_int_equal(output(a, "edge", id, 11, "!", 1, &off), -EAGAIN);
        assert_int_equal(off, 11);
        s.refuse = false;
        assert_string_equal(s.out.data, "hello world");

        /* More bytes than rprd holds: send them first. */
        sha256_hex("hello world", 11, hex);
        assert_int_equal(finish(a, "edge", id, 0, "", 12, hex, &off), -EAGAIN);
        assert_int_equal(s.ends, 0);
        assert_int_equal(finish(a, "edge", id, 3, "", 11, hex, &off), 0);
        assert_int_equal(s.ends, 1);
        assert_int_equal(s.result.state, AGENT_JOB_FAILED);
        assert_int_equal(s.result.exit_code, 3);
        assert_int_equal(s.result.bytes, 11);
        /* Gone now. */
        assert_int_equal(agent_job_accept(a, "default", "edge", id, &lease), -ENOENT);
        buf_free(&s.out);
        agents_free(a);
}

static void test_wrong_checksum_fails_the_job(void **state) {
        (void) state;
        Agents *a = agents_new();
        Sink s = {0};
        char id[AGENT_JOB_ID_LEN + 1];
        uint64_t lease, off;

        submit(a, "edge", &s, id);
        json_decref(poll_of(a, "edge", hb("0.1.0", NULL)));
        assert_int_equal(agent_job_accept(a, "default", "edge", id, &lease), 0);
        assert_int_equal(output(a, "edge", id, 0, "abc", 3, &off), 0);
        char zeros[65];
        memset(zeros, '0', 64);
        zeros[64] = 0;
        assert_int_equal(finish(a, "edge", id, 0, "", 3, zeros, &off), -EBADMSG);
        assert_int_equal(s.ends, 1);
        assert_int_equal(s.result.state, AGENT_JOB_FAILED);
        assert_string_equal(s.result.reason, "OutputCorrupt");
        buf_free(&s.out);
        agents_free(a);
}

static void test_another_agents_job_is_unknown(void **state) {
        (void) state;
        Agents *a = agents_new();
        Sink s = {0};
        char id[AGENT_JOB_ID_LEN + 1];
        uint64_t lease, off;

        submit(a, "b", &s, id);
        json_decref(poll_of(a, "b", hb("0.1.0", NULL)));
        json_decref(poll_of(a, "a", hb("0.1.0", NULL)));
        assert_int_equal(agent_job_accept(a, "default", "a", id, &lease), -ENOENT);
        assert_int_equal(agent_job_accept(a, "default", "b", id, &lease), 0);
        assert_int_equal(output(a, "a", id, 0, "x", 1, &off), -ENOENT);
        assert_int_equal(finish(a, "a", id, 0, "", 0, "", &off), -ENOENT);
        /* A poll of a listing b's job: dropped, not acknowledged. */
        json_t *ans = poll_of(a, "a", hb("0.1.0", json_pack("[{s:s, s:i}]", "id", id, "offset", 0)));
        assert_int_equal(json_array_size(json_object_get(ans, "drop")), 1);
        assert_null(json_object_get(json_object_get(ans, "ack"), id));
        json_decref(ans);
        assert_int_equal(s.ends, 0);
        agents_free(a);
        assert_int_equal(s.ends, 1); /* rprd stopping: Interrupted */
        assert_int_equal(s.result.state, AGENT_JOB_INTERRUPTED);
}

/* Over AGENT_INPUT_MAX the input is no longer inline: the offer gives its
 * size and checksum, and only the job's agent may read it, whole. */
static void test_a_large_input_is_offered_for_download_to_its_agent_only(void **state) {
        (void) state;
        Agents *a = agents_new();
        Sink s = {0};
        char id[AGENT_JOB_ID_LEN + 1], sha[65];
        size_t len = AGENT_INPUT_MAX + 3;
        unsigned char *input = malloc(len);
        uint64_t bytes = 0;
        int fd = -1;

        for (size_t i = 0; i < len; i++)
                input[i] = (unsigned char) (i * 7 + i / 251);
        sha256_hex(input, len, sha);
        AgentJobSpec spec = {.command = "cat >f", .input = input, .input_len = len};
        AgentJobSink sink = {sink_output, sink_done, &s};
        assert_int_equal(agent_job_submit(a, "default", "b", &spec, &sink, id), 0);
        json_t *ans = poll_of(a, "b", hb("0.1.0", NULL));
        json_t *offer = json_array_get(json_object_get(ans, "offers"), 0);
        assert_null(json_object_get(offer, "input"));
        assert_int_equal(json_integer_value(json_object_get(offer, "inputBytes")), len);
        assert_string_equal(json_string_value(json_object_get(offer, "inputSha256")), sha);
        json_decref(ans);

        json_decref(poll_of(a, "a", hb("0.1.0", NULL)));
        assert_int_equal(agent_job_input(a, "default", "a", id, &fd, &bytes), -ENOENT);
        assert_int_equal(agent_job_input(a, "default", "b", id, &fd, &bytes), 0);
        assert_int_equal(bytes, len);
        unsigned char *copy = malloc(len);
        assert_int_equal(pread(fd, copy, len, 0), (ssize_t) len);
        assert_memory_equal(copy, input, len);
        close(fd);
        agent_job_input_done(a, "default", "b", id);
        agent_job_input_done(a, "default", "a", id); /* not its job: nothing */
        free(copy);
        free(input);
        agents_free(a);
}

static void test_a_job_the_agent_no_longer_lists_is_interrupted(void **state) {
        (void) state;
        Agents *a = agents_new();
        Sink s = {0};
        char id[AGENT_JOB_ID_LEN + 1];
        uint64_t lease;

        submit(a, "edge", &s, id);
        json_decref(poll_of(a, "edge", hb("0.1.0", NULL)));
        assert_int_equal(agent_job_accept(a, "default", "edge", id, &lease), 0);
        json_t *ans = poll_of(a, "edge", hb("0.1.0", json_pack("[{s:s, s:i}]", "id", id, "offset", 0)));
        assert_int_equal(json_integer_value(json_object_get(json_object_get(ans, "ack"), id)), 0);
        json_decref(ans);
        assert_int_equal(s.ends, 0);
        json_decref(poll_of(a, "edge", hb("0.1.0", NULL))); /* restarted, holds nothing */
        assert_int_equal(s.ends, 1);
        assert_int_equal(s.result.state, AGENT_JOB_INTERRUPTED);
        agents_free(a);
}

static void test_cancel_queued_at_once_and_running_through_the_poll(void **state) {
        (void) state;
        Agents *a = agents_new();
        Sink s1 = {0}, s2 = {0};
        char id1[AGENT_JOB_ID_LEN + 1], id2[AGENT_JOB_ID_LEN + 1];
        uint64_t lease, off;

        submit(a, "edge", &s1, id1);
        agent_job_cancel(a, id1);
        assert_int_equal(s1.ends, 1);
        assert_int_equal(s1.result.state, AGENT_JOB_CANCELED);

        submit(a, "edge", &s2, id2);
        json_decref(poll_of(a, "edge", hb("0.1.0", NULL)));
        assert_int_equal(agent_job_accept(a, "default", "edge", id2, &lease), 0);
        agent_job_cancel(a, id2);
        assert_int_equal(s2.ends, 0);
        json_t *ans = NULL;
        assert_int_equal(agent_poll_again(a, "default", "edge", &ans), 1);
        assert_string_equal(json_string_value(json_array_get(json_object_get(ans, "cancel"), 0)), id2);
        json_decref(ans);
        /* Told once: the next answer may be held. */
        assert_int_equal(agent_poll_again(a, "default", "edge", &ans), 0);
        json_decref(ans);
        char hex[65];
        sha256_hex("", 0, hex);
        assert_int_equal(finish(a, "edge", id2, -1, "TERM", 0, hex, &off), 0);
        assert_int_equal(s2.result.state, AGENT_JOB_CANCELED);
        agents_free(a);
}

static void test_stderr_apart_for_an_agent_that_offers_two_streams(void **state) {
        (void) state;
        Agents *a = agents_new();
        Sink s = {0}, old = {0};
        char id[AGENT_JOB_ID_LEN + 1], id_old[AGENT_JOB_ID_LEN + 1], out_hex[65], err_hex[65];
        uint64_t lease, off, offsets[AGENT_STREAMS];

        /* An agent of one stream: offers say nothing, stderr is refused. */
        submit(a, "old", &old, id_old);
        json_t *ans = poll_of(a, "old", hb("0.1.0", NULL));
        assert_null(json_object_get(json_array_get(json_object_get(ans, "offers"), 0), "streams"));
        json_decref(ans);
        assert_int_equal(agent_job_accept(a, "default", "old", id_old, &lease), 0);
        assert_int_equal(agent_job_output(a, "default", "old", id_old, AGENT_STDERR, 0, "e", 1, &off),
                         -EINVAL);

        submit(a, "edge", &s, id);
        json_t *h = hb("0.1.0", NULL);
        json_object_set_new(h, "streams", json_integer(2));
        ans = poll_of(a, "edge", h);
        assert_int_equal(json_int_at(json_array_get(json_object_get(ans, "offers"), 0), "streams", 0), 2);
        json_decref(ans);
        assert_int_equal(agent_job_accept(a, "default", "edge", id, &lease), 0);
        assert_int_equal(agent_job_output(a, "default", "edge", id, AGENT_STDOUT, 0, "out", 3, &off), 0);
        assert_int_equal(agent_job_output(a, "default", "edge", id, AGENT_STDERR, 0, "oops", 4, &off), 0);
        assert_int_equal(off, 4);
        /* Each stream has its own offsets: resent, taken once. */
        assert_int_equal(agent_job_output(a, "default", "edge", id, AGENT_STDERR, 2, "ps!", 3, &off), 0);
        assert_int_equal(off, 5);
        assert_string_equal(s.out.data, "out");
        assert_string_equal(s.err.data, "oops!");
        h = hb("0.1.0", json_pack("[{s:s, s:i, s:i}]", "id", id, "offset", 0, "errOffset", 0));
        json_object_set_new(h, "streams", json_integer(2));
        ans = poll_of(a, "edge", h);
        assert_int_equal(json_integer_value(json_object_get(json_object_get(ans, "ack"), id)), 3);
        assert_int_equal(json_integer_value(json_object_get(json_object_get(ans, "ackErr"), id)), 5);
        json_decref(ans);

        sha256_hex("out", 3, out_hex);
        sha256_hex("oops!", 5, err_hex);
        AgentFinish f = {.exit_code = 0, .signal = "", .bytes = {3, 6}, .sha256 = {out_hex, err_hex}};
        assert_int_equal(agent_job_finish(a, "default", "edge", id, &f, offsets), -EAGAIN);
        assert_int_equal(offsets[AGENT_STDERR], 5);
        f.bytes[1] = 5;
        f.sha256[1] = out_hex;
        assert_int_equal(agent_job_finish(a, "default", "edge", id, &f, offsets), -EBADMSG);
        assert_int_equal(s.ends, 1);
        assert_string_equal(s.result.reason, "OutputCorrupt");

        /* Both right: Succeeded, the bytes of both counted. */
        Sink s2 = {0};
        submit(a, "edge", &s2, id);
        h = hb("0.1.0", NULL);
        json_object_set_new(h, "streams", json_integer(2));
        json_decref(poll_of(a, "edge", h));
        assert_int_equal(agent_job_accept(a, "default", "edge", id, &lease), 0);
        assert_int_equal(agent_job_output(a, "default", "edge", id, AGENT_STDOUT, 0, "out", 3, &off), 0);
        assert_int_equal(agent_job_output(a, "default", "edge", id, AGENT_STDERR, 0, "oops!", 5, &off), 0);
        f.sha256[1] = err_hex;
        assert_int_equal(agent_job_finish(a, "default", "edge", id, &f, offsets), 0);
        assert_int_equal(s2.result.state, AGENT_JOB_SUCCEEDED);
        assert_int_equal(s2.result.bytes, 8);
        buf_free(&s.out);
        buf_free(&s.err);
        buf_free(&s2.out);
        buf_free(&s2.err);
        agents_free(a);
        buf_free(&old.out);
}

static void test_a_job_taken_back_after_a_restart(void **state) {
        (void) state;
        Agents *a = agents_new();
        Sink s = {0}, gone = {0};
        const char *id = "AbCdEfGhIjKlMnOpQrStUvWx", *lost = "ZyXwVuTsRqPoNmLkJiHgFeDc";
        char hex[65];
        uint64_t off;
        AgentJobSink sink = {sink_output, sink_done, &s}, sink_gone = {sink_output, sink_done, &gone};

        /* Right after the restart, a job no one has taken back yet is left
         * alone: neither dropped nor fed. */
        json_t *ans = poll_of(a, "edge", hb("0.1.0", json_pack("[{s:s, s:i}]", "id", id, "offset", 9)));
        assert_int_equal(json_array_size(json_object_get(ans, "drop")), 0);
        json_decref(ans);
        assert_int_equal(output(a, "edge", id, 0, "x", 1, &off), -EAGAIN);

        assert_int_equal(agent_job_adopt(a, "default", "edge", id, 60 * USEC_PER_SEC, &sink), 0);
        assert_int_equal(agent_job_adopt(a, "default", "edge", id, 60 * USEC_PER_SEC, &sink), -EEXIST);
        assert_int_equal(agent_job_adopt(a, "default", "edge", lost, 0, &sink_gone), 0);
        /* Output or an end sent before the agent's next poll lists the job:
         * "not now", never "unknown" (which would make the agent drop it). */
        assert_int_equal(output(a, "edge", id, 0, "x", 1, &off), -EAGAIN);
        sha256_hex("", 0, hex);
        assert_int_equal(finish(a, "edge", id, 0, "", 0, hex, &off), -EBUSY);
        assert_int_equal(s.ends, 0);
        /* Never offered again; listed, it runs on from 0: all of it comes again. */
        ans = poll_of(a, "edge", hb("0.1.0", json_pack("[{s:s, s:i}]", "id", id, "offset", 9)));
        assert_int_equal(json_array_size(json_object_get(ans, "offers")), 0);
        assert_int_equal(json_integer_value(json_object_get(json_object_get(ans, "ack"), id)), 0);
        json_decref(ans);
        /* The other was not listed: the agent no longer holds it. */
        assert_int_equal(gone.ends, 1);
        assert_int_equal(gone.result.state, AGENT_JOB_INTERRUPTED);
        assert_int_equal(output(a, "edge", id, 0, "whole", 5, &off), 0);
        sha256_hex("whole", 5, hex);
        assert_int_equal(finish(a, "edge", id, 0, "", 5, hex, &off), 0);
        assert_int_equal(s.result.state, AGENT_JOB_SUCCEEDED);
        assert_string_equal(s.out.data, "whole");

        /* An agent that does not come back in time: Interrupted. */
        Sink late = {0};
        AgentJobSink sink_late = {sink_output, sink_done, &late};
        assert_int_equal(agent_job_adopt(a, "default", "far", lost, 0, &sink_late), 0);
        agents_tick(a);
        assert_int_equal(late.ends, 1);
        assert_int_equal(late.result.state, AGENT_JOB_INTERRUPTED);
        buf_free(&s.out);
        agents_free(a);
}

static void test_capacity_bounds_the_offers(void **state) {
        (void) state;
        Agents *a = agents_new();
        Sink s[3] = {0};
        char id[3][AGENT_JOB_ID_LEN + 1];

        for (int i = 0; i < 3; i++)
                submit(a, "edge", &s[i], id[i]);
        json_t *h = hb("0.1.0", NULL);
        json_object_set_new(h, "capacity", json_integer(2));
        json_t *ans = poll_of(a, "edge", h);
        assert_int_equal(json_array_size(json_object_get(ans, "offers")), 2);
        json_decref(ans);
        agents_free(a);
        for (int i = 0; i < 3; i++)
                assert_int_equal(s[i].ends, 1);
}

static void test_versions(void **state) {
        (void) state;
        assert_true(agent_version_ok(AGENT_VERSION_MIN));
        assert_true(agent_version_ok("0.1.1"));
        assert_true(agent_version_ok("1.0.0"));
        assert_true(agent_version_ok("0.10.0"));
        assert_false(agent_version_ok("0.0.9"));
        assert_false(agent_version_ok(NULL));
        assert_false(agent_version_ok("banana"));
        assert_false(agent_version_ok("0.1"));
}

static void test_presence(void **state) {
        (void) state;
        Agents *a = agents_new();
        AgentPresence p;

        agent_presence(a, "default", "edge", &p);
        assert_false(p.online);
        assert_int_equal(p.last_seen_usec, 0);
        json_t *h = hb("0.1.0", NULL);
        json_object_set_new(h, "metrics", json_pack("{s:f, s:s}", "load1", 0.5, "evil", "x"));
        json_decref(poll_of(a, "edge", h));
        agent_presence(a, "default", "edge", &p);
        assert_true(p.online);
        assert_string_equal(p.version, "0.1.0");
        assert_non_null(json_object_get(p.metrics, "load1"));
        assert_null(json_object_get(p.metrics, "evil"));
        json_decref(p.metrics);
        agents_free(a);
}

static void test_frames(void **state) {
        unsigned char buf[16] = {0};
        size_t n = 0;

        (void) state;
        /* Fewer than the head's 4 bytes: more needed, nothing known. */
        assert_int_equal(agent_frame_parse(buf, 3, 100, &n), 0);
        agent_frame_head(5, buf);
        assert_memory_equal(buf, "\0\0\0\5", 4);
        memcpy(buf + 4, "{}   ", 5);
        assert_int_equal(agent_frame_parse(buf, 8, 100, &n), 0);
        assert_int_equal(n, 5);
        assert_int_equal(agent_frame_parse(buf, 9, 100, &n), 1);
        assert_int_equal(n, 5);
        /* Bytes after the frame are the next one's. */
        assert_int_equal(agent_frame_parse(buf, 12, 100, &n), 1);
        assert_int_equal(agent_frame_parse(buf, 9, 4, &n), -EMSGSIZE);
        agent_frame_head(0, buf);
        assert_int_equal(agent_frame_parse(buf, 4, 100, &n), -EBADMSG);
        /* The largest length a head can say is refused before any byte of it. */
        memcpy(buf, "\xff\xff\xff\xff", 4);
        assert_int_equal(agent_frame_parse(buf, 4, 65536, &n), -EMSGSIZE);
        assert_int_equal(n, 0xffffffffu);
        agent_frame_head(0x01020304, buf);
        assert_memory_equal(buf, "\x01\x02\x03\x04", 4);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_offer_accept_output_finish),
                cmocka_unit_test(test_wrong_checksum_fails_the_job),
                cmocka_unit_test(test_another_agents_job_is_unknown),
                cmocka_unit_test(test_a_large_input_is_offered_for_download_to_its_agent_only),
                cmocka_unit_test(test_a_job_the_agent_no_longer_lists_is_interrupted),
                cmocka_unit_test(test_cancel_queued_at_once_and_running_through_the_poll),
                cmocka_unit_test(test_stderr_apart_for_an_agent_that_offers_two_streams),
                cmocka_unit_test(test_a_job_taken_back_after_a_restart),
                cmocka_unit_test(test_capacity_bounds_the_offers),
                cmocka_unit_test(test_versions),
                cmocka_unit_test(test_presence),
                cmocka_unit_test(test_frames),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
