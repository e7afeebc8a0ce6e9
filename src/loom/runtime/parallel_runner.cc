#include "loom/runtime/parallel_runner.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "loom/parallel/gloo_communicator.h"
#include "loom/parallel/layout.h"
#include "loom/parallel/moe_token_plan.h"
#include "loom/parallel/process_groups.h"
#include "loom/parallel/rank_launcher.h"
#include "loom/runtime/rank_threads.h"

namespace loom::runtime {
namespace {

using parallel::Family;

layers::MoeDispatch parse_dispatch(const std::string& s) {
  if (s == "auto") return layers::MoeDispatch::automatic;
  if (s == "gather") return layers::MoeDispatch::gather;
  if (s == "all_to_all") return layers::MoeDispatch::all_to_all;
  throw InvalidArgument(str("--moe-dispatch: unknown '", s, "' (allowed: auto, gather, all_to_all)"));
}

struct Rank {
  std::unique_ptr<parallel::ProcessGroups> groups;
  std::map<std::vector<int>, layers::Group> extra;  // groups that are no family's
  std::shared_ptr<layers::ParallelState> state;
  std::unique_ptr<model::CausalLM> model;
  std::unique_ptr<cache::KvPool> pool;
  Tensor logits;

  // Every distinct communicator of this rank.
  std::vector<parallel::Communicator*> communicators() const {
    std::set<parallel::Communicator*> all;
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
    LOOM_CHECK_ARG(o.device.is_cpu(), "parallel runs (", pc_.str(), ") need --device cpu for now, got ",
                   o.device.str());
    LOOM_CHECK_ARG(o.load_format == "auto" || o.load_format == "dummy", "--load-format: unknown '", o.load_format,
                   "' (allowed: auto, dummy)");
    pc_.validate(0);
    LOOM_CHECK_ARG(pc_.nnodes == 1, "--nnodes ", pc_.nnodes, ": the CPU parallel runner runs on one node");
    model::check_parallel_fit(config_, pc_);
    dispatch_ = parse_dispatch(o.moe_dispatch);
    store_ = std::make_unique<parallel::HashStore>(std::chrono::seconds(pc_.dist_timeout_s));
    gloo_ = parallel::make_gloo_device("127.0.0.1");
    threads_ = std::make_unique<RankThreads>(pc_.world_size());
    threads_->run([this](int r) {
      try {
        start_rank(r);
      } catch (const std::exception& e) {  // the other ranks stop waiting for this one at once
        store_->abort(str("rank ", r, " failed to start: ", e.what()));
        throw;
      }
    });
  }

  const io::ModelConfig& config() const override { return config_; }
  cache::KvPool& kv_pool() override { return *ranks_[0].pool; }

  Tensor forward(const model::ForwardBatch& batch) override {
    const auto injected = std::exchange(injected_failure_, std::nullopt);
    run_ranks([&](int r) {
      if (injected && injected->first == r) throw Error(injected->second);
      ranks_[r].logits = ranks_[r].model->forward(batch, ranks_[r].pool->buffers());
    });
    Tensor out = ranks_[0].logits;
    for (auto& r : ranks_) r.logits = Tensor();
    return out;
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
  void start_rank(int r) {
    Rank& rank = ranks_[r];
    parallel::ProcessGroupOptions pgo;
    pgo.gloo_device = gloo_;
    rank.groups = std::make_unique<parallel::ProcessGroups>(pc_, r, *store_, pgo);
    rank.state = std::make_shared<layers::ParallelState>(make_state(rank, r));
    auto weights = options_.load_format == "dummy" ? io::dummy_weights(0) : io::open_checkpoint(options_.model_path);
    model::LoadOptions lo;
    lo.parallel = rank.state;
    rank.model = model::load_causal_lm(config_, *weights, lo);
    int64_t tokens = options_.max_total_tokens > 0 ? options_.max_total_tokens : kDefaultCpuKvTokens;
    const int64_t pages = (tokens + options_.page_size - 1) / options_.page_size;
    rank.pool = std::make_unique<cache::KvPool>(rank.model->kv_layout(), pages, options_.page_size, Device::cpu());
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

  // A family's communicator when one has these members, else a new Gloo group.
  layers::Group group_of(const Rank& rank, const std::vector<int>& members) {
    if (members.size() == 1) return layers::Group();
    for (Family f : parallel::kAllFamilies)
      if (rank.groups->group(f).ranks == members) return family(rank, f);
    const int me = rank.groups->rank();
    const int index = static_cast<int>(std::find(members.begin(), members.end(), me) - members.begin());
    std::string key = "extra";
    for (int m : members) key.append("/").append(std::to_string(m));
    auto comm = std::make_shared<parallel::GlooCommunicator>(str("moe ", parallel::ranks_str(members), " (gloo)"),
                                                             members, index, *store_, key, gloo_,
                                                             std::chrono::seconds(pc_.dist_timeout_s));
    return layers::Group(comm);
  }

  RunnerOptions options_;
  io::ModelConfig config_;
  parallel::ParallelConfig pc_;
  layers::MoeDispatch dispatch_ = layers::MoeDispatch::automatic;
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
