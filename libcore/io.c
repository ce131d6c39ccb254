/* io.c - buffered, checked file I/O and atomic replacement of outputs.
 * Every write of tn ends in tn_write_all(), the single place where a full
 * disk or an I/O error is turned into a message. */
#include "io.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define OUT_BUF (1u << 20)
#define IN_BUF (1u << 20)

int tn_write_all(int fd, const void *p, size_t n, const char *name)
{
	const uint8_t *b = p;
	while (n > 0) {
		ssize_t w = write(fd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return tn_fail_errno("%s: write failed", name);
		if (w == 0) {
			errno = ENOSPC;
			return tn_fail_errno("%s: write failed", name);
		}
		b += w;
		n -= (size_t)w;
	}
	return TN_OK;
}

int tn_pread_all(int fd, void *p, size_t n, uint64_t off, const char *name)
{
	uint8_t *b = p;
	while (n > 0) {
		ssize_t r = pread(fd, b, n, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return tn_fail_errno("%s: offset %llu: read failed", name,
					     (unsigned long long)off);
		if (r == 0)
			return tn_fail(TN_EDATA, "%s: offset %llu: unexpected end of file",
				       name, (unsigned long long)off);
		b += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return TN_OK;
}

int tn_scratch_fd(const char *dir, int *fd)
{
	size_t n = strlen(dir) + 24;
	char *path = tn_malloc(n);
	if (!path)
		return TN_ENOMEM;
	snprintf(path, n, "%s/.scratch-XXXXXX", dir);
	*fd = mkstemp(path);
	int rc = *fd < 0 ? tn_fail_errno("%s: cannot create a scratch file", dir) : TN_OK;
	if (!rc)
		unlink(path);
	free(path);
	return rc;
}

int tn_fsync_dir_of(const char *path)
{
	char *copy = tn_strdup(path);
	if (!copy)
		return TN_ENOMEM;
	int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
	int rc = TN_OK;
	if (fd < 0 || fsync(fd) != 0)
		rc = tn_fail_errno("%s: cannot sync its directory", path);
	if (fd >= 0)
		close(fd);
	free(copy);
	return rc;
}

int tn_out_open_fd(struct tn_out *o, int fd, const char *name)
{
	memset(o, 0, sizeof *o);
	o->fd = fd;
	o->path = tn_strdup(name);
	o->buf = tn_malloc(OUT_BUF);
	o->cap = OUT_BUF;
	if (!o->path || !o->buf) {
		tn_out_abort(o);
		return TN_ENOMEM;
	}
	return TN_OK;
}

int tn_out_open(struct tn_out *o, const char *path)
{
	int rc = tn_out_open_fd(o, -1, path);
	if (rc)
		return rc;
	if (strcmp(path, "-") == 0) {
		o->fd = STDOUT_FILENO;
		return TN_OK;
	}
	size_t n = strlen(path) + 16;
	o->tmp_path = tn_malloc(n);
	if (!o->tmp_path) {
		tn_out_abort(o);
		return TN_ENOMEM;
	}
	snprintf(o->tmp_path, n, "%s.tmp-XXXXXX", path);
	o->fd = mkstemp(o->tmp_path);
	if (o->fd < 0) {
		rc = tn_fail_errno("%s: cannot create", path);
		free(o->tmp_path);
		o->tmp_path = NULL;
		tn_out_abort(o);
		return rc;
	}
	fchmod(o->fd, 0644);
	return TN_OK;
}

int tn_out_flush(struct tn_out *o)
{
	int rc = tn_write_all(o->fd, o->buf, o->len, o->path);
	o->len = 0;
	return rc;
}

int tn_out_write(struct tn_out *o, const void *p, size_t n)
{
	o->offset += n;
	if (o->len + n <= o->cap) {
		memcpy(o->buf + o->len, p, n);
		o->len += n;
		return TN_OK;
	}
	int rc = tn_out_flush(o);
	if (rc)
		return rc;
	if (n >= o->cap)
		return tn_write_all(o->fd, p, n, o->path);
	memcpy(o->buf, p, n);
	o->len = n;
	return TN_OK;
}

int tn_out_commit(struct tn_out *o)
{
	int rc = tn_out_flush(o);
	if (rc)
		return rc;
	if (!o->tmp_path) /* stdout: nothing to rename */
		return TN_OK;
	if (fsync(o->fd) != 0)
		return tn_fail_errno("%s: fsync failed", o->path);
	if (close(o->fd) != 0) {
		o->fd = -1;
		return tn_fail_errno("%s: close failed", o->path);
	}
	o->fd = -1;
	if (rename(o->tmp_path, o->path) != 0)
		return tn_fail_errno("%s: cannot rename into place", o->path);
	free(o->tmp_path);
	o->tmp_path = NULL;
	return tn_fsync_dir_of(o->path);
}

void tn_out_abort(struct tn_out *o)
{
	if (o->tmp_path) {
		if (o->fd >= 0)
			close(o->fd);
		unlink(o->tmp_path);
	}
	free(o->tmp_path);
	free(o->path);
	free(o->buf);
	memset(o, 0, sizeof *o);
	o->fd = -1;
}

int tn_in_open_fd(struct tn_in *in, int fd, const char *name)
{
	memset(in, 0, sizeof *in);
	in->fd = fd;
	in->path = tn_strdup(name);
	in->buf = tn_malloc(IN_BUF);
	in->cap = IN_BUF;
	if (!in->path || !in->buf) {
		tn_in_close(in);
		return TN_ENOMEM;
	}
	return TN_OK;
}

int tn_in_open(struct tn_in *in, const char *path)
{
	if (strcmp(path, "-") == 0)
		return tn_in_open_fd(in, STDIN_FILENO, "-");
	int fd = open(path, O_RDONLY);
	if (fd < 0) {
		memset(in, 0, sizeof *in);
		in->fd = -1;
		return tn_fail_errno("%s: cannot open", path);
	}
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		close(fd);
		memset(in, 0, sizeof *in);
		in->fd = -1;
		return tn_fail(TN_EDATA, "%s: is a directory", path);
	}
	int rc = tn_in_open_fd(in, fd, path);
	if (rc) {
		close(fd);
		return rc;
	}
	in->owns_fd = 1;
	return TN_OK;
}

int tn_in_fill(struct tn_in *in, size_t n, size_t *avail)
{
	if (in->len - in->pos >= n || in->eof) {
		*avail = in->len - in->pos;
		return TN_OK;
	}
	memmove(in->buf, in->buf + in->pos, in->len - in->pos);
	in->len -= in->pos;
	in->pos = 0;
	while (in->len < n && !in->eof) {
		ssize_t r = read(in->fd, in->buf + in->len, in->cap - in->len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return tn_fail_errno("%s: offset %llu: read failed", in->path,
					     (unsigned long long)(in->offset + in->len));
		if (r == 0)
			in->eof = 1;
		in->len += (size_t)r;
	}
	*avail = in->len;
	return TN_OK;
}

int tn_in_read(struct tn_in *in, void *dst, size_t n, size_t *got)
{
	uint8_t *d = dst;
	size_t done = 0;
	while (done < n) {
		if (in->pos == in->len) {
			if (in->eof)
				break;
			/* Large reads bypass the buffer. */
			if (n - done >= in->cap) {
				ssize_t r = read(in->fd, d + done, n - done);
				if (r < 0 && errno == EINTR)
					continue;
				if (r < 0)
					return tn_fail_errno("%s: offset %llu: read failed",
							     in->path, (unsigned long long)in->offset);
				if (r == 0)
					in->eof = 1;
				done += (size_t)r;
				in->offset += (uint64_t)r;
				continue;
			}
			size_t avail;
			int rc = tn_in_fill(in, 1, &avail);
			if (rc)
				return rc;
			continue;
		}
		size_t take = TN_MIN(n - done, in->len - in->pos);
		memcpy(d + done, in->buf + in->pos, take);
		in->pos += take;
		in->offset += take;
		done += take;
	}
	*got = done;
	return TN_OK;
}

void tn_in_close(struct tn_in *in)
{
	if (in->owns_fd && in->fd >= 0)
		close(in->fd);
	free(in->buf);
	free(in->path);
	memset(in, 0, sizeof *in);
	in->fd = -1;
}

int tn_read_file(const char *path, uint8_t **data, size_t *len)
{
	struct tn_in in;
	int rc = tn_in_open(&in, path);
	if (rc)
		return rc;
	size_t cap = 1 << 16, n = 0;
	uint8_t *buf = tn_malloc(cap);
	while (buf) {
		size_t got = 0;
		rc = tn_in_read(&in, buf + n, cap - n, &got);
		if (rc)
			break;
		n += got;
		if (n < cap) {
			buf[n] = 0; /* a terminator, so text can be searched as a string */
			break;
		}
		cap *= 2;
		uint8_t *grown = tn_realloc(buf, cap);
		if (!grown)
			free(buf);
		buf = grown;
	}
	tn_in_close(&in);
	if (!buf)
		return TN_ENOMEM;
	if (rc) {
		free(buf);
		return rc;
	}
	*data = buf;
	*len = n;
	return TN_OK;
}

int tn_write_file_atomic(const char *path, const void *data, size_t len)
{
	struct tn_out o;
	int rc = tn_out_open(&o, path);
	if (!rc)
		rc = tn_out_write(&o, data, len);
	if (!rc)
		rc = tn_out_commit(&o);
	tn_out_abort(&o);
	return rc;
}
