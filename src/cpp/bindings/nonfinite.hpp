// Phase 1b of Updater.run: with nonfinite="skip" or "raise", check every grad (as converted) for
// inf and nan in one read-only pass, before anything is committed.
#pragma once

#include <cstdint>
#include <string>

#include "bindings/scratch.hpp"
#include "kernels/table.hpp"

namespace fastopt::bindings {

// What to do about inf or nan in a grad.
enum class Nonfinite { kPropagate, kSkip, kRaise };

// "propagate", "skip" or "raise" as a Nonfinite; false for any other string.
bool parse_nonfinite(const std::string& name, Nonfinite* out);
const char* nonfinite_name(Nonfinite mode);

// The first task (in params' order) whose grad holds inf or nan, or -1; with only_converted, among
// the tasks whose grad was converted here (the others are known finite: their norm was finite).
std::int64_t first_nonfinite(const KernelTable& table, Scratch& scratch, bool only_converted);

// Raises FloatingPointError naming task `task`'s key, with its counts of nan and inf.
[[noreturn]] void raise_nonfinite(const Scratch& scratch, std::int64_t task);

}  // namespace fastopt::bindings
