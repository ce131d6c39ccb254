/* ids.h - decimal token ids as text, one document per line: how people and
 * tests write token data by hand. Ids are separated by spaces or tabs; a
 * line break (LF, or CR LF) ends a document, an empty line is an empty
 * document, and a last line without a line break still counts. */
#ifndef TN_IDS_H
#define TN_IDS_H

#include <stddef.h>
#include <stdint.h>

#include "io.h"

struct tn_ids_reader {
	struct tn_in *in;
	uint32_t vocab_size;
	uint64_t line, column; /* 1-based position of the next byte */
	int at_line_start;
};

void tn_ids_reader_init(struct tn_ids_reader *r, struct tn_in *in, uint32_t vocab_size);
/* Same contract as tn_stream_read(). */
int tn_ids_read(struct tn_ids_reader *r, uint32_t *buf, size_t cap, size_t *n,
		int *doc_end, int *eos);

/* Format ids as decimal text separated by spaces (no newline); returns the
 * length written into out, which must hold 11 bytes per id. */
size_t tn_ids_format(const uint32_t *ids, size_t n, char *out);

#endif
