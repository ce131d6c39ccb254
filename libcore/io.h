/* io.h - the one layer through which tn reads and writes files.
 *
 * Writers use write(2) directly (no stdio), so a test can make any write
 * fail (tests/fault/ preloads a write that runs out of space). Files are
 * created under a temporary name in the destination's directory, fsynced
 * and renamed by tn_out_commit(), so a killed run never leaves a file that
 * looks finished. "-" means standard input or output. */
#ifndef TN_IO_H
#define TN_IO_H

#include <stddef.h>
#include <stdint.h>

/* A buffered output: a file being written atomically, or stdout. */
struct tn_out {
	int fd;
	char *path;     /* final name ("-" for stdout) */
	char *tmp_path; /* temporary name, NULL for stdout */
	uint8_t *buf;
	size_t len, cap;
	uint64_t offset; /* bytes accepted so far */
};

int tn_out_open(struct tn_out *o, const char *path);
/* Buffer writes to an open descriptor (scratch files); commit only flushes. */
int tn_out_open_fd(struct tn_out *o, int fd, const char *name);
int tn_out_write(struct tn_out *o, const void *p, size_t n);
int tn_out_flush(struct tn_out *o);
/* Flush, fsync, close and rename into place (stdout: flush only). */
int tn_out_commit(struct tn_out *o);
/* Close and remove the temporary file; safe after commit or on a zeroed struct. */
void tn_out_abort(struct tn_out *o);

/* A buffered input with the byte offset of the next unread byte, so that
 * errors can say where they are. */
struct tn_in {
	int fd;
	int owns_fd;
	char *path; /* as given ("-" for stdin) */
	uint8_t *buf;
	size_t pos, len, cap;
	uint64_t offset; /* file offset of buf[pos] */
	int eof;
};

int tn_in_open(struct tn_in *in, const char *path);
int tn_in_open_fd(struct tn_in *in, int fd, const char *name);
/* Read up to n bytes; *got < n only at end of file. */
int tn_in_read(struct tn_in *in, void *dst, size_t n, size_t *got);
/* Make at least n bytes available at in->buf + in->pos (fewer at EOF);
 * returns the number available. n must not exceed the buffer capacity. */
int tn_in_fill(struct tn_in *in, size_t n, size_t *avail);
void tn_in_close(struct tn_in *in);

/* Whole-file helpers; the data read is followed by a NUL byte. */
int tn_read_file(const char *path, uint8_t **data, size_t *len);
int tn_write_file_atomic(const char *path, const void *data, size_t len);

/* Write all of p to fd (retrying short writes); name is for the message. */
int tn_write_all(int fd, const void *p, size_t n, const char *name);
/* pread exactly n bytes at off, or fail with a message naming path. */
int tn_pread_all(int fd, void *p, size_t n, uint64_t off, const char *name);
/* An unlinked scratch file in dir (gone when closed or when we die). */
int tn_scratch_fd(const char *dir, int *fd);
/* fsync the directory holding path, so a rename into it is durable. */
int tn_fsync_dir_of(const char *path);

#endif
