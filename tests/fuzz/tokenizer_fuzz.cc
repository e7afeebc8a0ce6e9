// Tokenizer: encode any bytes (invalid UTF-8 included), decode any ids. Only InvalidArgument (an id
// outside the vocabulary) may be thrown; every decoded id sequence must round-trip its length.
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

#include "fuzz_data.h"
#include "loom/tensor/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& tok = loom::fuzz::qwen3();
  if (size > 0 && data[0] % 2 == 0) {  // text -> ids -> text
    const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
    const auto ids = tok.encode(text);
    for (int32_t id : ids)
      if (id < 0 || id >= tok.vocab_size()) __builtin_trap();
    (void)tok.decode(ids);
    (void)tok.decode(ids, /*skip_special_tokens=*/true);
    loom::tokenizer::IncrementalDetokenizer inc(tok);
    std::string streamed;
    for (int32_t id : ids) streamed += inc.push(id);
    streamed += inc.flush();
    if (streamed != tok.decode(ids)) __builtin_trap();  // streaming must equal the whole
  } else if (size > 0) {  // arbitrary ids, some outside the vocabulary
    std::vector<int32_t> ids;
    for (size_t i = 1; i + 4 <= size; i += 4) {
      int32_t id;
      std::memcpy(&id, data + i, 4);
      ids.push_back(id % (tok.vocab_size() + 64));
    }
    try {
      (void)tok.decode(ids);
    } catch (const loom::InvalidArgument&) {
    }
  }
  return 0;
}
