// The prompts `loom bench serving` sends: random ones of chosen lengths (token ids, or text made
// by decoding random ids when a tokenizer is given) or the first turns of a ShareGPT-style file.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "loom/tokenizer/tokenizer.h"

namespace loom::cli {

struct BenchPrompt {
  nlohmann::json prompt;  // a string, or an array of token ids (completions only)
  int64_t prompt_tokens = 0;
  int64_t output_tokens = 0;  // max_tokens of the request
};

struct RandomDatasetOptions {
  int64_t num_prompts = 1000;
  int64_t input_len = 1024, output_len = 128;
  double range_ratio = 0.0;  // lengths uniform in [len * ratio, len] (SGLang's meaning)
  int64_t vocab = 10000;     // ids drawn from [0, vocab)
  bool text = false;         // decode the ids into text (needs the tokenizer)
  uint64_t seed = 1;
};
std::vector<BenchPrompt> random_dataset(const RandomDatasetOptions& o, const tokenizer::Tokenizer* tok);

// JSON: [{"conversations": [{"from": "human", "value": ...}, {"from": "gpt", "value": ...}, ...]}, ...]
// ("conversation" is accepted too). The first turn is the prompt; the reply's token count is the
// output length unless `fixed_output_len` is given (then no tokenizer is needed). Entries whose
// prompt or reply is under 4 tokens are skipped, the rest shuffled with `seed`.
std::vector<BenchPrompt> sharegpt_dataset(const std::string& path, int64_t num_prompts, uint64_t seed,
                                          const tokenizer::Tokenizer* tok, std::optional<int64_t> fixed_output_len);

}  // namespace loom::cli
