// `loom tokenize --tokenizer DIR --text "..." [--add-special-tokens]` prints {"ids": [...]};
// `loom detokenize --tokenizer DIR --ids 1,2,3 [--skip-special-tokens]` prints {"text": "..."}.
#include <cstdio>
#include <limits>

#include "loom/cli/tokenizer_flags.h"
#include "loom/tensor/error.h"

namespace loom::cli {

int cmd_tokenize(Args& args) {
  const auto text = args.get({"text"});
  if (!text) throw InvalidArgument("--text is required");
  const bool add_special = args.flag("add-special-tokens");
  const std::string dir = args.required("tokenizer");
  args.finish();
  const auto tok = load_tokenizer_flag(dir);
  nlohmann::ordered_json out;
  out["ids"] = tok.encode(*text, add_special);
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

int cmd_detokenize(Args& args) {
  const auto ids64 = args.int_list("ids");
  const bool skip = args.flag("skip-special-tokens");
  const std::string dir = args.required("tokenizer");
  args.finish();
  const auto tok = load_tokenizer_flag(dir);
  std::vector<int32_t> ids;
  for (int64_t id : ids64) {
    if (id < 0 || id >= tok.vocab_size())
      throw InvalidArgument(str("--ids: token id ", id, " is out of range [0, ", tok.vocab_size(), ")"));
    ids.push_back(static_cast<int32_t>(id));
  }
  nlohmann::ordered_json out;
  out["text"] = tok.decode(ids, skip);
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace loom::cli
