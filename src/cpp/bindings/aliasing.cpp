#include "bindings/aliasing.hpp"

#include <algorithm>
#include <cstdint>

#include "bindings/predicates.hpp"

namespace fastopt::bindings {

bool one_writes_anothers_memory(const std::vector<runtime::Task>& tasks,
                                const std::vector<TaskOrigin>& origins) {
  struct Range {
    std::uintptr_t begin, end;
    std::size_t task;
  };
  auto range = [&](const void* data, std::size_t t) {
    const auto begin = reinterpret_cast<std::uintptr_t>(data);
    const std::int64_t bytes = bytes_of(origins[t].dtype);
    return Range{begin, begin + static_cast<std::uintptr_t>(tasks[t].size * bytes), t};
  };
  std::vector<Range> params;
  params.reserve(tasks.size());
  for (std::size_t t = 0; t < tasks.size(); ++t) params.push_back(range(tasks[t].ops.param, t));
  std::sort(params.begin(), params.end(),
            [](const Range& a, const Range& b) { return a.begin < b.begin; });
  for (std::size_t i = 1; i < params.size(); ++i) {
    if (params[i].begin < params[i - 1].end) return true;  // sorted and so far disjoint
  }
  for (std::size_t t = 0; t < tasks.size(); ++t) {
    const Range grad = range(tasks[t].ops.grad, t);
    // The params are disjoint and sorted, so those that overlap the grad are the run just before
    // the first param starting at or after its end.
    auto it = std::lower_bound(params.begin(), params.end(), grad.end,
                               [](const Range& r, std::uintptr_t end) { return r.begin < end; });
    while (it != params.begin()) {
      --it;
      if (it->end <= grad.begin) break;
      if (it->task != t) return true;
    }
  }
  return false;
}

}  // namespace fastopt::bindings
