/* inspect.h - what tn-shard info and verify say about a path: a shard
 * file, a shard directory, a token stream or an llm.c .bin file, told apart
 * by their magic. */
#ifndef TN_INSPECT_H
#define TN_INSPECT_H

#include <jansson.h>
#include <stdio.h>

/* Describe path as a JSON object. With full, every checksum and token id is
 * checked (verify); otherwise headers, indexes and the manifest (info).
 * Streams and llm.c files are always read through. */
int tn_inspect(const char *path, int full, json_t **out);
/* The same description as aligned "key: value" lines. */
void tn_inspect_print(const json_t *desc, FILE *f);

#endif
