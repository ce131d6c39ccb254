/* input.h - documents from the inputs of tn-tokenize: files, directories
 * (walked recursively, names sorted bytewise), "-" for stdin, and archives
 * (tar or zip, possibly compressed) read through libarchive; a compressed
 * single file (.gz, .xz, .zst, .bz2) is read as one file.
 *
 * Each file or archive member is one document, unless it is cut further:
 * JSON lines (one document per line, from a string field), --split-docs
 * (tn's corpus convention: documents separated by a line holding exactly
 * "<|endoftext|>"; each keeps its final LF) or lines (each line without its
 * LF). A file is held in memory whole while its documents are handed out. */
#ifndef TN_INPUT_H
#define TN_INPUT_H

#include <stddef.h>
#include <stdint.h>

enum tn_input_cut {
	TN_CUT_FILE = 0, /* the whole file (member) */
	TN_CUT_EOT,      /* at "\n<|endoftext|>\n" */
	TN_CUT_LINES,    /* at every LF */
};

struct tn_input_opts {
	enum tn_input_cut cut;
	const char *jsonl_field; /* non-NULL: JSON lines, the document is this field */
};

struct tn_input;
/* Paths are walked when opened (so a missing file fails here). */
int tn_input_open(struct tn_input **in, char *const *paths, size_t n,
		  const struct tn_input_opts *o);
/* The next document; *doc stays valid until the next call. *eof = 1 and
 * no document at the end. */
int tn_input_next(struct tn_input *in, const uint8_t **doc, size_t *len, int *eof);
void tn_input_free(struct tn_input *in);

#endif
