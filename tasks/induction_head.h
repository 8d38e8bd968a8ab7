// Induction head (H3.md 6.2): recall the token that followed the earlier trigger.
#pragma once

#include "tasks/synthetic.h"

namespace hippo {

// One example: seq_len ordinary tokens drawn uniformly, the trigger written at a position p uniform in
// [0, seq_len - 3], then the trigger and s[p+1] appended. Length seq_len + 2; the answer is the last token.
Sequence draw_induction_head(Rng& rng, const SyntheticVocab& vocab, int64_t seq_len);

}  // namespace hippo
