// simd_level(), the available levels, and the table of algorithms.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdlib>
#include <stdexcept>

#include "bindings/active_level.hpp"

namespace fastopt::bindings {

namespace py = pybind11;

namespace {
const SimdLevel* g_level = nullptr;
}

const SimdLevel& active_level() { return *g_level; }

void register_dispatch(py::module_& m) {
  try {
    g_level = &choose_level(std::getenv("FASTOPT_SIMD"));
  } catch (const std::runtime_error& error) {
    // Raised from the module's import: the environment asks for something this machine can't do.
    throw py::import_error(error.what());
  }

  m.def(
      "simd_level", [] { return std::string(active_level().name); },
      "The name of the SIMD level in use: 'baseline', 'avx2' or 'avx512'.");
  m.def("available_simd_levels", &available_levels,
        "The SIMD levels compiled into this build that this CPU can run, weakest first.");
  m.def(
      "compiled_simd_levels",
      [] {
        std::vector<std::string> names;
        for (const auto& level : compiled_levels()) names.emplace_back(level.name);
        return names;
      },
      "Every SIMD level compiled into this build, weakest first.");
  m.def(
      "algorithms",
      [] {
        // {name: (flag names, {variant: (kernel index, number of states, number of scalars)})}
        py::dict out;
        const KernelTable table = active_level().table();
        for (int i = 0; i < table.size; ++i) {
          const KernelRow& row = table.rows[i];
          py::str name(row.name);
          if (!out.contains(name)) {
            py::tuple flags(row.num_flags);
            for (int f = 0; f < row.num_flags; ++f) flags[f] = py::str(row.flag_names[f]);
            out[name] = py::make_tuple(flags, py::dict());
          }
          py::dict variants = out[name].cast<py::tuple>()[1];
          variants[py::int_(row.variant)] = py::make_tuple(i, row.num_states, row.num_scalars);
        }
        return out;
      },
      "The kernel table: {name: (option flag names, {variant bits: (kernel index, number of "
      "state arrays, number of scalars)})}.");
}

}  // namespace fastopt::bindings
