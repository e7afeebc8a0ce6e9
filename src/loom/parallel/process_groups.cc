#include "loom/parallel/process_groups.h"

#include "loom/parallel/graph_registry.h"
#include "loom/parallel/host_copy_communicator.h"
#ifdef LOOM_HAVE_CUDA
#include "loom/parallel/device_copy_communicator.h"
#include "loom/parallel/nccl_communicator.h"
#endif

namespace loom::parallel {

const char* backend_name(DeviceBackend b) { return b == DeviceBackend::nccl ? "nccl" : "device-copy"; }
const char* backend_name(CpuBackend b) { return b == CpuBackend::gloo ? "gloo" : "host-copy"; }

std::shared_ptr<Communicator> make_cpu_communicator(const std::string& name, const std::vector<int>& members,
                                                    int index, Store& store, const std::string& key,
                                                    const ProcessGroupOptions& opts, std::chrono::milliseconds timeout) {
  const std::string full = str(name, " (", backend_name(opts.cpu_backend), ")");
  if (opts.cpu_backend == CpuBackend::host_copy)
    return std::make_shared<HostCopyCommunicator>(full, members, index, store, key, timeout);
  LOOM_CHECK(opts.gloo_device, full, ": no Gloo device");
  return std::make_shared<GlooCommunicator>(full, members, index, store, key, opts.gloo_device, timeout);
}

std::shared_ptr<Communicator> make_device_communicator(const std::string& name, const std::vector<int>& members,
                                                       int index, Store& store, const std::string& key,
                                                       const ProcessGroupOptions& opts,
                                                       std::chrono::milliseconds timeout,
                                                       std::shared_ptr<Communicator> cpu) {
  if (opts.device.is_cpu()) return cpu;
#ifdef LOOM_HAVE_CUDA
  if (opts.backend == DeviceBackend::device_copy)
    return std::make_shared<DeviceCopyCommunicator>(name + " (device-copy)", members, index, store, key + "/copy",
                                                    opts.device.index, timeout);
  return std::make_shared<NcclCommunicator>(name + " (nccl)", members, index, store, key + "/nccl", opts.device.index,
                                            timeout);
#else
  throw Error(str("device ", opts.device.str(), " needs a build with CUDA (NCCL)"));
#endif
}

static std::string join(const std::vector<int>& v) {
  std::string s;
  for (size_t k = 0; k < v.size(); ++k) {
    if (k) s += ',';
    s += std::to_string(v[k]);
  }
  return s;
}

ProcessGroups::ProcessGroups(const ParallelConfig& c, int rank, Store& store, const ProcessGroupOptions& opts)
    : config_(c), coords_(rank_coords(c, rank)) {
  ProcessGroupOptions o = opts;
  if (!o.gloo_device && o.cpu_backend == CpuBackend::gloo) o.gloo_device = make_gloo_device(store.local_address());
  const std::chrono::milliseconds timeout = opts.timeout.count() > 0 ? opts.timeout : store.timeout();
#ifndef LOOM_HAVE_CUDA
  LOOM_CHECK(opts.device.is_cpu(), "device ", opts.device.str(), " needs a build with CUDA (NCCL)");
#endif
  // Built in one global order (family, then members) so that the group-by-group rendezvous can
  // not deadlock; identical memberships reuse the communicator made first.
  std::map<std::vector<int>, std::pair<std::shared_ptr<Communicator>, std::shared_ptr<Communicator>>> made;
  for (Family f : kAllFamilies) {
    Group g;
    g.family = f;
    g.ranks = group_of(c, f, rank);
    g.rank = coords_.in(f);
    auto it = made.find(g.ranks);
    if (it != made.end()) {
      g.cpu = it->second.first;
      g.device = it->second.second;
    } else {
      const std::string key = opts.key_prefix + "/" + join(g.ranks);
      const std::string name = loom::str(family_name(f), " ", ranks_str(g.ranks));
      g.cpu = make_cpu_communicator(name, g.ranks, g.rank, store, key + "/cpu", o, timeout);
      g.device = make_device_communicator(name, g.ranks, g.rank, store, key, o, timeout, g.cpu);
      made[g.ranks] = {g.cpu, g.device};
    }
    groups_.push_back(std::move(g));
  }
}

void ProcessGroups::register_all(GraphRegistry& registry) const {
  for (const auto& g : groups_) registry.add(family_name(g.family), g.device);
}

}  // namespace loom::parallel
