// ProcessGroups over Gloo (every family's group, real collectives) and the graph-capture registry.
#include <gtest/gtest.h>

#include "loom/parallel/graph_registry.h"
#include "loom/parallel/process_groups.h"
#include "loom/parallel/rank_launcher.h"

using namespace loom::parallel;
using namespace std::chrono_literals;

namespace {

// Every family's all_reduce of the global rank sums exactly that group's members, on both the
// device and the CPU communicator; the scheduler-style broadcast over the TP CPU group arrives.
void check_groups(const ProcessGroups& pg) {
  for (Family f : kAllFamilies) {
    const Group& g = pg.group(f);
    LOOM_CHECK(g.ranks == group_of(pg.config(), f, pg.rank()), family_name(f), " members");
    LOOM_CHECK(g.device->rank() == g.rank && g.cpu->size() == static_cast<int>(g.ranks.size()), family_name(f));
    int64_t want = 0;
    for (int r : g.ranks) want += r;
    for (Communicator* comm : {g.device.get(), g.cpu.get()}) {
      loom::Tensor t = loom::Tensor::empty({1}, loom::DType::i64);
      static_cast<int64_t*>(t.data_ptr())[0] = pg.rank();
      comm->all_reduce_sum(t);
      LOOM_CHECK(static_cast<int64_t*>(t.data_ptr())[0] == want, family_name(f), " sum of ", ranks_str(g.ranks),
                 " on rank ", pg.rank(), " is ", static_cast<int64_t*>(t.data_ptr())[0]);
    }
  }
  loom::Tensor batch = loom::Tensor::zeros({4}, loom::DType::i32);
  if (pg.coords().tp_rank == 0)
    for (int i = 0; i < 4; ++i) static_cast<int32_t*>(batch.data_ptr())[i] = 100 * pg.coords().pp_rank + i;
  pg.cpu(Family::tp).broadcast(batch, 0);
  for (int i = 0; i < 4; ++i)
    LOOM_CHECK(static_cast<int32_t*>(batch.data_ptr())[i] == 100 * pg.coords().pp_rank + i, "batch descriptor");
}

void run_config(const ParallelConfig& c) {
  c.validate();
  auto dev = make_gloo_device("127.0.0.1");
  run_local(c.world_size(), 30s, [&](int rank, int, Store& store) {
    ProcessGroupOptions o;
    o.gloo_device = dev;
    o.timeout = 30s;
    ProcessGroups pg(c, rank, store, o);
    check_groups(pg);
  });
}

}  // namespace

TEST(ProcessGroups, DesignExampleTp4Cp2Ep2MoeDp2) {
  ParallelConfig c;
  c.tp = 4, c.attn_cp = 2, c.ep = 2, c.moe_dp = 2;
  run_config(c);
}

TEST(ProcessGroups, PipelineAndDpAttention) {
  ParallelConfig c;
  c.tp = 4, c.pp = 2, c.attn_dp = 2, c.ep = 4;
  run_config(c);
}

TEST(ProcessGroups, MoeDpAliasesAttnCp) {
  ParallelConfig c;
  c.tp = 4, c.attn_cp = 4, c.ep = 2;
  run_config(c);
}

TEST(ProcessGroups, SharesCommunicatorsOfIdenticalGroups) {
  ParallelConfig c;
  c.tp = 2, c.attn_cp = 2, c.ep = 2;  // attn_cp == tp == moe_ep; moe_dp is attn_cp
  run_local(2, 30s, [&](int rank, int, Store& store) {
    ProcessGroups pg(c, rank, store);
    LOOM_CHECK(pg.group(Family::tp).cpu == pg.group(Family::attn_cp).cpu, "tp/attn_cp shared");
    LOOM_CHECK(pg.group(Family::moe_dp).device == pg.group(Family::attn_cp).device, "moe_dp/attn_cp shared");
    LOOM_CHECK(pg.group(Family::tp).device == pg.group(Family::tp).cpu, "CPU device: one communicator");
  });
}

TEST(GraphRegistry, CaptureUsesOnlyPreparedGroups) {
  auto dev = make_gloo_device("127.0.0.1");
  ParallelConfig c;
  c.tp = 2, c.ep = 2;
  run_local(2, 30s, [&](int rank, int, Store& store) {
    ProcessGroupOptions o;
    o.gloo_device = dev;
    ProcessGroups pg(c, rank, store, o);
    GraphRegistry reg;
    reg.add("tp", pg.group(Family::tp).device);
    loom::Tensor t = loom::Tensor::zeros({2}, loom::DType::f32);
    {
      // Not prepared yet: even a registered group fails inside a capture.
      GraphCaptureGuard capturing;
      bool threw = false;
      try {
        reg.get("tp").all_reduce_sum(t);
      } catch (const loom::Error& e) {
        threw = std::string(e.what()).find("never registered with the GraphRegistry") != std::string::npos;
      }
      LOOM_CHECK(threw, "unprepared communicator used during capture must fail");
    }
    reg.prepare_for_capture();
    LOOM_CHECK(pg.device(Family::tp).prepared_for_capture(), "prepared");
    {
      GraphCaptureGuard capturing;
      LOOM_CHECK(GraphCaptureGuard::active(), "guard active");
      reg.get("tp").all_reduce_sum(t);  // allowed
      // A group the model forgot to register: fails loudly, naming it.
      std::string err;
      try {
        pg.cpu(Family::pp).barrier();
      } catch (const loom::Error& e) {
        err = e.what();
      }
      LOOM_CHECK(err.find("pp [") != std::string::npos && err.find("CUDA-graph capture") != std::string::npos,
                 "unregistered group error: ", err);
    }
    LOOM_CHECK(!GraphCaptureGuard::active(), "guard ended");
    pg.cpu(Family::pp).barrier();  // outside capture: fine
    std::string err;
    try {
      reg.get("moe_ep");
    } catch (const loom::Error& e) {
      err = e.what();
    }
    LOOM_CHECK(err.find("no group 'moe_ep' (registered: tp)") != std::string::npos, err);
    GraphRegistry all;
    pg.register_all(all);
    LOOM_CHECK(all.names().size() == 8, "all families registered");
    all.prepare_for_capture();
    GraphCaptureGuard capturing;
    all.get("moe_ep").all_reduce_sum(t);
  });
}
