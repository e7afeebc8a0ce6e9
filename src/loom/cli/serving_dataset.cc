#include "loom/cli/serving_dataset.h"

#include <algorithm>
#include <fstream>
#include <random>

#include "loom/tensor/error.h"

namespace loom::cli {

std::vector<BenchPrompt> random_dataset(const RandomDatasetOptions& o, const tokenizer::Tokenizer* tok) {
  LOOM_CHECK_ARG(!o.text || tok, "--random-prompt text needs --tokenizer DIR (random ids are decoded into text)");
  LOOM_CHECK_ARG(o.range_ratio >= 0 && o.range_ratio <= 1, "--random-range-ratio: ", o.range_ratio,
                 " must be in [0, 1]");
  std::mt19937_64 rng(o.seed);
  const auto length = [&](int64_t len) {
    std::uniform_int_distribution<int64_t> u(std::max<int64_t>(1, static_cast<int64_t>(len * o.range_ratio)), len);
    return u(rng);
  };
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(o.vocab - 1));
  std::vector<BenchPrompt> out;
  for (int64_t i = 0; i < o.num_prompts; ++i) {
    BenchPrompt p;
    std::vector<int32_t> ids(length(o.input_len));
    for (auto& x : ids) x = id(rng);
    p.output_tokens = length(o.output_len);
    if (o.text) {
      const std::string text = tok->decode(ids, true);
      p.prompt = text;
      p.prompt_tokens = static_cast<int64_t>(tok->encode(text).size());
    } else {
      p.prompt = ids;
      p.prompt_tokens = static_cast<int64_t>(ids.size());
    }
    out.push_back(std::move(p));
  }
  return out;
}

std::vector<BenchPrompt> sharegpt_dataset(const std::string& path, int64_t num_prompts, uint64_t seed,
                                          const tokenizer::Tokenizer* tok, std::optional<int64_t> fixed_output_len) {
  LOOM_CHECK_ARG(tok || fixed_output_len, "--dataset sharegpt needs --tokenizer DIR (to count the replies' tokens) "
                                          "or --sharegpt-output-len N");
  std::ifstream in(path);
  LOOM_CHECK_ARG(in.good(), "--dataset-path: cannot read '", path, "'");
  nlohmann::json data;
  try {
    data = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw InvalidArgument(str("--dataset-path '", path, "' is not JSON: ", e.what()));
  }
  LOOM_CHECK_ARG(data.is_array(), "--dataset-path '", path, "': expected a JSON array of conversations");
  const auto count = [&](const std::string& s) { return tok ? static_cast<int64_t>(tok->encode(s).size()) : 0; };
  std::vector<BenchPrompt> all;
  for (const auto& entry : data) {
    if (!entry.is_object()) continue;
    const auto it = entry.contains("conversations") ? entry.find("conversations") : entry.find("conversation");
    if (it == entry.end() || !it->is_array() || it->size() < 2) continue;
    const auto& q = (*it)[0];
    const auto& a = (*it)[1];
    if (!q.is_object() || !a.is_object() || !q.contains("value") || !a.contains("value") || !q["value"].is_string() ||
        !a["value"].is_string())
      continue;
    BenchPrompt p;
    p.prompt = q["value"].get<std::string>();
    p.prompt_tokens = count(p.prompt.get<std::string>());
    p.output_tokens = fixed_output_len ? *fixed_output_len : count(a["value"].get<std::string>());
    if ((tok && p.prompt_tokens < 4) || p.output_tokens < 4) continue;
    all.push_back(std::move(p));
  }
  LOOM_CHECK_ARG(!all.empty(), "--dataset-path '", path, "': no conversation with a prompt and a reply");
  std::mt19937_64 rng(seed);
  std::shuffle(all.begin(), all.end(), rng);
  if (static_cast<int64_t>(all.size()) > num_prompts) all.resize(num_prompts);
  return all;
}

}  // namespace loom::cli
