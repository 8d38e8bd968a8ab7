// Multi-query associative recall (MQAR, from the Zoology work; H3.md 6.6): num_kv_pairs key-value pairs at the
// start, then the keys queried again later in the sequence; the label is the value after each query.
#pragma once

#include "tasks/synthetic.h"

namespace hippo {

struct MqarOptions {
  int64_t vocab_size = 8192;
  int64_t seq_len = 64;      // model input length
  int64_t num_kv_pairs = 4;
  double power_a = 0.01;     // query gaps drawn with probability proportional to gap^(power_a - 1)
  // true: the value also follows its query in the model input (the example is one sequence). false (Zoology's
  // layout): the input there holds a filler token drawn like the noise, the value is only the target, so a later
  // query cannot see which values were already answered.
  bool answer_in_input = true;
};

// One example of seq_len + 1 tokens. Keys are distinct, from [0, V/2); values from [V/2, V), with replacement.
// Positions 0..2K-1 hold k_1 v_1 .. k_K v_K; the remaining seq_len - 2K positions form (seq_len - 2K)/2 slots of
// two; each key is queried once, in a slot s drawn without replacement with probability proportional to
// (s+1)^(power_a-1), as "key value" at positions 2K + 2s, 2K + 2s + 1. Every other position holds a token drawn
// uniformly from the whole vocabulary (noise, never scored). `query_positions` receives the K positions of the
// queried keys (where the next token, the value, is scored). With answer_in_input false, `fillers` (if given)
// receives K more noise tokens, drawn after everything else: the model input at query_positions[i] + 1 is to
// hold fillers[i] instead of the value (the returned sequence keeps the value there: it is the target).
Sequence draw_mqar(Rng& rng, const MqarOptions& o, std::vector<int64_t>* query_positions,
                   std::vector<int64_t>* fillers = nullptr);

}  // namespace hippo
