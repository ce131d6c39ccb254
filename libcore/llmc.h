/* llmc.h - llm.c's .bin token files, so data moves both ways between the
 * projects. A header of 256 little-endian int32 (magic 20240520, version 1
 * for uint16 tokens or 2 for uint32 tokens, token count), then the tokens.
 * llm.c marks documents by starting each with an end-of-text token; the
 * file itself has no checksum and no document index. */
#ifndef TN_LLMC_H
#define TN_LLMC_H

#include <stddef.h>
#include <stdint.h>

#include "io.h"

#define TN_LLMC_MAGIC 20240520
#define TN_LLMC_HEADER_BYTES 1024

struct tn_llmc_reader {
	struct tn_in in;
	int version;       /* 1: uint16, 2: uint32 */
	uint64_t n_tokens, read;
	uint32_t vocab_size;
	int64_t eot;       /* tokens equal to it start a document; -1: none */
	uint32_t pending;  /* a token read ahead (the next document's EOT) */
	int has_pending;
	int in_doc;        /* tokens of the current document were handed out */
	uint8_t raw[1 << 16];
};

/* Open and check the header and size of path. */
int tn_llmc_open(struct tn_llmc_reader *r, const char *path, uint32_t vocab_size, int64_t eot);
/* Same contract as tn_stream_read(): documents are cut before each EOT. */
int tn_llmc_read(struct tn_llmc_reader *r, uint32_t *buf, size_t cap, size_t *n,
		 int *doc_end, int *eos);
void tn_llmc_close(struct tn_llmc_reader *r);

/* The header for a file of n_tokens tokens of the given version. */
int tn_llmc_header(uint8_t h[TN_LLMC_HEADER_BYTES], int version, uint64_t n_tokens);

#endif
