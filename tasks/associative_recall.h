// Associative recall (H3.md 6.3): recall the value bound to a key earlier in the sequence.
#pragma once

#include "tasks/synthetic.h"

namespace hippo {

// Keys are ordinary tokens 0..K-1 and values K..2K-1 with K = (vocab_size-2)/2. One example: a fresh map
// key -> value (each key's value uniform among the values), seq_len/2 pairs "k v" with keys uniform with
// replacement, then the trigger, a key drawn from those in the body, and its value. Length seq_len + 3.
Sequence draw_associative_recall(Rng& rng, const SyntheticVocab& vocab, int64_t seq_len);

}  // namespace hippo
