// loom serve --model-path DIR [--port 30000] ...: the OpenAI-compatible server. SIGTERM or SIGINT
// stops it gracefully (new requests get 503, in-flight ones get --shutdown-timeout seconds to
// finish) and it exits 0.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

#include <cstdio>
#include <filesystem>
#include <thread>

#include "loom/cli/model_flags.h"
#include "loom/cli/parallel_flags.h"
#include "loom/cli/tokenizer_flags.h"
#include "loom/engine/engine.h"
#include "loom/engine/heap.h"
#include "loom/server/chat_output_parser.h"
#include "loom/server/http_server.h"

namespace loom::cli {
namespace {

int g_stop_pipe[2] = {-1, -1};

void on_stop_signal(int sig) {
  const char c = static_cast<char>(sig);
  [[maybe_unused]] auto n = ::write(g_stop_pipe[1], &c, 1);  // async-signal-safe
}

std::string default_model_name(const std::string& model_path) {
  auto p = std::filesystem::path(model_path).lexically_normal();
  if (!p.has_filename()) p = p.parent_path();  // "dir/" -> "dir"
  return p.filename().string();
}

}  // namespace

int cmd_serve(Args& args) {
  engine::bound_heap_fragmentation();  // a server's RSS must not creep up (engine/heap.h)
  runtime::RunnerOptions runner_options = parse_runner_flags(args);
  LOOM_CHECK_ARG(!parse_parallel_run_flags(args, runner_options),
                 "--report-comm is for loom logits/generate (the server keeps no per-request counts)");
  const std::string tokenizer_dir = args.string("tokenizer", runner_options.model_path);

  server::ServerOptions so;
  so.host = args.string("host", so.host);
  so.port = static_cast<int>(args.integer({"port"}, so.port, 0, 65535));
  so.api_key = args.string("api-key", "");
  so.tool_call_parser = args.string("tool-call-parser", "");
  LOOM_CHECK_ARG(server::known_tool_call_parser(so.tool_call_parser), "--tool-call-parser: unknown '",
                 so.tool_call_parser, "' (allowed: qwen3, hermes)");
  so.reasoning_parser = args.string("reasoning-parser", "");
  LOOM_CHECK_ARG(server::known_reasoning_parser(so.reasoning_parser), "--reasoning-parser: unknown '",
                 so.reasoning_parser, "' (allowed: qwen3)");
  so.served_model_name = args.string("served-model-name", default_model_name(runner_options.model_path));
  LOOM_CHECK_ARG(!so.served_model_name.empty(), "--served-model-name must not be empty");
  so.max_request_bytes = static_cast<size_t>(args.integer({"max-request-bytes"}, static_cast<int64_t>(so.max_request_bytes), 1024, int64_t{1} << 32));
  // --http-threads: the server's I/O threads (default 4). Every connection is served by them
  // asynchronously, so it bounds threads, not connections (thousands of streams are fine).
  so.http_threads = static_cast<int>(args.integer({"http-threads"}, so.http_threads, 1, 4096));
  so.shutdown_grace = std::chrono::milliseconds(1000 * args.integer({"shutdown-timeout"}, 10, 0, 3600));

  engine::EngineOptions eo;
  // On a GPU a prefill step takes 2048 tokens (measured: bench/NOTES.md, TTFT against throughput), and as many
  // requests run as the largest decode graph holds, so every decode step replays a graph.
  const bool gpu = runner_options.device.is_cuda();
  eo.scheduler.chunked_prefill_size = args.integer({"chunked-prefill-size"}, gpu ? 2048 : eo.scheduler.chunked_prefill_size, 1, 1 << 20);
  // With nobody decoding, a prefill step may take more (an 8K prompt in one step, as in `bench latency`).
  eo.scheduler.max_prefill_tokens = args.integer({"max-prefill-tokens"}, gpu ? 16384 : 0, 0, 1 << 22);
  const int64_t default_running = gpu && !runner_options.disable_cuda_graph ? runner_options.cuda_graph_max_bs
                                                                             : eo.scheduler.max_running_requests;
  eo.scheduler.max_running_requests = args.integer({"max-running-requests"}, default_running, 1, 1 << 16);
  eo.scheduler.disable_radix_cache = args.flag("disable-radix-cache");
  // Decode steps are queued behind the one running, the host's work for a step done meanwhile.
  eo.scheduler.overlap = !args.flag("disable-overlap-schedule");
  eo.max_queue = args.integer({"max-queued-requests"}, eo.max_queue, 1, 1 << 20);
  args.finish();

  auto tok = load_tokenizer_flag(tokenizer_dir);
  const auto t_load = std::chrono::steady_clock::now();
  auto runner = runtime::create_runner(runner_options);
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count();
  std::string graphs;
  if (gpu && !runner_options.disable_cuda_graph) {
    graphs = ", decode CUDA graphs";
    if (!runner_options.disable_piecewise_cuda_graph && runner_options.parallel.world_size() == 1)
      graphs = str(", decode CUDA graphs, piecewise prefill graphs up to ",
                   runner_options.piecewise_cuda_graph_max_tokens, " tokens");
  }
  std::fprintf(stderr, "loom serve: model ready in %.1f s (weights, KV pool of %lld tokens%s); %lld running requests at most\n",
               load_s, static_cast<long long>(runner->kv_pool().num_pages() * runner->kv_pool().page_size()),
               graphs.c_str(), static_cast<long long>(eo.scheduler.max_running_requests));
  engine::Engine engine(std::move(runner), std::move(tok), eo);
  server::HttpServer http(engine, so);
  // A signal may land on any thread (BLAS starts its own before main), so the handler only
  // writes to a pipe; a waiter thread reads it and stops the server.
  LOOM_CHECK(::pipe(g_stop_pipe) == 0, "cannot create the shutdown pipe");
  struct sigaction sa = {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a client that vanished is a failed write, not a dead server

  const int port = http.bind();
  std::fprintf(stderr, "loom serve: '%s' listening on http://%s:%d\n", so.served_model_name.c_str(), so.host.c_str(), port);

  std::thread signal_waiter([&] {
    char sig = 0;
    while (::read(g_stop_pipe[0], &sig, 1) < 0 && errno == EINTR) {
    }
    if (sig != 0) std::fprintf(stderr, "loom serve: %s received, shutting down\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    http.stop();
  });
  http.serve();
  // serve() also returns when the listener fails: wake the waiter so it can be joined.
  const char none = 0;
  [[maybe_unused]] auto n = ::write(g_stop_pipe[1], &none, 1);
  signal_waiter.join();
  std::fprintf(stderr, "loom serve: stopped\n");
  return 0;
}

}  // namespace loom::cli
