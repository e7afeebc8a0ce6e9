#include "loom/runtime/parallel_runner.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "loom/cache/device_kv_sizing.h"
#include "loom/parallel/gloo_communicator.h"
#include "loom/parallel/graph_registry.h"
#include "loom/parallel/layout.h"
#include "loom/parallel/moe_token_plan.h"
#include "loom/parallel/process_groups.h"
#include "loom/parallel/rank_launcher.h"
#include "loom/runtime/cuda_graph_runner.h"
#include "loom/runtime/rank_threads.h"
#ifdef LOOM_HAVE_CUDA
#include "loom/tensor/cuda_check.h"
#include "loom/tensor/cuda_stream.h"
#endif

namespace loom::runtime {
namespace {

using parallel::Family;

layers::MoeDispatch parse_dispatch(const std::string& s) {
  if (s == "auto") return layers::MoeDispatch::automatic;
  if (s == "gather") return layers::MoeDispatch::gather;
  if (s == "all_to_all") return layers::MoeDispatch::all_to_all;
  throw InvalidArgument(str("--moe-dispatch: unknown '", s, "' (allowed: auto, gather, all_to_all)"));
}

int visible_gpus() {
#ifdef LOOM_HAVE_CUDA
  return cuda::device_count();
#else
  return 0;
#endif
}

// Which device communicator CUDA ranks use, and the GPU of each local rank.
parallel::DeviceBackend choose_backend(const RunnerOptions& o, const parallel::ParallelConfig& pc) {
  const std::string& b = o.dist_backend;
  LOOM_CHECK_ARG(b == "auto" || b == "nccl" || b == "device-copy" || b == "host-copy", "--dist-backend: unknown '",
                 b, "' (allowed: auto, nccl, device-copy, host-copy)");
  if (o.device.is_cpu()) {
    LOOM_CHECK_ARG(b == "auto" || b == "host-copy", "--dist-backend ", b,
                   " is for --device cuda (CPU ranks use auto: Gloo, or host-copy)");
    return parallel::DeviceBackend::nccl;  // unused: CPU groups use their CPU communicators
  }
  LOOM_CHECK_ARG(b != "host-copy", "--dist-backend host-copy is for --device cpu (on GPUs: nccl or device-copy)");
  const int visible = visible_gpus();
  if (b == "device-copy") {
    LOOM_CHECK_ARG(o.device.index < visible, "--dist-backend device-copy runs every rank on ", o.device.str(),
                   " but ", visible, " GPUs are visible");
    return parallel::DeviceBackend::device_copy;
  }
  const int need = o.device.index + pc.ranks_per_node();
  LOOM_CHECK_ARG(need <= visible, pc.str(), ": ", pc.ranks_per_node(), " ranks on this node need ", need,
                 " GPUs (one per rank from ", o.device.str(), ") but ", visible,
                 " are visible; --dist-backend device-copy runs every rank on one GPU (for testing)");
  return parallel::DeviceBackend::nccl;
}

struct Rank {
  std::unique_ptr<parallel::ProcessGroups> groups;
  std::map<std::vector<int>, layers::Group> extra;  // groups that are no family's
  std::shared_ptr<layers::ParallelState> state;
  std::unique_ptr<model::CausalLM> model;
  std::unique_ptr<cache::KvPool> pool;
  Device device = Device::cpu();
  cache::KvBudget kv;  // what this rank's GPU allows its KV pool (CUDA)
  parallel::GraphRegistry registry;  // every communicator the forward can touch
#ifdef LOOM_HAVE_CUDA
  std::unique_ptr<CudaGraphRunner> graphs;  // decode steps (CUDA over NCCL)
#endif
  Tensor logits;

  // Every distinct communicator of this rank.
  std::vector<parallel::Communicator*> communicators() const {
    std::set<parallel::Communicator*> all;
    if (!groups) return {};  // failed before its groups existed
    for (Family f : parallel::kAllFamilies) {
      all.insert(&groups->device(f));
      all.insert(&groups->cpu(f));
    }
    for (const auto& [_, g] : extra)
      if (g.comm()) all.insert(g.comm());
    return {all.begin(), all.end()};
  }
};

class ParallelRunner final : public Runner {
 public:
  explicit ParallelRunner(const RunnerOptions& o)
      : options_(o), config_(io::ModelConfig::load(o.model_path)), pc_(o.parallel), ranks_(pc_.world_size()) {
    LOOM_CHECK_ARG(o.device.is_cpu() || o.device.is_cuda(), "parallel runs need --device cpu or cuda, got ",
                   o.device.str());
    LOOM_CHECK_ARG(o.load_format == "auto" || o.load_format == "dummy", "--load-format: unknown '", o.load_format,
                   "' (allowed: auto, dummy)");
    pc_.validate(0);
    LOOM_CHECK_ARG(pc_.nnodes == 1, "--nnodes ", pc_.nnodes, ": the parallel runner runs on one node");
    model::check_parallel_fit(config_, pc_);
    dispatch_ = parse_dispatch(o.moe_dispatch);
    backend_ = choose_backend(o, pc_);
    // CPU ranks are this process's threads: host copies need no sockets, Gloo stays the default.
    cpu_backend_ = o.dist_backend == "host-copy" ? parallel::CpuBackend::host_copy : parallel::CpuBackend::gloo;
    store_ = std::make_unique<parallel::HashStore>(std::chrono::seconds(pc_.dist_timeout_s));
    if (cpu_backend_ == parallel::CpuBackend::gloo) gloo_ = parallel::make_gloo_device("127.0.0.1");
    threads_ = std::make_unique<RankThreads>(pc_.world_size());
    start([this](int r) { start_rank(r); });
    if (o.device.is_cuda())  // once every rank's weights are in: ranks sharing a GPU see the same
      start([this](int r) { measure_kv_room(ranks_[r]); });
    const int64_t tokens = kv_tokens();
    const int64_t pages = (tokens + o.page_size - 1) / o.page_size;
    start([&](int r) {
      ranks_[r].pool = std::make_unique<cache::KvPool>(ranks_[r].model->kv_layout(), pages, o.page_size,
                                                       ranks_[r].device);
    });
    if (graphs_apply()) {
      const int64_t context = std::min<int64_t>(config_.max_position_embeddings, pages * o.page_size);
      start([&](int r) { capture_graphs(r, (context + o.page_size - 1) / o.page_size); });
    } else if (o.device.is_cuda() && !o.disable_cuda_graph) {
      std::fprintf(stderr, "loom: %s: decode steps run without CUDA graphs (%s)\n", pc_.str().c_str(),
                   graphs_off_reason().c_str());
    }
  }

  // Why decode steps of this run replay no CUDA graph ("" when they do).
  std::string graphs_off_reason() const {
    if (options_.device.is_cpu()) return "CPU ranks";
    if (options_.disable_cuda_graph) return "--disable-cuda-graph";
    if (backend_ == parallel::DeviceBackend::device_copy)
      return "--dist-backend device-copy meets on host barriers, which graphs cannot capture";
    return "";
  }

  const io::ModelConfig& config() const override { return config_; }
  cache::KvPool& kv_pool() override { return *ranks_[0].pool; }

  // Every rank reads the step's tokens from the host (no placeholders: takes_previous_ids() is false).
  Tensor forward(const model::ForwardBatch& batch) override {
    LOOM_CHECK(!batch.previous_ids, "the parallel runner takes no placeholder tokens");
    return step(batch, true, true);
  }

  Tensor forward_device_logits(const model::ForwardBatch& batch, bool allow_graph) override {
    LOOM_CHECK(!batch.previous_ids, "the parallel runner takes no placeholder tokens");
    return step(batch, allow_graph, false);
  }

  std::string failure() const override { return failures_.str(); }

  void inject_failure(int rank, const std::string& what) { injected_failure_.emplace(rank, what); }

  std::vector<CommCount> counts() const {
    std::vector<CommCount> out;
    for (int r = 0; r < static_cast<int>(ranks_.size()); ++r) {
      for (int op = 0; op < parallel::kNumCollectiveOps; ++op) {
        CommCount c{r, parallel::op_name(static_cast<parallel::CollectiveOp>(op)), 0, 0};
        for (auto* comm : ranks_[r].communicators()) {
          c.bytes += comm->bytes_sent(static_cast<parallel::CollectiveOp>(op));
          c.calls += comm->calls(static_cast<parallel::CollectiveOp>(op));
        }
        if (c.calls) out.push_back(c);
      }
    }
    return out;
  }
  void reset_counts() {
    for (auto& r : ranks_)
      for (auto* comm : r.communicators()) comm->reset_counters();
  }

 private:
  // One step on every rank; rank 0's logits, on the host as f32 when `to_host` (copied by rank 0's
  // thread, whose current GPU is the one the logits are on), else on its GPU.
  Tensor step(const model::ForwardBatch& batch, bool allow_graph, bool to_host) {
    const auto injected = std::exchange(injected_failure_, std::nullopt);
    run_ranks([&](int r) {
      if (injected && injected->first == r) throw Error(injected->second);
      Rank& rank = ranks_[r];
      Tensor logits;
#ifdef LOOM_HAVE_CUDA
      if (allow_graph && rank.graphs && rank.graphs->can_run(batch))  // every rank decides alike
        logits = rank.graphs->replay(batch);
      else
#endif
        logits = rank.model->forward_on_device(batch, rank.pool->buffers());
      if (r != 0) return;  // the others' are the same rows
      rank.logits = to_host ? to_host_f32(logits) : logits;
#ifdef LOOM_HAVE_CUDA
      // The caller reads them on its own stream, which nothing orders after this rank's.
      if (!to_host && logits.device().is_cuda()) CUDA_CHECK(cudaStreamSynchronize(cuda::current_stream(logits.device().index)));
#endif
    });
    return std::exchange(ranks_[0].logits, Tensor());
  }

  // Runs a start-up phase on every rank; a rank that fails ends the others' waits at once.
  void start(const std::function<void(int)>& phase) {
    threads_->run([&](int r) {
      try {
#ifdef LOOM_HAVE_CUDA
        if (ranks_[r].device.is_cuda()) CUDA_CHECK(cudaSetDevice(ranks_[r].device.index));
#endif
        phase(r);
      } catch (const std::exception& e) {
        store_->abort(str("rank ", r, " failed to start: ", e.what()));
        for (auto* comm : ranks_[r].communicators()) comm->abort();
        throw;
      }
    });
  }

  void start_rank(int r) {
    Rank& rank = ranks_[r];
    if (options_.device.is_cuda()) {  // NCCL: one GPU per local rank; device-copy: all on one
      const int index = options_.device.index + (backend_ == parallel::DeviceBackend::nccl ? r : 0);
      rank.device = Device::cuda(index);
#ifdef LOOM_HAVE_CUDA
      CUDA_CHECK(cudaSetDevice(index));
#endif
    }
    parallel::ProcessGroupOptions pgo;
    pgo.gloo_device = gloo_;
    pgo.device = rank.device;
    pgo.backend = backend_;
    pgo.cpu_backend = cpu_backend_;
    rank.groups = std::make_unique<parallel::ProcessGroups>(pc_, r, *store_, pgo);
    rank.state = std::make_shared<layers::ParallelState>(make_state(rank, r));
    auto weights = options_.load_format == "dummy" ? io::dummy_weights(0) : io::open_checkpoint(options_.model_path);
    model::LoadOptions lo;
    lo.parallel = rank.state;
    lo.device = rank.device;
    lo.dtype = rank.device.is_cuda() ? DType::bf16 : DType::f32;
    if (r == 0) lo.progress = options_.progress;
    try {
      rank.model = model::load_causal_lm(config_, *weights, lo);
    } catch (const Error& e) {
      if (rank.device.is_cpu()) throw;
      throw Error(str("loading its share of ", options_.model_path, " onto ", rank.device.str(), ": ", e.what()));
    }
    // The device communicators a decode step can touch: every family's and the MoE groups'.
    rank.groups->register_all(rank.registry);
    for (const auto& [members, g] : rank.extra)
      if (g.comm()) rank.registry.add(g.comm()->name(), g.shared_comm());
  }

  // The KV pool's tokens, equal on every rank (page ids are shared): --max-total-tokens, else
  // what the tightest GPU allows. On a shared GPU each rank gets its share of what is left.
  int64_t kv_tokens() {
    const int64_t asked = options_.max_total_tokens;
    if (options_.device.is_cpu()) return asked > 0 ? asked : kDefaultCpuKvTokens;
    int64_t tokens = asked;
    for (int r = 0; r < static_cast<int>(ranks_.size()); ++r) {
      const Rank& k = ranks_[r];
      const int64_t need = std::max<int64_t>(asked, 1);
      if (k.kv.tokens < need)
        throw Error(str("rank ", r, " on ", k.device.str(), ": out of GPU memory for the KV cache: ", need,
                        " tokens need ", (need / options_.page_size + 2) * options_.page_size *
                                             k.model->kv_layout().bytes_per_token(),
                        " bytes, ", k.kv.free_bytes, " bytes are free and its share within --mem-fraction-static ",
                        options_.mem_fraction_static, " is ", k.kv.bytes,
                        " (does not fit: lower --max-total-tokens or raise --mem-fraction-static)"));
      if (asked <= 0) tokens = tokens > 0 ? std::min(tokens, k.kv.tokens) : k.kv.tokens;
    }
    return tokens;
  }

  // Ranks sharing a GPU split what --mem-fraction-static leaves of it (the one-GPU rule, per share).
  void measure_kv_room(Rank& rank) const {
#ifdef LOOM_HAVE_CUDA
    const size_t sharing = backend_ == parallel::DeviceBackend::device_copy ? pc_.world_size() : 1;
    const cuda::MemInfo m = cuda::mem_info(rank.device);
    rank.kv = cache::kv_budget_from(rank.model->kv_layout(), options_.page_size, m.free / sharing, m.total / sharing,
                                    options_.mem_fraction_static, 0);
    rank.kv.free_bytes = m.free;
#else
    (void)rank;
#endif
  }

  bool graphs_apply() const { return graphs_off_reason().empty(); }

  void capture_graphs(int r, int64_t max_pages) {
#ifdef LOOM_HAVE_CUDA
    Rank& rank = ranks_[r];
    // With attention DP each replica captures for its share of --cuda-graph-max-bs.
    DataParallelDecode dp{pc_.attn_dp, rank.state->tp_rank / (pc_.attn_tp() * pc_.attn_cp), pc_.tp};
    const int64_t per_replica = (options_.cuda_graph_max_bs + dp.dp - 1) / dp.dp;
    rank.graphs = std::make_unique<CudaGraphRunner>(*rank.model, rank.pool->buffers(), per_replica, max_pages,
                                                    &rank.registry, dp, r == 0 ? options_.progress : model::ProgressFn{});
#else
    (void)r, (void)max_pages;
#endif
  }

  // Runs `job` on every rank. A rank that fails closes its communicators, so peers waiting for it
  // in a collective fail at once instead of after --dist-timeout, and close theirs in turn. The
  // communicators are then unusable: the runner refuses every later step and says why.
  void run_ranks(const std::function<void(int)>& job) {
    if (failures_.any()) throw Error(str("the parallel runner stopped earlier (", failures_.str(), "); restart loom"));
    try {
      threads_->run([&](int r) {
        try {
          job(r);
        } catch (...) {
          failures_.add(r, std::current_exception());
          for (auto* comm : ranks_[r].communicators()) comm->abort();
          throw;
        }
      });
    } catch (...) {
      // The rank that caused it, not a peer whose collective failed because of it.
      const auto [rank, error] = failures_.cause();
      parallel::rethrow_for_rank(rank, error, " (the other ranks were stopped; this runner cannot run further steps)");
    }
  }

  layers::ParallelState make_state(Rank& rank, int r) {
    const parallel::RankCoords k = parallel::rank_coords(pc_, r);
    const auto block = parallel::moe_block(pc_, r);
    const auto plain = parallel::moe_token_plan(pc_, r, false), cp = parallel::moe_token_plan(pc_, r, true);
    // Groups no family has are created in ascending member order on every rank: a rank only ever
    // waits for a group whose members all create it before any larger one, so none deadlocks.
    std::set<std::vector<int>> wanted = {block, plain.members, cp.members};
    for (const auto& members : wanted) rank.extra.emplace(members, group_of(rank, members));
    layers::ParallelState s;
    s.config = pc_;
    s.tp_rank = k.tp_rank;
    s.attn_tp = family(rank, Family::attn_tp);
    s.attn_cp = family(rank, Family::attn_cp);
    s.attn_dp = family(rank, Family::attn_dp);
    s.moe_block = rank.extra.at(block);
    s.moe_tp_rank = k.moe_tp_rank;
    s.moe_ep_rank = k.moe_ep_rank;
    s.plain = {plain.mode, rank.extra.at(plain.members)};
    s.cp_split = {cp.mode, rank.extra.at(cp.members)};
    s.dispatch = dispatch_;
    return s;
  }

  static layers::Group family(const Rank& rank, Family f) {
    const auto& g = rank.groups->group(f);
    return g.ranks.size() == 1 ? layers::Group() : layers::Group(g.device, g.cpu);
  }

  // A family's communicators when one has these members, else a new group (a CPU one for host values,
  // and on GPUs a device communicator of the run's backend beside it).
  layers::Group group_of(const Rank& rank, const std::vector<int>& members) {
    if (members.size() == 1) return layers::Group();
    for (Family f : parallel::kAllFamilies)
      if (rank.groups->group(f).ranks == members) return family(rank, f);
    const int me = rank.groups->rank();
    const int index = static_cast<int>(std::find(members.begin(), members.end(), me) - members.begin());
    std::string key = "extra";
    for (int m : members) key.append("/").append(std::to_string(m));
    const auto timeout = std::chrono::seconds(pc_.dist_timeout_s);
    const std::string name = str("moe ", parallel::ranks_str(members));
    parallel::ProcessGroupOptions pgo;
    pgo.device = rank.device;
    pgo.backend = backend_;
    pgo.cpu_backend = cpu_backend_;
    pgo.gloo_device = gloo_;
    std::shared_ptr<parallel::Communicator> cpu =
        parallel::make_cpu_communicator(name, members, index, *store_, key + "/cpu", pgo, timeout);
    return layers::Group(parallel::make_device_communicator(name, members, index, *store_, key, pgo, timeout, cpu),
                         cpu);
  }

  RunnerOptions options_;
  io::ModelConfig config_;
  parallel::ParallelConfig pc_;
  layers::MoeDispatch dispatch_ = layers::MoeDispatch::automatic;
  parallel::DeviceBackend backend_ = parallel::DeviceBackend::nccl;
  parallel::CpuBackend cpu_backend_ = parallel::CpuBackend::gloo;
  std::unique_ptr<parallel::HashStore> store_;
  std::shared_ptr<parallel::GlooDevice> gloo_;
  std::vector<Rank> ranks_;
  parallel::RankFailures failures_;  // none while every rank is healthy
  std::optional<std::pair<int, std::string>> injected_failure_;
  std::unique_ptr<RankThreads> threads_;  // last: its threads stop before the ranks go away
};

}  // namespace

std::unique_ptr<Runner> create_parallel_runner(const RunnerOptions& options) {
  return std::make_unique<ParallelRunner>(options);
}

std::vector<CommCount> comm_counts(Runner& runner) {
  auto* p = dynamic_cast<ParallelRunner*>(&runner);
  return p ? p->counts() : std::vector<CommCount>{};
}

void reset_comm_counts(Runner& runner) {
  if (auto* p = dynamic_cast<ParallelRunner*>(&runner)) p->reset_counts();
}

void inject_rank_failure(Runner& runner, int rank, const std::string& what) {
  if (auto* p = dynamic_cast<ParallelRunner*>(&runner)) p->inject_failure(rank, what);
}

}  // namespace loom::runtime
