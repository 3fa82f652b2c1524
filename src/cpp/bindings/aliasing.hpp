// Keys that share memory: tied weights, overlapping views, a param given as another key's grad.
#pragma once

#include <vector>

#include "bindings/scratch.hpp"
#include "runtime/executor.hpp"

namespace fastopt::bindings {

// True if a key's param overlaps another key's param or grad: tied weights (one array under two
// keys), or a view of one param given as another key's grad. The book updates keys one after the
// other, so each key sees the previous keys' writes; split across threads those writes would race
// and the result would depend on timing. Such updates run on one thread, in params' order, which
// gives the book's numbers. Only asked when more than one thread would run (jobs of 40 us or more),
// so the sort costs nothing that matters. (A key's grad overlapping its own param was copied in
// validation.)
bool one_writes_anothers_memory(const std::vector<runtime::Task>& tasks,
                                const std::vector<TaskOrigin>& origins);

}  // namespace fastopt::bindings
