#include "loom/cli/tokenizer_flags.h"

#include <fstream>
#include <sstream>

#include "loom/tensor/error.h"

namespace loom::cli {

tokenizer::Tokenizer load_tokenizer_flag(const std::string& dir) {
  try {
    return tokenizer::Tokenizer::load(dir);
  } catch (const Error& e) {
    throw InvalidArgument(str("--tokenizer: ", e.what()));
  }
}

nlohmann::ordered_json read_json_flag_file(const std::string& flag, const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InvalidArgument(str("--", flag, ": cannot open '", path, "'"));
  std::ostringstream ss;
  ss << f.rdbuf();
  try {
    return nlohmann::ordered_json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    throw InvalidArgument(str("--", flag, ": '", path, "' is not valid JSON: ", e.what()));
  }
}

}  // namespace loom::cli
