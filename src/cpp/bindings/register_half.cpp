// The active level's half-precision conversions, exposed for the tests (tests/test_half.py compares
// them with the NumPy reference and across levels): _core._widen_half and _core._round_half.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "bindings/active_level.hpp"

namespace fastopt::bindings {

namespace py = pybind11;

namespace {

int format_index(const std::string& name) {
  if (name == "bfloat16") return 0;
  if (name == "float16") return 1;
  throw py::value_error("format must be 'bfloat16' or 'float16'; got '" + name + "'");
}

using Bits = py::array_t<std::uint16_t, py::array::c_style | py::array::forcecast>;
using Floats = py::array_t<float, py::array::c_style | py::array::forcecast>;

Floats widen_half(const Bits& bits, const std::string& format) {
  const WidenFn widen = active_level().table().widen[format_index(format)];
  Floats out(bits.size());
  widen(bits.data(), out.mutable_data(), bits.size());
  return out;
}

Bits round_half(const Floats& values, const std::string& format, bool stochastic,
                std::uint32_t random_key, std::int64_t index0) {
  const RoundFn round = active_level().table().round[format_index(format)];
  const auto low = static_cast<std::uint64_t>(index0) & 0xFFFFFFFFull;
  if (index0 < 0 || low + static_cast<std::uint64_t>(values.size()) > (1ull << 32))
    throw py::value_error("index0 must be >= 0, and the call may not cross a multiple of 2**32");
  Bits out(values.size());
  round(values.data(), out.mutable_data(), values.size(),
        stochastic ? Rounding::kStochastic : Rounding::kNearest, random_key, index0);
  return out;
}

}  // namespace

void register_half(py::module_& m) {
  m.def("_widen_half", &widen_half, py::arg("bits"), py::arg("format"),
        "Testing aid: half bits (uint16, flattened) of 'bfloat16' or 'float16' as float32 values, "
        "by the active SIMD level's code.");
  m.def("_round_half", &round_half, py::arg("values"), py::arg("format"), py::arg("stochastic"),
        py::arg("random_key") = 0, py::arg("index0") = 0,
        "Testing aid: float32 values (flattened) rounded to half bits by the active SIMD level's "
        "code: to nearest even, or stochastically with the random bits of elements index0, "
        "index0 + 1, ... under random_key. The blocked sweep never lets a block cross a multiple "
        "of 2**32 elements; neither may a call here.");
}

}  // namespace fastopt::bindings
