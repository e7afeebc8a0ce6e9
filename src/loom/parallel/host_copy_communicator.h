// Host-tensor collectives between ranks that share one process (the parallel runner's rank
// threads on --device cpu), selected by `--dist-backend host-copy`: every member posts its buffer
// and counts, the members meet on a barrier, each reads its peers' buffers directly (sums in
// group order, as Gloo's reduce-scatter does, so every member gets the same bits), and a second
// barrier keeps a member from changing or freeing its buffer before its peers have read it. No
// sockets and no I/O thread, so a failing rank's peers are stopped by the rendezvous alone: what
// ThreadSanitizer can follow end to end (Gloo's own threads race when a peer aborts mid-collective;
// scripts/test_sanitizers.sh).
#pragma once
#include <chrono>
#include <functional>
#include <memory>

#include "loom/parallel/communicator.h"
#include "loom/parallel/in_process_rendezvous.h"
#include "loom/parallel/store.h"

namespace loom::parallel {

class HostCopyCommunicator : public Communicator {
 public:
  // Collective over the group's members, which find each other through `key` in a process-wide
  // table scoped by `store`. A member missing after `timeout` is an error naming it.
  HostCopyCommunicator(std::string name, std::vector<int> ranks, int rank, const Store& store, const std::string& key,
                       std::chrono::milliseconds timeout);
  // A member that goes away closes the group, as a Gloo member's closed sockets would: a peer
  // still waiting for it in a collective fails at once.
  ~HostCopyCommunicator() override;
  Device device() const override { return Device::cpu(); }
  void abort() override;

 protected:
  void do_all_reduce_sum(Tensor& t) override;
  void do_all_gather(const Tensor& in, Tensor& out, const std::vector<int64_t>& rows) override;
  void do_reduce_scatter(const Tensor& in, Tensor& out, const std::vector<int64_t>& rows) override;
  void do_all_to_all(const Tensor& in, const std::vector<int64_t>& in_rows, Tensor& out,
                     const std::vector<int64_t>& out_rows) override;
  void do_broadcast(Tensor& t, int root) override;
  void do_barrier() override;

 private:
  // Posts `mine`, waits for every member, checks the counts alike on every member (`op` names
  // them; `out_rows` for all_to_all), runs `read` over all members' posts, then waits until every
  // member has read.
  void exchange(const char* op, InProcessPost mine, bool check_counts,
                const std::function<void(const std::vector<InProcessPost>&)>& read);

  std::chrono::milliseconds timeout_;
  std::shared_ptr<InProcessRendezvous> shared_;
};

}  // namespace loom::parallel
