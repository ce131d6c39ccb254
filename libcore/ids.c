/* ids.c - parsing and printing decimal token ids. The parser works on the
 * input buffer byte by byte and hands out ids in chunks, so a line of any
 * length is read in constant memory. */
#include "ids.h"
#include "util.h"

#include <string.h>

void tn_ids_reader_init(struct tn_ids_reader *r, struct tn_in *in, uint32_t vocab_size)
{
	r->in = in;
	r->vocab_size = vocab_size;
	r->line = 1;
	r->column = 1;
	r->at_line_start = 1;
}

/* Next byte, or -1 at end of input. */
static int next_byte(struct tn_ids_reader *r, int *c)
{
	struct tn_in *in = r->in;
	if (in->pos == in->len) {
		size_t avail;
		int rc = tn_in_fill(in, 1, &avail);
		if (rc)
			return rc;
		if (avail == 0) {
			*c = -1;
			return TN_OK;
		}
	}
	*c = in->buf[in->pos++];
	in->offset++;
	r->column++;
	return TN_OK;
}

static int peek_byte(struct tn_ids_reader *r, int *c)
{
	struct tn_in *in = r->in;
	size_t avail;
	int rc = tn_in_fill(in, 1, &avail);
	*c = rc || avail == 0 ? -1 : in->buf[in->pos];
	return rc;
}

static int parse_id(struct tn_ids_reader *r, int first, uint32_t *id)
{
	uint64_t line = r->line, col = r->column - 1;
	uint64_t v = (uint64_t)(first - '0');
	for (;;) {
		int c, rc = peek_byte(r, &c);
		if (rc)
			return rc;
		if (c < '0' || c > '9')
			break;
		next_byte(r, &c);
		v = v * 10 + (uint64_t)(c - '0');
		if (v >= r->vocab_size)
			v = r->vocab_size; /* saturate: reported below */
	}
	if (v >= r->vocab_size)
		return tn_fail(TN_EDATA, "%s: line %llu, column %llu: token id is not below the vocabulary size %u",
			       r->in->path, (unsigned long long)line, (unsigned long long)col,
			       r->vocab_size);
	*id = (uint32_t)v;
	return TN_OK;
}

int tn_ids_read(struct tn_ids_reader *r, uint32_t *buf, size_t cap, size_t *n,
		int *doc_end, int *eos)
{
	*n = 0;
	*doc_end = 0;
	*eos = 0;
	while (*n < cap) {
		int c, rc = next_byte(r, &c);
		if (rc)
			return rc;
		if (c == -1) {
			if (r->at_line_start && *n == 0)
				*eos = 1;
			else
				*doc_end = 1;
			r->at_line_start = 1;
			return TN_OK;
		}
		r->at_line_start = 0;
		if (c == '\n') {
			r->line++;
			r->column = 1;
			r->at_line_start = 1;
			*doc_end = 1;
			return TN_OK;
		}
		if (c == ' ' || c == '\t')
			continue;
		if (c == '\r') {
			int d;
			if ((rc = peek_byte(r, &d)))
				return rc;
			if (d == '\n')
				continue;
		}
		if (c < '0' || c > '9')
			return tn_fail(TN_EDATA, "%s: line %llu, column %llu: expected a decimal token id, found %s0x%02x",
				       r->in->path, (unsigned long long)r->line,
				       (unsigned long long)(r->column - 1), "byte ", c);
		if ((rc = parse_id(r, c, &buf[*n])))
			return rc;
		(*n)++;
	}
	return TN_OK;
}

size_t tn_ids_format(const uint32_t *ids, size_t n, char *out)
{
	char *p = out;
	for (size_t i = 0; i < n; i++) {
		char tmp[10];
		int len = 0;
		uint32_t v = ids[i];
		do {
			tmp[len++] = (char)('0' + v % 10);
			v /= 10;
		} while (v);
		if (i)
			*p++ = ' ';
		while (len)
			*p++ = tmp[--len];
	}
	return (size_t)(p - out);
}
