#include "kernels/dispatch.hpp"

#include <stdexcept>

namespace fastopt {

// Defined by levels/kernel_table.cpp, once per compiled level.
namespace baseline {
KernelTable kernel_table();
}
#if FASTOPT_X86_LEVELS
namespace avx2 {
KernelTable kernel_table();
}
namespace avx512 {
KernelTable kernel_table();
}
#endif

namespace {

bool always() { return true; }

#if FASTOPT_X86_LEVELS
// __builtin_cpu_supports also checks that the OS saves the wide registers (XGETBV), so a level is
// only offered where its instructions can actually run.
bool cpu_has_x86_64_v3() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("bmi2");
}
bool cpu_has_x86_64_v4() {
  __builtin_cpu_init();
  return cpu_has_x86_64_v3() && __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vl");
}
#endif

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& name : names) out += (out.empty() ? "" : ", ") + name;
  return out;
}

}  // namespace

const std::vector<SimdLevel>& compiled_levels() {
  static const std::vector<SimdLevel> levels = {
      {"baseline", &baseline::kernel_table, &always},
#if FASTOPT_X86_LEVELS
      {"avx2", &avx2::kernel_table, &cpu_has_x86_64_v3},
      {"avx512", &avx512::kernel_table, &cpu_has_x86_64_v4},
#endif
  };
  return levels;
}

std::vector<std::string> available_levels() {
  std::vector<std::string> names;
  for (const auto& level : compiled_levels())
    if (level.cpu_has()) names.emplace_back(level.name);
  return names;
}

const SimdLevel& choose_level(const char* forced) {
  const auto& levels = compiled_levels();
  if (forced == nullptr || *forced == '\0') {
    const SimdLevel* best = &levels.front();
    for (const auto& level : levels)
      if (level.cpu_has()) best = &level;
    return *best;
  }
  std::vector<std::string> compiled;
  for (const auto& level : levels) {
    compiled.emplace_back(level.name);
    if (std::string(forced) != level.name) continue;
    if (level.cpu_has()) return level;
    throw std::runtime_error("FASTOPT_SIMD=" + std::string(forced) +
                             " asks for a SIMD level this CPU does not support; it supports: " +
                             join(available_levels()) +
                             ". Unset FASTOPT_SIMD to use the best level automatically.");
  }
  throw std::runtime_error("FASTOPT_SIMD=" + std::string(forced) +
                           " is not a SIMD level of this build; choose one of: " + join(compiled) +
                           " (or unset it).");
}

}  // namespace fastopt
