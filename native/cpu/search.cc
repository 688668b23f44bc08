// Search (native/core/ops/search.h), the mirror of native/cuda/search.cu.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "../core/ops.h"
#include "threadpool.h"

namespace lowrank::cpu {

// Rows in parallel. Each row: one pass over its columns keeping the k best keys (topk_key) in
// a min-heap (O(cols·log k)), then the heap sorted best first (O(k·log k)). Keys are distinct,
// so the result is the same whatever the thread count.
void topk(const ops::TopK& a) {
  const int64_t cols = a.cols, k = a.k;
  const float* scores = a.scores.as<const float>();
  int32_t* indices = a.indices.as<int32_t>();
  float* values = a.values.as<float>();
  const int64_t rows_per_task = std::max<int64_t>(1, 16384 / cols);
  const int64_t tasks = (a.rows + rows_per_task - 1) / rows_per_task;
  const std::greater<uint64_t> worse_first;  // the heap's top is its worst key
  parallel_for(tasks, [&](int64_t task) {
    std::vector<uint64_t> heap;
    heap.reserve(static_cast<size_t>(k));
    for (int64_t r = task * rows_per_task, end = std::min(a.rows, r + rows_per_task); r < end; ++r) {
      const float* row = scores + r * cols;
      heap.clear();
      for (int64_t j = 0; j < k; ++j) heap.push_back(ops::topk_key(row[j], j));
      std::make_heap(heap.begin(), heap.end(), worse_first);
      for (int64_t j = k; j < cols; ++j) {
        const uint64_t key = ops::topk_key(row[j], j);
        if (key <= heap.front()) continue;
        std::pop_heap(heap.begin(), heap.end(), worse_first);
        heap.back() = key;
        std::push_heap(heap.begin(), heap.end(), worse_first);
      }
      std::sort_heap(heap.begin(), heap.end(), worse_first);  // best first
      for (int64_t i = 0; i < k; ++i) {
        const int32_t j = ops::topk_column(heap[i]);
        indices[r * k + i] = j;
        values[r * k + i] = row[j];
      }
    }
  });
}

}  // namespace lowrank::cpu
