// Tokenizer throughput on a few MB of deterministic mixed text (English prose, code, CJK, emoji,
// numbers, chat markup). `bench_tokenizer --dump_text=FILE --dump_ids=IDS` writes the exact text
// and loom's ids and exits, so scripts/hf_tokenizer_bench.py can time Hugging Face tokenizers on
// the same bytes and check that it produces the same ids.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "loom/tokenizer/tokenizer.h"

namespace {

// A tiny fixed generator (splitmix64) so the text is the same on every platform and compiler.
struct Rng {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  size_t below(size_t n) { return static_cast<size_t>(next() % n); }
};

template <size_t N>
const char* pick(Rng& rng, const char* const (&items)[N]) {
  return items[rng.below(N)];
}

std::string mixed_text(size_t target_bytes) {
  static const char* const kWords[] = {
      "the", "model", "serves", "experts", "tokens", "parallel", "context", "attention", "cache", "of", "and", "is",
      "in", "to", "a", "with", "for", "that", "throughput", "latency", "request", "batch", "prefill", "decode",
      "Mixture", "Qwen3", "DeepSeek", "GPU", "kernel", "memory", "schedule", "stream", "isn't", "we'll", "they've"};
  static const char* const kCode[] = {
      "for (int i = 0; i < n; ++i) {\n    sum += a[i] * b[i];\n}\n",
      "def forward(self, x):\n    return self.proj(torch.relu(self.fc(x)))\n",
      "if (err != cudaSuccess) { fprintf(stderr, \"%s\\n\", cudaGetErrorString(err)); return -1; }\n",
      "const auto it = std::find_if(v.begin(), v.end(), [&](const Item& x) { return x.id == key; });\n",
      "SELECT name, COUNT(*) FROM requests WHERE status = 'done' GROUP BY name ORDER BY 2 DESC;\n",
      "    {\"role\": \"user\", \"content\": \"hello\"},\n"};
  static const char* const kCjk[] = {"上下文并行是长上下文推理的关键技术。", "专家混合模型在推理时只激活少量参数，",
                                     "東京の天気は晴れです。", "자연어 처리 모델을 서빙합니다. ", "今日はいい天気ですね！",
                                     "我们使用分页注意力缓存。"};
  static const char* const kEmoji[] = {"😀", "👍🏽", "🚀", "🇺🇸", "👨‍👩‍👧", "🔥", "✅", "🤖", "❤️"};
  static const char* const kMarkup[] = {"<|im_start|>user\n", "<|im_end|>\n", "<think>\n", "\n</think>\n\n"};
  Rng rng{42};
  std::string s;
  s.reserve(target_bytes + 256);
  while (s.size() < target_bytes) {
    const size_t kind = rng.below(100);
    if (kind < 55) {  // an English sentence
      const size_t n = 5 + rng.below(15);
      for (size_t k = 0; k < n; ++k) {
        std::string w = pick(rng, kWords);
        if (k == 0) w[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(w[0])));
        s += w;
        s += k + 1 < n ? (rng.below(12) == 0 ? ", " : " ") : ". ";
      }
      if (rng.below(6) == 0) s += "\n\n";
    } else if (kind < 70) {
      s += pick(rng, kCode);
    } else if (kind < 82) {
      s += pick(rng, kCjk);
    } else if (kind < 88) {
      for (size_t k = 1 + rng.below(4); k > 0; --k) s += pick(rng, kEmoji);
      s += ' ';
    } else if (kind < 96) {  // numbers
      s += std::to_string(rng.next() % 1000000) + "." + std::to_string(rng.below(100)) + " ";
    } else {
      s += pick(rng, kMarkup);
    }
  }
  return s;
}

constexpr size_t kTextBytes = 4 << 20;

const loom::tokenizer::Tokenizer& qwen3() {
  static const auto tok = loom::tokenizer::Tokenizer::load(std::string(LOOM_TEST_DATA) + "/tokenizers/qwen3");
  return tok;
}

const std::string& text() {
  static const std::string t = mixed_text(kTextBytes);
  return t;
}

void BM_EncodeMixedText(benchmark::State& state) {
  const auto& tok = qwen3();
  const std::string& t = text();
  size_t tokens = 0;
  for (auto _ : state) {
    auto ids = tok.encode(t);
    tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * t.size()));
  state.counters["tokens"] = static_cast<double>(tokens);
  state.counters["MB"] = static_cast<double>(t.size()) / 1e6;
}
BENCHMARK(BM_EncodeMixedText)->Unit(benchmark::kMillisecond)->MinTime(2.0);

// Random 8-letter words, far more distinct words than the word cache holds: the cost of the BPE
// merge loop itself.
void BM_EncodeUncachedWords(benchmark::State& state) {
  const auto& tok = qwen3();
  std::string t;
  Rng rng{7};
  while (t.size() < (1 << 20)) {
    for (int k = 0; k < 8; ++k) t += static_cast<char>('a' + rng.below(26));
    t += ' ';
  }
  for (auto _ : state) {
    auto ids = tok.encode(t);
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * t.size()));
}
BENCHMARK(BM_EncodeUncachedWords)->Unit(benchmark::kMillisecond);

void BM_DecodeMixedText(benchmark::State& state) {
  const auto& tok = qwen3();
  const auto ids = tok.encode(text());
  for (auto _ : state) {
    auto s = tok.decode(ids);
    benchmark::DoNotOptimize(s.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text().size()));
}
BENCHMARK(BM_DecodeMixedText)->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  // --dump_text=FILE / --dump_ids=FILE write the benchmark text / loom's ids for it (JSON) and exit.
  bool dumped = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--dump_text=", 12) == 0) {
      std::ofstream(argv[i] + 12, std::ios::binary) << text();
      std::printf("wrote %zu bytes to %s\n", text().size(), argv[i] + 12);
      dumped = true;
    } else if (std::strncmp(argv[i], "--dump_ids=", 11) == 0) {
      const auto ids = qwen3().encode(text());
      std::ofstream out(argv[i] + 11);
      out << '[';
      for (size_t k = 0; k < ids.size(); ++k) out << (k ? "," : "") << ids[k];
      out << "]\n";
      std::printf("wrote %zu ids to %s\n", ids.size(), argv[i] + 11);
      dumped = true;
    }
  }
  if (dumped) return 0;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
