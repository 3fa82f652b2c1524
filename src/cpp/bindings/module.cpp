// The extension module fastopt._core. This file only registers; each area has its own register_*.
#include <pybind11/pybind11.h>

namespace fastopt::bindings {
void register_dispatch(pybind11::module_& m);
void register_updater(pybind11::module_& m);
void register_threads(pybind11::module_& m);
void register_norm(pybind11::module_& m);
void register_half(pybind11::module_& m);
void register_compact(pybind11::module_& m);
void register_search(pybind11::module_& m);
}  // namespace fastopt::bindings

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastopt's compiled core: fused, SIMD-vectorized optimizer kernels.";
  fastopt::bindings::register_dispatch(m);  // first: it chooses the SIMD level
  fastopt::bindings::register_updater(m);
  fastopt::bindings::register_threads(m);
  fastopt::bindings::register_norm(m);
  fastopt::bindings::register_half(m);
  fastopt::bindings::register_compact(m);
  fastopt::bindings::register_search(m);
}
