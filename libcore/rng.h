/* rng.h - the one random generator of tn (xoshiro256**, seeded through
 * splitmix64): weight initialisation and anything a training run draws.
 * Decision: its whole state is four integers, saved in the training state,
 * so a resumed run draws exactly what an uninterrupted one would. */
#ifndef TN_RNG_H
#define TN_RNG_H

#include <stdint.h>

struct tn_rng {
	uint64_t s[4];
};

void tn_rng_seed(struct tn_rng *r, uint64_t seed);
uint64_t tn_rng_next(struct tn_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double tn_rng_uniform(struct tn_rng *r);
/* Standard normal (Box-Muller; one draw of two uniforms per value). */
double tn_rng_normal(struct tn_rng *r);

#endif
