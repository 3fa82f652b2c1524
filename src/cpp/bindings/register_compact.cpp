// The int8 dynamic maps and the active level's block quantization, exposed for the tests
// (tests/test_compact_formats.py compares them with the NumPy reference,
// python/fastopt/_compact.py, and across levels): _core._quant_map, _core._quantize and
// _core._dequantize.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <tuple>

#include "bindings/active_level.hpp"
#include "bindings/compact_state.hpp"
#include "kernels/quant_map.hpp"

namespace fastopt::bindings {

namespace py = pybind11;

namespace {

using Codes = py::array_t<std::uint8_t, py::array::c_style | py::array::forcecast>;
using Floats = py::array_t<float, py::array::c_style | py::array::forcecast>;

Floats copy_of(const float* values, py::ssize_t n) {
  Floats out(n);
  std::copy(values, values + n, out.mutable_data());
  return out;
}

py::tuple map_of(bool is_signed) {
  const QuantMap& map = quant_map(is_signed);
  return py::make_tuple(copy_of(map.value, 256), copy_of(map.threshold, 8), copy_of(map.base, 8),
                        copy_of(map.step, 8), copy_of(map.inv_step, 8), copy_of(map.cap, 8));
}

std::tuple<Codes, Floats> quantize(const Floats& values, bool is_signed) {
  const std::int64_t n = values.size();
  Codes codes(n);
  Floats absmax(absmax_count(n));
  const QuantizeFn fn = active_level().table().quantize;
  for (std::int64_t b = 0; b < n; b += kQuantBlock) {
    fn(values.data() + b, codes.mutable_data() + b, absmax.mutable_data() + b / kQuantBlock,
       n - b < kQuantBlock ? n - b : kQuantBlock, quant_map(is_signed));
  }
  return {codes, absmax};
}

Floats dequantize(const Codes& codes, const Floats& absmax, bool is_signed) {
  const std::int64_t n = codes.size();
  if (absmax.size() != absmax_count(n))
    throw py::value_error("absmax must hold ceil(codes.size / 256) values");
  Floats out(n);
  const DequantizeFn fn = active_level().table().dequantize;
  for (std::int64_t b = 0; b < n; b += kQuantBlock) {
    fn(codes.data() + b, absmax.data()[b / kQuantBlock], out.mutable_data() + b,
       n - b < kQuantBlock ? n - b : kQuantBlock, quant_map(is_signed));
  }
  return out;
}

}  // namespace

void register_compact(py::module_& m) {
  m.def(
      "_quant_map", &map_of, py::arg("signed"),
      "Testing aid: the int8 dynamic map the kernels use: (values by code, thresholds D_0..D_6 and "
      "ONE, and base, step, inv_step, cap by level).");
  m.def("_quantize", &quantize, py::arg("values"), py::arg("signed"),
        "Testing aid: float32 values (flattened) as (codes, absmax), blocks of 256, by the active "
        "SIMD level's code.");
  m.def("_dequantize", &dequantize, py::arg("codes"), py::arg("absmax"), py::arg("signed"),
        "Testing aid: codes and their blocks' absmaxes back to float32, by the active level.");
}

}  // namespace fastopt::bindings
