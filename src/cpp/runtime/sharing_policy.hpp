// Whether sharing a job with the pool's helpers pays, learned from the wall times of recent jobs.
//
// Why learn it: in a training loop the other cores are rarely free. OpenBLAS (NumPy's BLAS) keeps
// a thread busy-waiting on each core it used for up to ~0.1 s after every BLAS call, without a
// syscall, so through a whole forward and backward pass it holds the second core; libgomp
// (PyTorch's OpenMP) spins likewise after each parallel region. A helper woken then either shares
// the caller's core (the kernel's wake-affine placement puts it there when no core is idle) or
// fights the spinner for the other one: measured here, a 5.8M-element Adam step took 1.10x as
// long with 2 threads as with 1, inside a NumPy training loop, and 0.78x once OpenBLAS was told to
// sleep (OPENBLAS_THREAD_TIMEOUT=4). Nothing a process can read cheaply says which case it is in;
// the time a job takes does. Results never depend on the choice: only who computes which chunk.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace fastopt::runtime {

// The evidence is pairs of neighbouring jobs of one size class, one shared and one alone: their
// ratio, since over a few jobs' time the machine's drift (up to 2x here, +-20% from job to job in
// company) hits both alike; the same reason the benchmarks take medians of per-round ratios.
class SharingPolicy {
 public:
  // The latest pair ratios kept per size class; their median decides.
  static constexpr int kPairs = 7;
  // Once that many pairs are in, the other path is taken once every so many decisions (giving two
  // new pairs, with the jobs before and after it), so that the choice follows the machine when the
  // company changes: the loop ends, another pool goes to sleep. The interval doubles from
  // kProbeFirst to kProbeAtMost while the evidence agrees with the choice, and falls back to
  // kProbeFirst when a pair disagrees: measured back to back, probing every 8th job cost 9-17% of
  // a textbook network's update (an alone job takes 1.6-1.8x a shared one there); at 64, ~1%.
  static constexpr std::uint32_t kProbeFirst = 8;
  static constexpr std::uint32_t kProbeAtMost = 64;

  // Whether a job of kind `kind` (its kernel, or the norm, or the check) and about `work_ns`
  // nanoseconds of single-thread work should be shared.
  bool share(double work_ns, int kind) {
    Bucket& b = bucket(work_ns, kind);
    // Learning: alternate, starting with sharing (as before any learning).
    if (b.count < kPairs) return !(b.has_last && b.last_shared);
    const bool better = median_ratio(b) < 1.0;
    if (better != b.choice) {
      b.choice = better;
      b.interval = kProbeFirst;
    }
    if (++b.since_probe < b.interval) return better;
    b.since_probe = 0;
    b.interval = std::min(2 * b.interval, kProbeAtMost);
    return !better;
  }

  // What a job of `work_ns` and `kind` took, run `shared` or alone.
  void record(double work_ns, int kind, bool shared, double seconds) {
    if (!(work_ns > 0) || !(seconds > 0)) return;
    Bucket& b = bucket(work_ns, kind);
    const double cost = seconds * 1e9 / work_ns;  // wall time per unit of estimated work
    if (b.has_last && b.last_shared != shared) {
      const double ratio = shared ? cost / b.last_cost : b.last_cost / cost;  // shared / alone
      b.ratios[b.next] = ratio;
      b.next = (b.next + 1) % kPairs;
      if (b.count < kPairs) ++b.count;
      if ((ratio < 1.0) != b.choice) b.interval = kProbeFirst;  // look again soon
    }
    b.has_last = true;
    b.last_shared = shared;
    b.last_cost = cost;
  }

 private:
  // A size class is one kind of job within a factor of two of estimated work. Kinds are kept apart
  // because the estimate's error differs between kernels (a norm pass took 2.95 ns per estimated
  // ns, an SGD step 5.76): mixed, a clip-then-step loop paired "norm shared" with "step alone"
  // and measured the kernels, not the sharing.
  struct Bucket {
    std::int64_t key = -1;  // kind and size class; a bucket taken over by another key starts over
    double ratios[kPairs] = {};
    int count = 0, next = 0;
    bool has_last = false, last_shared = false;
    double last_cost = 0;
    bool choice = true;  // the path the evidence favoured at the last decision
    std::uint32_t since_probe = 0, interval = kProbeFirst;
  };
  // Direct-mapped: a process runs a handful of kinds and sizes; two that collide take turns
  // (each relearning), they never mix their evidence.
  static constexpr int kBuckets = 256;  // the hash below keeps the top 8 bits

  static double median_ratio(const Bucket& b) {
    double sorted[kPairs];
    std::copy(b.ratios, b.ratios + kPairs, sorted);
    std::sort(sorted, sorted + kPairs);
    return sorted[kPairs / 2];
  }

  Bucket& bucket(double work_ns, int kind) {
    const int exponent = work_ns >= 1 ? std::min(std::ilogb(work_ns), 63) : 0;
    const std::int64_t key =
        static_cast<std::int64_t>(static_cast<std::uint32_t>(kind)) * 64 + exponent;
    Bucket& b = buckets_[static_cast<std::uint64_t>(key) * 0x9E3779B97F4A7C15ull >> 56];
    if (b.key != key) b = Bucket{key};
    return b;
  }

  Bucket buckets_[kBuckets];
};

}  // namespace fastopt::runtime
