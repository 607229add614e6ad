#include "backoff.h"

#include "util.h"

void ink_backoff_init(ink_backoff *b, int64_t initial_ms, int64_t max_ms, double multiplier,
                      double jitter)
{
    b->initial_ms = initial_ms > 0 ? initial_ms : 1;
    b->max_ms = max_ms > b->initial_ms ? max_ms : b->initial_ms;
    b->multiplier = multiplier >= 1.0 ? multiplier : 1.0;
    b->jitter = jitter < 0 ? 0 : (jitter > 1 ? 1 : jitter);
    b->current_ms = b->initial_ms;
    if (ink_random_bytes(&b->rng, sizeof b->rng, NULL) < 0 || b->rng == 0)
        b->rng = (uint64_t)ink_mono_ns() | 1;
}

static double next_unit(ink_backoff *b)
{
    /* xorshift64*: good enough to spread reconnects, not for secrets. */
    b->rng ^= b->rng >> 12;
    b->rng ^= b->rng << 25;
    b->rng ^= b->rng >> 27;
    return (double)((b->rng * 2685821657736338717ULL) >> 11) / (double)(1ULL << 53);
}

int64_t ink_backoff_next(ink_backoff *b)
{
    double base = (double)b->current_ms;
    double spread = base * b->jitter;
    double delay = base - spread + 2.0 * spread * next_unit(b);
    double grown = base * b->multiplier;
    /* Small delays with a small multiplier must still grow (1 ms * 1.5
     * would truncate back to 1 ms forever). */
    if (b->multiplier > 1.0 && grown < base + 1)
        grown = base + 1;
    b->current_ms = grown > (double)b->max_ms ? b->max_ms : (int64_t)grown;
    return delay < 1 ? 1 : (int64_t)delay;
}

void ink_backoff_reset(ink_backoff *b)
{
    b->current_ms = b->initial_ms;
}
