/* yaml: YAML manifests into jansson values, with a source position for
 * every node so that every error can say FILE:LINE:COL.
 *
 * Multi-document streams ("---") give one YamlDoc each. Scalars follow the
 * YAML 1.2 core schema (null, true/false, integers, floats, else string;
 * quoted scalars and !!str are always strings). Anchors and aliases are
 * expanded, bounded by YAML_MAX_ALIAS_NODES expanded nodes per stream (no
 * billion laughs), and nesting is bounded by YAML_MAX_DEPTH. Duplicate keys
 * in a mapping are an error. */
#pragma once

#include "base/base.h"

#define YAML_MAX_DEPTH 64
#define YAML_MAX_ALIAS_NODES 10000
#define YAML_MAX_BYTES (64u * 1024 * 1024)

typedef struct YamlDoc YamlDoc;

/* Parses a stream. filename is used in diagnostics only. Empty documents
 * (a lone "---" or only comments) are skipped. On a syntax error or a bound
 * exceeded, adds a diagnostic with file, line and column to d and returns
 * -EINVAL; no documents are returned then. */
int yaml_parse(const char *data, size_t len, const char *filename, YamlDoc ***ret_docs,
               size_t *ret_n, Diags *d);

/* The document's value (borrowed, lives as long as doc). */
json_t *yamldoc_root(const YamlDoc *doc);
const char *yamldoc_file(const YamlDoc *doc);
/* Line and column (1-based) of the node at path, a dotted field path as the
 * validator writes them: "spec.port", "spec.tasks.build.dependsOn[0]",
 * "metadata.labels.app". Keys containing dots or brackets are written
 * "a[\"x.y\"]". key=true gives the position of the mapping key instead of
 * its value (for "unknown field"). An unknown path falls back to its nearest
 * known ancestor, and then to the document start. */
void yamldoc_pos(const YamlDoc *doc, const char *path, bool key, unsigned *ret_line,
                 unsigned *ret_col);
void yamldoc_free(YamlDoc *doc);
void yamldocs_free(YamlDoc **docs, size_t n);

/* Emits a JSON value as a YAML document (block style, keys in the value's
 * order, strings quoted where a plain scalar would read as something else).
 * Caller frees the text. */
char *yaml_emit(const json_t *value);
