#include "threadpool.h"

#include <sched.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace lowrank::cpu {
namespace {

thread_local bool t_in_pool_task = false;

int default_threads() {
  if (const char* env = std::getenv("LOWRANK_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const unsigned hc = std::thread::hardware_concurrency();
  return hc > 0 ? static_cast<int>(hc) : 1;
}

class Pool {
 public:
  Pool() { resize(default_threads()); }
  ~Pool() { stop_workers(); }

  int size() const { return size_; }

  void resize(int n) {
    std::lock_guard<std::mutex> run(run_mutex_);
    stop_workers();
    size_ = n < 1 ? 1 : n;
    stopping_ = false;
    for (int i = 1; i < size_; ++i) workers_.emplace_back([this] { worker_loop(); });
  }

  void run(int64_t n, const std::function<void(int64_t)>& fn) {
    if (n <= 0) return;
    if (n == 1 || size_ == 1 || t_in_pool_task) {
      for (int64_t i = 0; i < n; ++i) fn(i);
      return;  // exceptions propagate directly
    }
    std::lock_guard<std::mutex> run(run_mutex_);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      fn_ = &fn;
      total_ = n;
      next_.store(0);
      finished_ = 0;
      ++generation_;
    }
    wake_.notify_all();
    const int64_t mine = drain();
    std::unique_lock<std::mutex> lock(mutex_);
    finished_ += mine;
    done_.wait(lock, [&] { return finished_ == total_ && busy_ == 0; });
    fn_ = nullptr;
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

 private:
  // Runs tasks until none are left; returns how many this thread ran. A task that throws is
  // counted as run, and the first exception is rethrown to the caller of run().
  int64_t drain() {
    int64_t count = 0;
    t_in_pool_task = true;
    for (;;) {
      const int64_t i = next_.fetch_add(1);
      if (i >= total_) break;
      try {
        (*fn_)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
      }
      ++count;
    }
    t_in_pool_task = false;
    return count;
  }

  void worker_loop() {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
        if (fn_ == nullptr) continue;
        ++busy_;
      }
      const int64_t mine = drain();
      {
        std::lock_guard<std::mutex> lock(mutex_);
        finished_ += mine;
        --busy_;
      }
      done_.notify_all();
    }
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  int size_ = 1;
  std::vector<std::thread> workers_;
  std::mutex run_mutex_;  // one parallel region at a time
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int64_t)>* fn_ = nullptr;
  int64_t total_ = 0;
  std::atomic<int64_t> next_{0};
  int64_t finished_ = 0;
  int busy_ = 0;
  uint64_t generation_ = 0;
  bool stopping_ = false;
  std::exception_ptr error_;
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: workers may outlive static teardown
  return *p;
}

}  // namespace

int threads() { return pool().size(); }

void set_threads(int n) { pool().resize(n > 0 ? n : default_threads()); }

void parallel_for(int64_t n, const std::function<void(int64_t)>& fn) { pool().run(n, fn); }

}  // namespace lowrank::cpu
