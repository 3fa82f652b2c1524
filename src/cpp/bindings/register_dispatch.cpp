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

py::tuple names(const char* const* list, int count) {
  py::tuple out(count);
  for (int k = 0; k < count; ++k) out[k] = py::str(list[k]);
  return out;
}
}  // namespace

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
        // {name: {"flags": (...), "scalars": (...), "variants": {bits: (kernel, state names)}}}
        py::dict out;
        const KernelTable table = active_level().table();
        for (int i = 0; i < table.size; ++i) {
          const KernelRow& row = table.rows[i];
          py::str name(row.name);
          if (!out.contains(name)) {
            py::dict spec;
            spec["flags"] = names(row.flag_names, row.num_flags);
            spec["scalars"] = names(row.scalar_names, row.num_scalars);
            spec["variants"] = py::dict();
            spec["state_kinds"] = py::dict();
            out[name] = spec;
          }
          constexpr const char* kKinds[] = {"signed", "unsigned", "running_max"};
          py::dict kinds = out[name]["state_kinds"];
          for (int s = 0; s < row.num_states; ++s)
            kinds[py::str(row.state_names[s])] = kKinds[static_cast<int>(row.state_kinds[s])];
          py::dict variants = out[name]["variants"];
          variants[py::int_(row.variant)] =
              py::make_tuple(i, names(row.state_names, row.num_states));
        }
        return out;
      },
      "The algorithm spec: {name: {'flags': option names (bit k = flags[k]), 'scalars': the "
      "per-step scalar names in kernel order, 'variants': {option bits: (kernel index, state "
      "names)}, 'state_kinds': {state name: 'signed', 'unsigned' or 'running_max'}}}: what a "
      "state holds decides how state_format may store it.");
}

}  // namespace fastopt::bindings
