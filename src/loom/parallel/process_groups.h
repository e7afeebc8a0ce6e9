// Every family's group for one rank, each with a device communicator (data: NCCL on CUDA, the CPU
// one on the CPU) and a CPU one (control messages: Gloo, or host copies between rank threads). Families whose groups have the same
// members share communicators (e.g. MOE_DP when it is the ATTN_CP group).
#pragma once
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "loom/parallel/communicator.h"
#include "loom/parallel/gloo_communicator.h"
#include "loom/parallel/layout.h"
#include "loom/parallel/store.h"

namespace loom::parallel {

class GraphRegistry;

struct Group {
  Family family = Family::tp;
  std::vector<int> ranks;  // global ranks, in group order
  int rank = 0;            // this rank's index in `ranks`
  std::shared_ptr<Communicator> device;
  std::shared_ptr<Communicator> cpu;
};

// How device tensors move between ranks on GPUs: NCCL (one GPU per rank, any number of nodes) or
// device copies between ranks that share a process and a GPU (parallel/device_copy_communicator.h).
enum class DeviceBackend { nccl, device_copy };
const char* backend_name(DeviceBackend b);  // "nccl", "device-copy"

// How host tensors (on GPUs: the control messages) move between ranks: Gloo over TCP (ranks in any
// processes) or host copies between ranks that share a process (parallel/host_copy_communicator.h).
enum class CpuBackend { gloo, host_copy };
const char* backend_name(CpuBackend b);  // "gloo", "host-copy"

struct ProcessGroupOptions {
  Device device = Device::cpu();  // cuda:i gives device communicators on GPU i
  DeviceBackend backend = DeviceBackend::nccl;
  CpuBackend cpu_backend = CpuBackend::gloo;
  std::chrono::milliseconds timeout{0};  // --dist-timeout; 0: the store's timeout
  std::shared_ptr<GlooDevice> gloo_device;  // shared by a node's ranks; null: one on store.local_address()
  std::string key_prefix = "pg";            // store namespace (distinct per ProcessGroups of a run)
};

// The host communicator of a group, of `opts.cpu_backend` (Gloo on opts.gloo_device, which must be
// set). Collective over `members`: each calls it with the same key.
std::shared_ptr<Communicator> make_cpu_communicator(const std::string& name, const std::vector<int>& members,
                                                    int index, Store& store, const std::string& key,
                                                    const ProcessGroupOptions& opts, std::chrono::milliseconds timeout);

// The device communicator of a group on `opts.device` (Gloo's `cpu` itself on the CPU). Collective
// over `members`: each calls it with the same key.
std::shared_ptr<Communicator> make_device_communicator(const std::string& name, const std::vector<int>& members,
                                                       int index, Store& store, const std::string& key,
                                                       const ProcessGroupOptions& opts,
                                                       std::chrono::milliseconds timeout,
                                                       std::shared_ptr<Communicator> cpu);

class ProcessGroups {
 public:
  // Collective: every rank of the world builds its ProcessGroups with the same config and options.
  ProcessGroups(const ParallelConfig& c, int rank, Store& store, const ProcessGroupOptions& opts = {});

  const ParallelConfig& config() const { return config_; }
  const RankCoords& coords() const { return coords_; }
  int rank() const { return coords_.rank; }
  const Group& group(Family f) const { return groups_.at(static_cast<int>(f)); }
  Communicator& device(Family f) const { return *group(f).device; }
  Communicator& cpu(Family f) const { return *group(f).cpu; }

  // Registers every family's device communicator under its family name ("tp", "moe_ep", ...).
  void register_all(GraphRegistry& registry) const;

 private:
  ParallelConfig config_;
  RankCoords coords_;
  std::vector<Group> groups_;  // indexed by Family
};

}  // namespace loom::parallel
