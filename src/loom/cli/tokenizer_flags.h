// Flags shared by the tokenizer commands (tokenize, detokenize, chat-template).
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "loom/cli/args.h"
#include "loom/tokenizer/tokenizer.h"

namespace loom::cli {

// Loads the directory given by --tokenizer; a missing or malformed tokenizer is bad input (exit 2).
tokenizer::Tokenizer load_tokenizer_flag(const std::string& dir);

// Reads and parses the JSON file named by --<flag>; errors name the flag and the file.
nlohmann::ordered_json read_json_flag_file(const std::string& flag, const std::string& path);

}  // namespace loom::cli
