// A persistent pool of worker threads, and the process-wide thread count.
//
// Plain std::thread, not OpenMP: the OpenMP runtimes that NumPy's BLAS and PyTorch load into the
// same process would otherwise fight over the cores (and libgomp's spinning threads would steal
// the memory bandwidth that these kernels live on).
#pragma once

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

// Runs fn(c) for every chunk c in [0, num_chunks) on up to `threads` threads, the calling thread
// being one of them, and returns when all are done. Chunks are handed out dynamically, so a thread
// slowed by the rest of the machine takes fewer. When another thread is already using the pool,
// the caller runs every chunk itself: never a deadlock, never a wait for another caller's work.
// Sleeping workers are woken only for a `large` job or for calls that come back to back; otherwise
// the caller runs the chunks itself (waking a thread would cost more than it saves).
void parallel_for(std::int64_t num_chunks, int threads, ChunkFn fn, bool large = true);

// How many chunks helper threads (not callers) have run since the process started: lets the tests
// check that work really was shared, since whether a helper joins depends on timing.
std::int64_t chunks_run_by_helpers();

}  // namespace fastopt::runtime
