#include "loom/parallel/parallel_config.h"

#include <cstdlib>

#include "loom/tensor/error.h"

namespace loom::parallel {

void parse_host_port(const std::string& addr, std::string& host, int& port) {
  auto colon = addr.rfind(':');
  LOOM_CHECK_ARG(colon != std::string::npos && colon > 0 && colon + 1 < addr.size(),
                 "--dist-init-addr '", addr, "' is not host:port (e.g. 10.0.0.1:5000)");
  host = addr.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string p = addr.substr(colon + 1);
  char* end = nullptr;
  long v = std::strtol(p.c_str(), &end, 10);
  LOOM_CHECK_ARG(*end == '\0' && v >= 1 && v <= 65535, "--dist-init-addr '", addr, "': port '", p,
                 "' is not in [1, 65535]");
  port = static_cast<int>(v);
}

void ParallelConfig::validate(int local_devices) const {
  auto positive = [](int v, const char* flag) {
    LOOM_CHECK_ARG(v >= 1, flag, " must be >= 1 (got ", v, ")");
  };
  positive(tp, "--tp-size");
  positive(pp, "--pp-size");
  positive(ep, "--ep-size");
  positive(moe_dp, "--moe-dp-size");
  positive(attn_cp, "--attn-cp-size");
  positive(attn_dp, "--dp-size");
  positive(nnodes, "--nnodes");
  LOOM_CHECK_ARG(dist_timeout_s >= 1, "--dist-timeout must be >= 1 second (got ", dist_timeout_s, ")");

  LOOM_CHECK_ARG(tp % (attn_dp * attn_cp) == 0, "--tp-size ", tp, " is not divisible by --dp-size ",
                 attn_dp, " x --attn-cp-size ", attn_cp, " = ", attn_dp * attn_cp,
                 " (attention TP = tp / (dp x attn_cp) must be a whole number)");
  LOOM_CHECK_ARG(tp % (ep * moe_dp) == 0, "--tp-size ", tp, " is not divisible by --ep-size ", ep,
                 " x --moe-dp-size ", moe_dp, " = ", ep * moe_dp,
                 " (MoE TP = tp / (ep x moe_dp) must be a whole number)");

  const int world = world_size();
  LOOM_CHECK_ARG(world % nnodes == 0, "world size ", world, " (--tp-size ", tp, " x --pp-size ", pp,
                 ") is not divisible by --nnodes ", nnodes);
  LOOM_CHECK_ARG(node_rank >= 0 && node_rank < nnodes, "--node-rank ", node_rank,
                 " is out of range [0, ", nnodes - 1, "] for --nnodes ", nnodes);
  if (local_devices > 0)
    LOOM_CHECK_ARG(world == nnodes * local_devices, "world size ", world, " (--tp-size ", tp,
                   " x --pp-size ", pp, ") != --nnodes ", nnodes, " x ", local_devices,
                   " local devices = ", nnodes * local_devices);
  if (nnodes > 1)
    LOOM_CHECK_ARG(!dist_init_addr.empty(), "--nnodes ", nnodes,
                   " needs --dist-init-addr host:port (the rendezvous address on node 0)");
  if (!dist_init_addr.empty()) {
    std::string host;
    int port = 0;
    parse_host_port(dist_init_addr, host, port);
  }
}

std::string ParallelConfig::str() const {
  return loom::str("tp ", tp, ", pp ", pp, ", ep ", ep, ", moe_dp ", moe_dp, ", attn_cp ", attn_cp,
                   ", attn_dp ", attn_dp, " (attn_tp ", attn_tp(), ", moe_tp ", moe_tp(), ")");
}

}  // namespace loom::parallel
