#include "runtime/thread_pool.hpp"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <new>
#include <system_error>
#include <thread>
#include <vector>

#include "runtime/sharing_policy.hpp"

namespace fastopt::runtime {
namespace {

std::atomic<std::int64_t> g_helper_chunks{0};
std::atomic<int> g_forced_sharing{-1};  // -1: the policy decides; 0: never share; 1: always

class Pool {
 public:
  // Claims the pool for one job; false if another job holds it. An atomic flag, not a mutex: a
  // thread that somehow re-entered while holding it just runs alone (try_lock on a std::mutex the
  // thread already owns is undefined behaviour).
  bool try_hold() {
    bool expected = false;
    return held_.compare_exchange_strong(expected, true, std::memory_order_acquire);
  }
  void release() { held_.store(false, std::memory_order_release); }

  // How many helpers a job of `work_ns` wanting `threads` threads gets; the caller holds the pool.
  // Waking a sleeping worker costs the CALLER 5 to 65 us here (the futex wake becomes an IPI to a
  // halted vCPU), and the worker another 50 us or so to arrive: more than a medium job gains. So
  // sleeping workers are woken only for large jobs, or when calls come back to back, where the
  // pool then stays awake (see spin_for_job). Even then a job is shared only while sharing jobs of
  // its size has been paying (sharing_policy.hpp): in company, it often does not.
  int claim(int threads, double work_ns, int kind, std::chrono::steady_clock::time_point now) {
    const bool back_to_back = now - last_call_ < std::chrono::microseconds(200);
    const bool awake = sleepers_.load() < static_cast<int>(workers_.size());
    const bool may_wake = work_ns >= kLargeJobNs || back_to_back || awake;
    const int forced = g_forced_sharing.load(std::memory_order_relaxed);
    learning_ = forced < 0;  // a forced choice is no evidence for the policy
    const bool share = learning_ ? may_wake && policy_.share(work_ns, kind) : forced == 1;
    return share ? start_workers(threads - 1) : 0;
  }

  // What the job took, for the policy; the caller holds the pool.
  void finish(double work_ns, int kind, bool shared, std::chrono::steady_clock::time_point start) {
    last_call_ = std::chrono::steady_clock::now();
    if (learning_) {
      const double seconds = std::chrono::duration<double>(last_call_ - start).count();
      policy_.record(work_ns, kind, shared, seconds);
    }
  }

  // Runs fn over the chunks with `helpers` helpers; the caller holds the pool.
  void run(std::int64_t num_chunks, int helpers, ChunkFn fn) {
    int sleeping;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &fn;
      num_chunks_ = num_chunks;
      slots_ = helpers;
      next_.store(0, std::memory_order_relaxed);
      open_ = true;
      generation_.fetch_add(1, std::memory_order_release);
      sleeping = sleepers_.load();
    }
    // Wake only as many sleepers as there are places: a worker that finds none goes back to sleep
    // at once, so workers left over from a high thread count cost nothing. (A spinning worker sees
    // the generation without a syscall and may take a place first; then a woken one finds none.)
    for (int i = 0; i < std::min(helpers, sleeping); ++i) wake_.notify_one();
    drain(fn, num_chunks);
    // Close the job, then wait only for the helpers that joined it: they are finishing a chunk.
    // A helper that has not woken up yet (waking takes ~10 us here, far more when another runtime's
    // threads are spinning on the other core) finds the job closed and goes back to sleep, so a
    // slow wake never holds up the caller: at worst it does every chunk itself.
    std::unique_lock<std::mutex> lock(mutex_);
    open_ = false;
    // The joined helpers are finishing one chunk: poll briefly rather than sleep, since being
    // woken would cost another tens of microseconds.
    for (int spin = 0; joined_ != 0 && spin < 20000; ++spin) {
      lock.unlock();
      pause();
      lock.lock();
    }
    done_.wait(lock, [&] { return joined_ == 0; });
    job_ = nullptr;
  }

 private:
  // Makes sure `wanted` workers exist; returns how many do (fewer if the OS refuses threads).
  int start_workers(int wanted) {
    while (static_cast<int>(workers_.size()) < wanted) {
      try {
        workers_.emplace_back([this] { work(); });
        workers_.back().detach();  // the pool lives until the process ends; see pool()
      } catch (const std::exception&) {
        // std::system_error (the OS refuses a thread) or std::bad_alloc: emplace_back left
        // workers_ as it was; run with the workers there are. Never let it escape: the caller
        // holds the pool.
        break;
      }
    }
    return std::min<int>(wanted, static_cast<int>(workers_.size()));
  }

  // Runs chunks until none is left; returns how many it ran.
  std::int64_t drain(ChunkFn fn, std::int64_t num_chunks) {
    for (std::int64_t ran = 0;; ++ran) {
      const std::int64_t chunk = next_.fetch_add(1, std::memory_order_relaxed);
      if (chunk >= num_chunks) return ran;
      fn(chunk);
    }
  }

  // After a job a worker polls for the next one for up to kSpinMicros before it sleeps. Waking a
  // sleeping thread takes tens of microseconds on a VM (its idle vCPU halts; measured here: a
  // helper joined a 160 us job ~40 us late back to back, and hardly at all after a 100 us pause),
  // which is the whole of a textbook network's update. Back-to-back updates find the worker
  // awake; in a training loop, where the forward and backward passes take milliseconds, it sleeps
  // and costs nothing. OpenMP, TBB and Eigen's pools spin likewise (OpenMP for far longer).
  static constexpr double kSpinMicros = 100.0;

  bool spin_for_job(std::uint64_t seen) const {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 1;; ++i) {
      if (generation_.load(std::memory_order_acquire) != seen) return true;
      pause();
      if (i % 64 == 0 &&
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
                  .count() > kSpinMicros) {
        return false;
      }
    }
  }

  static void pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();  // frees the core's shared resources for a sibling hyperthread
#else
    std::this_thread::yield();
#endif
  }

  void work() {
    std::uint64_t seen = 0;
    bool worked = false;  // spin for the next job only after working on this one
    for (;;) {
      if (worked) spin_for_job(seen);
      std::unique_lock<std::mutex> lock(mutex_);
      sleepers_.fetch_add(1);
      wake_.wait(lock, [&] { return generation_.load(std::memory_order_relaxed) != seen; });
      sleepers_.fetch_sub(1);
      seen = generation_.load(std::memory_order_relaxed);
      worked = open_ && slots_ > 0;
      if (!worked) continue;
      --slots_;
      ++joined_;
      const ChunkFn job = *job_;
      const std::int64_t num_chunks = num_chunks_;
      lock.unlock();
      g_helper_chunks.fetch_add(drain(job, num_chunks), std::memory_order_relaxed);
      lock.lock();
      // Under the mutex: this worker's writes to the arrays happen before the caller returns.
      if (--joined_ == 0) done_.notify_one();
    }
  }

  std::atomic<bool> held_{false};  // one job at a time: held by its Job
  std::mutex mutex_;               // guards everything below but next_
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  std::atomic<std::uint64_t> generation_{0};  // written under mutex_, polled without it
  std::atomic<int> sleepers_{0};              // workers blocked on wake_
  // When the last call that could use threads ended (guarded by held_); read by the next call.
  std::chrono::steady_clock::time_point last_call_{};
  SharingPolicy policy_;
  bool learning_ = true;  // the current job's timing goes to policy_
  const ChunkFn* job_ = nullptr;
  std::int64_t num_chunks_ = 0;
  int slots_ = 0;      // helpers that may still join the current job
  bool open_ = false;  // helpers may still join the current job
  int joined_ = 0;     // helpers draining the current job
  std::atomic<std::int64_t> next_{0};
};

// The pool is created on first use and never destroyed: its workers sleep until the process ends,
// so interpreter shutdown never waits on (or races with) a join. After fork() only the forking
// thread exists in the child, so the child forgets the parent's pool (leaking it: its mutexes may
// have been held at the fork) and makes a new one on first use.
std::atomic<Pool*> g_pool{nullptr};
std::mutex g_pool_mutex;

void forget_pool_after_fork() {
  g_pool.store(nullptr);
  new (&g_pool_mutex) std::mutex();  // it may have been locked by another thread at the fork
}

// Registered when the module is loaded, before any thread can be making the pool: registered on
// first use instead (inside the locked section that makes the pool), a fork() by another thread
// during that first use gave a child whose mutex stayed locked, with no handler to reset it.
const int g_forget_after_fork = pthread_atfork(nullptr, nullptr, &forget_pool_after_fork);

Pool& pool() {
  Pool* current = g_pool.load(std::memory_order_acquire);
  if (current != nullptr) return *current;
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  current = g_pool.load(std::memory_order_acquire);
  if (current == nullptr) {
    current = new Pool();
    g_pool.store(current, std::memory_order_release);
  }
  return *current;
}

int initial_threads() {
  if (const char* env = std::getenv("FASTOPT_NUM_THREADS")) {
    const int threads = std::atoi(env);
    if (threads >= 1) return threads;
  }
  return available_cores();
}

std::atomic<int> g_threads{initial_threads()};

}  // namespace

int available_cores() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return std::max(1u, std::thread::hardware_concurrency());
}

void force_sharing(int mode) { g_forced_sharing.store(mode < 0 ? -1 : mode > 0 ? 1 : 0); }

std::int64_t chunks_run_by_helpers() { return g_helper_chunks.load(std::memory_order_relaxed); }

int num_threads() { return g_threads.load(std::memory_order_relaxed); }

void set_num_threads(int threads) { g_threads.store(std::max(1, threads)); }

Job::Job(int threads, double work_ns, int kind) : work_ns_(work_ns), kind_(kind) {
  if (threads <= 1) return;
  Pool& p = pool();
  if (!p.try_hold()) return;  // another job has the pool: this one runs alone
  start_ = std::chrono::steady_clock::now();
  try {
    helpers_ = p.claim(threads, work_ns, kind, start_);
  } catch (...) {  // nothing in claim should throw; if it does, the pool must not stay held
    p.release();
    throw;
  }
  pool_ = &p;
}

Job::~Job() {
  if (pool_ == nullptr) return;
  Pool& p = *static_cast<Pool*>(pool_);
  p.finish(work_ns_, kind_, shared_, start_);
  p.release();
}

void Job::run(std::int64_t num_chunks, ChunkFn fn) {
  if (helpers_ == 0 || num_chunks <= 1) {
    for (std::int64_t c = 0; c < num_chunks; ++c) fn(c);
    return;
  }
  shared_ = true;
  const auto helpers = std::min<std::int64_t>(helpers_, num_chunks - 1);
  static_cast<Pool*>(pool_)->run(num_chunks, static_cast<int>(helpers), fn);
}

void parallel_for(std::int64_t num_chunks, int threads, ChunkFn fn, double work_ns, int kind) {
  Job job(static_cast<int>(std::min<std::int64_t>(threads, num_chunks)), work_ns, kind);
  job.run(num_chunks, fn);
}

}  // namespace fastopt::runtime
