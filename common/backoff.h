/* Exponential backoff with jitter for reconnect loops: the delay grows by
 * `multiplier` from `initial_ms` up to `max_ms`, and each delay is drawn
 * uniformly from [delay * (1 - jitter), delay * (1 + jitter)] so that many
 * agents restarting together do not reconnect in lockstep. */
#ifndef INK_BACKOFF_H
#define INK_BACKOFF_H

#include <stdint.h>

typedef struct ink_backoff {
    int64_t initial_ms;
    int64_t max_ms;
    double multiplier;
    double jitter; /* 0..1 */
    int64_t current_ms;
    uint64_t rng; /* xorshift state; seeded from getrandom */
} ink_backoff;

void ink_backoff_init(ink_backoff *b, int64_t initial_ms, int64_t max_ms, double multiplier,
                      double jitter);
/* Delay to wait before the next attempt; advances the sequence. */
int64_t ink_backoff_next(ink_backoff *b);
/* After a success: the next failure starts from initial_ms again. */
void ink_backoff_reset(ink_backoff *b);

#endif
