/* yaml-emit.c: jansson values out as block-style YAML, for `rprctl get -o
 * yaml`, describe and diff.
 *
 * libyaml's emitter does the quoting; this file only decides, for each
 * string, whether a plain scalar would read back as the same string (under
 * the core schema the parser uses) and asks for quotes when not. Multi-line
 * strings (scripts) come out as literal blocks, the way people write them. */
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#include "yaml/yaml.h"

static int write_to_buf(void *data, unsigned char *text, size_t size) {
        return buf_append(data, text, size) >= 0;
}

/* Would this string, written plain, parse as something other than itself? */
static bool needs_quotes(const char *s) {
        YamlDoc **docs = NULL;
        size_t n = 0;
        Diags d = DIAGS_INIT;
        bool quote = true;

        if (!*s || strchr(s, '\n'))
                return !*s;
        if (yaml_parse(s, strlen(s), NULL, &docs, &n, &d) == 0 && n == 1) {
                json_t *v = yamldoc_root(docs[0]);
                quote = !json_is_string(v) || !STREQ(json_string_value(v), s);
        }
        yamldocs_free(docs, n);
        diags_free(&d);
        return quote;
}

static int emit_scalar(yaml_emitter_t *em, const char *text, bool plain_ok, yaml_scalar_style_t style) {
        yaml_event_t e;

        yaml_scalar_event_initialize(&e, NULL, NULL, (yaml_char_t *) text, (int) strlen(text), plain_ok,
                                     !plain_ok, style);
        return yaml_emitter_emit(em, &e) ? 0 : -EIO;
}

static int emit_string(yaml_emitter_t *em, const char *s) {
        if (strchr(s, '\n'))
                return emit_scalar(em, s, false, YAML_LITERAL_SCALAR_STYLE);
        if (needs_quotes(s))
                return emit_scalar(em, s, false, YAML_DOUBLE_QUOTED_SCALAR_STYLE);
        return emit_scalar(em, s, true, YAML_ANY_SCALAR_STYLE);
}

static int emit_value(yaml_emitter_t *em, const json_t *v);

static int emit_object(yaml_emitter_t *em, const json_t *v) {
        yaml_event_t e;
        const char *k;
        json_t *child;

        yaml_mapping_start_event_initialize(&e, NULL, NULL, 1,
                                            json_object_size(v) ? YAML_BLOCK_MAPPING_STYLE
                                                                : YAML_FLOW_MAPPING_STYLE);
        if (!yaml_emitter_emit(em, &e))
                return -EIO;
        json_object_foreach((json_t *) v, k, child) {
                if (emit_string(em, k) < 0 || emit_value(em, child) < 0)
                        return -EIO;
        }
        yaml_mapping_end_event_initialize(&e);
        return yaml_emitter_emit(em, &e) ? 0 : -EIO;
}

static int emit_array(yaml_emitter_t *em, const json_t *v) {
        yaml_event_t e;
        size_t i;
        json_t *child;

        yaml_sequence_start_event_initialize(&e, NULL, NULL, 1,
                                             json_array_size(v) ? YAML_BLOCK_SEQUENCE_STYLE
                                                                : YAML_FLOW_SEQUENCE_STYLE);
        if (!yaml_emitter_emit(em, &e))
                return -EIO;
        json_array_foreach(v, i, child) {
                if (emit_value(em, child) < 0)
                        return -EIO;
        }
        yaml_sequence_end_event_initialize(&e);
        return yaml_emitter_emit(em, &e) ? 0 : -EIO;
}

static int emit_value(yaml_emitter_t *em, const json_t *v) {
        char num[64];

        switch (json_typeof(v)) {
        case JSON_OBJECT:
                return emit_object(em, v);
        case JSON_ARRAY:
                return emit_array(em, v);
        case JSON_STRING:
                return emit_string(em, json_string_value(v));
        case JSON_INTEGER:
                snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
                return emit_scalar(em, num, true, YAML_PLAIN_SCALAR_STYLE);
        case JSON_REAL:
                snprintf(num, sizeof num, "%.17g", json_real_value(v));
                if (!strpbrk(num, ".eE"))
                        strcat(num, ".0");
                return emit_scalar(em, num, true, YAML_PLAIN_SCALAR_STYLE);
        case JSON_TRUE:
                return emit_scalar(em, "true", true, YAML_PLAIN_SCALAR_STYLE);
        case JSON_FALSE:
                return emit_scalar(em, "false", true, YAML_PLAIN_SCALAR_STYLE);
        default:
                return emit_scalar(em, "null", true, YAML_PLAIN_SCALAR_STYLE);
        }
}

static int emit_document(yaml_emitter_t *em, const json_t *value) {
        yaml_event_t e;

        yaml_stream_start_event_initialize(&e, YAML_UTF8_ENCODING);
        if (!yaml_emitter_emit(em, &e))
                return -EIO;
        yaml_document_start_event_initialize(&e, NULL, NULL, NULL, 1);
        if (!yaml_emitter_emit(em, &e) || emit_value(em, value) < 0)
                return -EIO;
        yaml_document_end_event_initialize(&e, 1);
        if (!yaml_emitter_emit(em, &e))
                return -EIO;
        yaml_stream_end_event_initialize(&e);
        return yaml_emitter_emit(em, &e) ? 0 : -EIO;
}

char *yaml_emit(const json_t *value) {
        yaml_emitter_t em;
        Buf out = BUF_INIT;

        if (!yaml_emitter_initialize(&em))
                abort();
        yaml_emitter_set_output(&em, write_to_buf, &out);
        yaml_emitter_set_unicode(&em, 1);
        yaml_emitter_set_width(&em, -1);
        yaml_emitter_set_indent(&em, 2);
        int r = emit_document(&em, value);
        yaml_emitter_delete(&em);
        if (r < 0) {
                /* Only a string libyaml cannot represent gets here; JSON
                 * text is valid YAML, so fall back to it. */
                buf_free(&out);
                char *json = json_dumps(value, JSON_INDENT(2) | JSON_ENCODE_ANY);
                return json ? json : xstrdup("null\n");
        }
        return buf_steal(&out);
}
