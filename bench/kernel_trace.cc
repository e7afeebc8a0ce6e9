// A CUDA injection library (loaded by the driver when CUDA_INJECTION64_PATH names it) that writes
// the GPU start and end of every kernel, memcpy and memset, graph nodes included, to
// $LOOM_TRACE_OUT (default /tmp/trace.csv) as CSV: kind (K, C, S), start_ns, end_ns, graph_id,
// grid_x (bytes for copies), name. Unlike Nsight Compute, which replays each kernel alone, these are
// the times inside a CUDA-graph replay; bench/trace_summary.py sums one replay by kernel. Nsight
// Systems does the same but is not on every GPU machine; CUPTI ships with the toolkit.
//   CUDA_INJECTION64_PATH=build/bench/libloom_kernel_trace.so LOOM_TRACE_OUT=t.csv ./build/loom bench latency ...
#include <cupti.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cxxabi.h>
#include <mutex>
#include <string>
static FILE* out;
static std::mutex mu;
#if CUPTI_API_VERSION >= 130000
using Kernel = CUpti_ActivityKernel10;
#else
using Kernel = CUpti_ActivityKernel9;
#endif
// CUPTI asks for buffers to fill and hands them back full (or at the flush at exit).
static void CUPTIAPI requested(uint8_t** buf, size_t* size, size_t* max) {
  *size = 8 << 20; *buf = static_cast<uint8_t*>(aligned_alloc(8, *size)); *max = 0;
}
static std::string demangle(const char* n) {
  int st = 0; char* d = abi::__cxa_demangle(n, nullptr, nullptr, &st);
  std::string s = st == 0 && d ? d : n; free(d);
  for (auto& c : s) if (c == ',') c = ';';
  return s.substr(0, 160);
}
static void CUPTIAPI completed(CUcontext, uint32_t, uint8_t* buf, size_t size, size_t valid) {
  std::lock_guard<std::mutex> g(mu);
  CUpti_Activity* r = nullptr;
  while (cuptiActivityGetNextRecord(buf, valid, &r) == CUPTI_SUCCESS) {
    if (r->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL || r->kind == CUPTI_ACTIVITY_KIND_KERNEL) {
      auto* k = reinterpret_cast<Kernel*>(r);
      fprintf(out, "K,%llu,%llu,%u,%d,%s\n", (unsigned long long)k->start, (unsigned long long)k->end, k->graphId, k->gridX, demangle(k->name).c_str());
    } else if (r->kind == CUPTI_ACTIVITY_KIND_MEMCPY) {
      auto* m = reinterpret_cast<CUpti_ActivityMemcpy6*>(r);
      fprintf(out, "C,%llu,%llu,%u,%llu,memcpy kind %d\n", (unsigned long long)m->start, (unsigned long long)m->end, m->graphId, (unsigned long long)m->bytes, m->copyKind);
    } else if (r->kind == CUPTI_ACTIVITY_KIND_MEMSET) {
      auto* m = reinterpret_cast<CUpti_ActivityMemset4*>(r);
      fprintf(out, "S,%llu,%llu,%u,%llu,memset\n", (unsigned long long)m->start, (unsigned long long)m->end, m->graphId, (unsigned long long)m->bytes);
    }
  }
  free(buf);
}
static void flush_at_exit() { cuptiActivityFlushAll(1); if (out) fclose(out); }
extern "C" int InitializeInjection() {
  const char* path = getenv("LOOM_TRACE_OUT");
  out = fopen(path ? path : "/tmp/trace.csv", "w");
  cuptiActivityRegisterCallbacks(requested, completed);
  cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL);
  cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY);
  cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMSET);
  atexit(flush_at_exit);
  return 1;
}
