// Host-tensor communicator on Gloo's TCP transport (tests, CI, and every group's CPU channel for
// control messages such as the scheduler's batch descriptors).
#pragma once
#include <chrono>
#include <memory>

#include "loom/parallel/communicator.h"
#include "loom/parallel/store.h"

namespace gloo {
class Context;
}

namespace loom::parallel {

// One Gloo TCP device (its event loop thread and listening socket) per process, shared by every
// context. `hostname`: the address peers use to reach this process ("127.0.0.1" on one node).
struct GlooDevice;
std::shared_ptr<GlooDevice> make_gloo_device(const std::string& hostname);

class GlooCommunicator : public Communicator {
 public:
  // Every member calls this with the same `key` (unique per group in the store) and `ranks`.
  // Throws loom::Error naming the ranks that did not arrive within `timeout` (--dist-timeout).
  GlooCommunicator(std::string name, std::vector<int> ranks, int rank, Store& store, const std::string& key,
                   const std::shared_ptr<GlooDevice>& device, std::chrono::milliseconds timeout);
  ~GlooCommunicator() override;
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
  // Raw byte all-to-all (the core of all_to_all and reduce_scatter).
  void alltoallv_bytes(const void* in, const std::vector<int64_t>& in_bytes, void* out,
                       const std::vector<int64_t>& out_bytes);
  uint32_t next_tag() { return tag_++; }
  // Counts that disagree across ranks would abort the process inside Gloo's I/O thread, so they
  // are exchanged first (one small all-gather) and a mismatch becomes an error on every rank.
  // all_to_all: peer p must send us out_rows[p]; otherwise every rank must pass the same counts.
  void check_counts_agree(const char* op, const std::vector<int64_t>& mine, const std::vector<int64_t>* out_rows);

  std::shared_ptr<GlooDevice> dev_;
  std::shared_ptr<gloo::Context> ctx_;
  uint32_t tag_ = 0;
};

// Waits until every member of a group has announced itself under `key`; the error on timeout names
// the missing global ranks. Shared by the Gloo and NCCL rendezvous.
void wait_for_group(Store& store, const std::string& key, const std::vector<int>& ranks, int rank,
                    std::chrono::milliseconds timeout, const std::string& group_name);

}  // namespace loom::parallel
