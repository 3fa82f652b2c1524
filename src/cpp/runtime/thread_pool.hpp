// A persistent pool of worker threads, and the process-wide thread count.
//
// Plain std::thread, not OpenMP: the OpenMP runtimes that NumPy's BLAS and PyTorch load into the
// same process would otherwise fight over the cores (and libgomp's spinning threads would steal
// the memory bandwidth that these kernels live on).
#pragma once

#include <chrono>
#include <cstdint>

namespace fastopt::runtime {

// A non-owning reference to a callable taking a chunk index; no allocation, unlike std::function.
class ChunkFn {
 public:
  template <class F>
  explicit ChunkFn(F& f)
      : object_(&f),
        call_([](void* object, std::int64_t chunk) { (*static_cast<F*>(object))(chunk); }) {}
  void operator()(std::int64_t chunk) const { call_(object_, chunk); }

 private:
  void* object_;
  void (*call_)(void*, std::int64_t);
};

// The cores this process may run on (its affinity mask), at least 1.
int available_cores();

// The thread count used by parallel_for: FASTOPT_NUM_THREADS at import if set, else
// available_cores(). set_num_threads(n) requires n >= 1.
int num_threads();
void set_num_threads(int threads);

// From this much work (nanoseconds on one thread) a job wakes sleeping workers even when it is not
// one of a run of back-to-back calls: waking costs ~0.1 ms on a VM (the caller's futex wake, the
// worker's start).
inline constexpr double kLargeJobNs = 250e3;

// One job's claim on the pool, from its construction to its destruction. It decides at once how
// many threads the job will really use, so that a job that will run alone can take the plain
// one-thread path from the start (measured: the chunked path and the checks that only several
// threads need cost ~5% of a cold 120k-element update). Only one job holds the pool at a time;
// a job made while another holds it runs alone: never a deadlock, never a wait for another
// caller's work. Sleeping workers are woken only for a job of kLargeJobNs or more, or for calls
// that come back to back (waking a thread would cost more than it saves), and a job is shared
// only while sharing jobs of its size has been faster than running them alone
// (sharing_policy.hpp). Results never depend on any of it.
class Job {
 public:
  // `threads`: the most the job may use; `work_ns`: its estimated time on one thread; `kind`:
  // what it runs (a kernel index, or one of the kJob* kinds), which the policy keeps apart.
  Job(int threads, double work_ns, int kind);
  ~Job();
  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;

  // 1 when the job runs on the caller alone.
  int threads() const { return 1 + helpers_; }

  // Runs fn(c) for every chunk c in [0, num_chunks) on up to threads() threads, the calling thread
  // being one of them, and returns when all are done. Chunks are handed out dynamically, so a
  // thread slowed by the rest of the machine takes fewer. Call it at most once.
  void run(std::int64_t num_chunks, ChunkFn fn);

 private:
  void* pool_ = nullptr;  // the pool, while this job holds it
  int helpers_ = 0;
  bool shared_ = false;
  double work_ns_;
  int kind_;
  std::chrono::steady_clock::time_point start_{};
};

// A Job of min(threads, num_chunks) threads running fn over the chunks.
void parallel_for(std::int64_t num_chunks, int threads, ChunkFn fn, double work_ns, int kind);

// Job kinds other than an update's kernel (whose kinds are the kernel indices, >= 0).
inline constexpr int kJobNorm = -1;            // the sum of squares of clip_grad_norm, global_norm
inline constexpr int kJobNonfiniteCheck = -2;  // nonfinite="skip"/"raise"
inline constexpr int kJobSearch = -3;          // a pass of L-BFGS or CG (bindings/search.cpp)

// How many chunks helper threads (not callers) have run since the process started: lets the tests
// check that work really was shared, since whether a helper joins depends on timing.
std::int64_t chunks_run_by_helpers();

// Testing aid: 1 makes every job of two or more threads shared (so that the tests of bit-identical
// results really split work between threads), 0 none, -1 (the default) lets the policy decide.
void force_sharing(int mode);

}  // namespace fastopt::runtime
