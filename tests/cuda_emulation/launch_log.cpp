// torch_pet_emu::take_launch_log() -> Tensor [L, 2] (blocks, threads per block) of the
// emulated kernel launches on this thread since the previous call, which clears the log.
// The tests use it to show that their inputs span several blocks and partial blocks.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "kernels/launch.h"

namespace torch_pet {
namespace {

at::Tensor take_launch_log() {
  auto& log = launch_log();
  auto out = at::empty({static_cast<int64_t>(log.size()), 2}, at::kLong);
  int64_t* data = out.data_ptr<int64_t>();
  for (size_t k = 0; k < log.size(); ++k) {
    data[2 * k] = log[k].blocks;
    data[2 * k + 1] = log[k].threads;
  }
  log.clear();
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(torch_pet_emu, m) {
  m.def("take_launch_log() -> Tensor", &take_launch_log);
}

}  // namespace torch_pet
