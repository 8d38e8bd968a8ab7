// Default (non-recurrent) implementations of the decoding interface.
#include "layers/mixer.h"

namespace hippo {

MixerState MixerImpl::initial_state(int64_t) const {
  TORCH_CHECK(false, "mixer '", name(), "' is not recurrent: it has no step()");
}

torch::Tensor MixerImpl::step(const torch::Tensor&, MixerState&) {
  TORCH_CHECK(false, "mixer '", name(), "' is not recurrent: it has no step()");
}

MixerState MixerImpl::state_after(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 3, "state_after: x must be (B, L, D), got ", x.sizes());
  MixerState state = initial_state(x.size(0));
  for (int64_t t = 0; t < x.size(1); ++t) step(x.select(1, t), state);
  return state;
}

torch::Tensor MixerImpl::forward_with_state(const torch::Tensor& x, MixerState& state) {
  state = state_after(x);
  return forward(x);
}

}  // namespace hippo
