/* backend_cpu.c - the CPU backend: host memory and the reference ops.
 * Threads come from OpenMP in the ops and from OpenBLAS in the matmuls. */
#include "backend.h"
#include "ops.h"
#include "ops_decode.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *cpu_alloc(size_t bytes) { return tn_calloc(1, bytes ? bytes : 1); }
static void cpu_free(void *p) { free(p); }
static void cpu_copy(void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }
static void cpu_zero(void *p, size_t bytes) { memset(p, 0, bytes); }
static int cpu_status(void) { return TN_OK; }

static void cpu_argmax_rows(int32_t *out, const float *x, int R, int C)
{
	for (int r = 0; r < R; r++) {
		const float *row = x + (size_t)r * C;
		int best = 0;
		for (int c = 1; c < C; c++)
			if (row[c] > row[best])
				best = c;
		out[r] = best;
	}
}

void tn_cpu_passive_wait(char **argv)
{
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (getenv("OMP_WAIT_POLICY") || n <= 0 || setenv("OMP_WAIT_POLICY", "PASSIVE", 1))
		return;
	self[n] = 0; /* the real path, so the process keeps its name */
	execv(self, argv);
}

const struct tn_backend *tn_backend_find(const char *name)
{
	if (!strcmp(name, "cpu"))
		return &tn_backend_cpu;
#ifdef TN_CUDA
	if (!strcmp(name, "cuda"))
		return &tn_backend_cuda;
	if (!strcmp(name, "cuda-bf16"))
		return &tn_backend_cuda_bf16;
#endif
	tn_fail(TN_EUSAGE, "no backend '%s' in this build (cpu%s)", name,
#ifdef TN_CUDA
		", cuda, cuda-bf16"
#else
		"; build with nvcc for cuda and cuda-bf16"
#endif
	);
	return NULL;
}

const struct tn_backend tn_backend_cpu = {
	.name = "cpu",
	.alloc = cpu_alloc,
	.free = cpu_free,
	.upload = cpu_copy,
	.download = cpu_copy,
	.zero = cpu_zero,
	.matmul_forward = matmul_forward,
	.matmul_backward = matmul_backward,
	.embedding_forward = embedding_forward,
	.embedding_backward = embedding_backward,
	.srmsnorm_forward = srmsnorm_forward,
	.srmsnorm_backward = srmsnorm_backward,
	.act_forward = act_forward,
	.act_backward = act_backward,
	.gate_forward = gate_forward,
	.gate_backward = gate_backward,
	.residual_forward = residual_forward,
	.lrpe_forward = lrpe_forward,
	.lrpe_backward = lrpe_backward,
	.heads_merge = heads_merge,
	.xent_scratch = tn_xent_scratch,
	.crossentropy_forward = crossentropy_forward,
	.crossentropy_backward = crossentropy_backward,
	.sumsq_forward = sumsq_forward,
	.adamw_update = adamw_update,
	.attn_forward = lightning_attn_forward,
	.attn_backward = lightning_attn_backward,
	.attn_decode = lightning_attn_decode,
	.residual_norm_forward = residual_norm_forward,
	.act_lrpe_forward = act_lrpe_forward,
	.act_lrpe_backward = act_lrpe_backward,
	.merge_norm_gate_forward = merge_norm_gate_forward,
	.gate_norm_split_backward = gate_norm_split_backward,
	.copy = cpu_copy,
	.argmax_rows = cpu_argmax_rows,
	.status = cpu_status,
	.adamw_fused = adamw_fused,
	.host_alloc = cpu_alloc,
	.host_free = cpu_free,
	.decode_matmul = decode_matmul,
	.mixer_decode = mixer_decode,
};
