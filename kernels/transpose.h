// transpose_contiguous: x.transpose(1, 2).contiguous() for 3-D tensors, with a tiled CUDA kernel on the GPU.
// The SSM layers move activations between the (B, L, D) layout and the (B, D, L) rows of the FFT convolution; ATen's
// strided copy of a bf16 (4, 2048, 768) tensor took 41 us on an H200 (ncu), this kernel about 12 us. (H3's projections
// write and read the rows layout directly on a GPU, layers/projection.h; S4D, GSS and the SSM mixers' inputs still
// move through here.)
#pragma once

#include <torch/types.h>

namespace hippo {

// x (B, R, C), any dtype, device and strides -> (B, C, R), contiguous, out[b, c, r] = x[b, r, c], same dtype and
// device. Differentiable (the gradient is the same transpose of the incoming gradient, also on the GPU). On a CUDA
// tensor of 2-, 4- or 8-byte elements the kernel of kernels/transpose_kernel.cu runs (when the binary was built
// with the CUDA kernels); otherwise ATen's copy. A tensor whose transposed view is already contiguous is returned
// as that view (no copy). Raises c10::Error when x is not 3-D, and c10::Error naming the kernel and shape when
// its launch fails.
torch::Tensor transpose_contiguous(const torch::Tensor& x);

}  // namespace hippo
