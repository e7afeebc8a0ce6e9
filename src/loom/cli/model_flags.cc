#include "loom/cli/model_flags.h"

#include "loom/cli/startup_progress.h"

#include <filesystem>
#include <limits>

namespace loom::cli {

runtime::RunnerOptions parse_runner_flags(Args& args) {
  runtime::RunnerOptions o;
  o.model_path = args.required("model-path");
  LOOM_CHECK_ARG(std::filesystem::is_directory(o.model_path), "--model-path: '", o.model_path,
                 "' is not a readable directory");
  o.device = parse_device(args.string("device", "cpu"));
  const std::string dtype = args.string("dtype", "auto");
  const std::string native = o.device.is_cpu() ? "f32" : "bf16";
  LOOM_CHECK_ARG(dtype == "auto" || dtype == native || (dtype == "float32" && native == "f32") ||
                     (dtype == "bfloat16" && native == "bf16"),
                 "--dtype: '", dtype, "' is not supported on ", o.device.str(), " (allowed: auto, ", native, ")");
  o.load_format = args.string("load-format", "auto");
  LOOM_CHECK_ARG(o.load_format == "auto" || o.load_format == "dummy", "--load-format: '", o.load_format,
                 "' (allowed: auto, dummy)");
  o.page_size = args.integer({"page-size"}, o.page_size, 1, 4096);
  o.max_total_tokens = args.integer({"max-total-tokens"}, 0, 1, std::numeric_limits<int32_t>::max());
  o.mem_fraction_static = args.number("mem-fraction-static", o.mem_fraction_static);
  LOOM_CHECK_ARG(o.mem_fraction_static > 0 && o.mem_fraction_static < 1, "--mem-fraction-static: ",
                 o.mem_fraction_static, " must be in (0, 1)");
  o.disable_cuda_graph = args.flag("disable-cuda-graph");
  o.cuda_graph_max_bs = args.integer({"cuda-graph-max-bs"}, o.cuda_graph_max_bs, 1, 4096);
  o.disable_piecewise_cuda_graph = args.flag("disable-piecewise-cuda-graph");
  o.piecewise_cuda_graph_max_tokens =
      args.integer({"piecewise-cuda-graph-max-tokens"}, o.piecewise_cuda_graph_max_tokens, 1, 65536);
  o.progress = terminal_progress();
  return o;
}

std::vector<int32_t> parse_prompt_ids(Args& args) {
  std::vector<int32_t> ids;
  for (int64_t v : args.int_list("prompt-ids")) {
    LOOM_CHECK_ARG(v >= 0 && v <= std::numeric_limits<int32_t>::max(), "--prompt-ids: ", v,
                   " is not a valid token id");
    ids.push_back(static_cast<int32_t>(v));
  }
  return ids;
}

}  // namespace loom::cli
