// CPU detection, FASTOPT_SIMD, and the kernel table chosen once at import.
#pragma once

#include <string>
#include <vector>

#include "kernels/table.hpp"

namespace fastopt {

struct SimdLevel {
  const char* name;
  KernelTable (*table)();
  bool (*cpu_has)();
};

// Every level compiled into this build, weakest first.
const std::vector<SimdLevel>& compiled_levels();

// The names of the compiled levels this CPU can run, weakest first.
std::vector<std::string> available_levels();

// Picks the level to use: `forced` (the value of FASTOPT_SIMD, or nullptr/empty for none) or else
// the strongest level the CPU has. Throws std::runtime_error with a message for the user when
// `forced` names no level or a level this CPU lacks.
const SimdLevel& choose_level(const char* forced);

}  // namespace fastopt
