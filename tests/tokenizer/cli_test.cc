// `loom tokenize`, `loom detokenize` and `loom chat-template` through the real binary.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer_fixture.h"

namespace loom::tokenizer {
namespace {

struct Result {
  int code = -1;
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// Runs `loom <args>` (args quoted as for sh) and captures its exit code and output.
Result loom(const std::string& args) {
  if (::access(LOOM_BINARY, X_OK) != 0) {  // the test target does not build it; say so plainly
    ADD_FAILURE() << "loom binary not found at " << LOOM_BINARY << " (build the `loom` target first)";
    return {127, "", "loom binary not built\n"};
  }
  static int n = 0;
  const std::string base = ::testing::TempDir() + "/loom_tok_cli_" + std::to_string(::getpid()) + "_" + std::to_string(n++);
  const int status = std::system((std::string(LOOM_BINARY) + " " + args + " >" + base + ".out 2>" + base + ".err").c_str());
  Result r{WIFEXITED(status) ? WEXITSTATUS(status) : 128, slurp(base + ".out"), slurp(base + ".err")};
  std::remove((base + ".out").c_str());
  std::remove((base + ".err").c_str());
  return r;
}

std::string write_temp(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/" + std::to_string(::getpid()) + "_" + name;
  std::ofstream(path) << text;
  return path;
}

const std::string kDir = "--tokenizer " + testing::qwen3_dir();

TEST(TokenizerCli, TokenizeAndDetokenize) {
  Result r = loom("tokenize " + kDir + " --text 'Hello, world!'");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["ids"], nlohmann::json({9707, 11, 1879, 0}));
  r = loom("detokenize " + kDir + " --ids 9707,11,1879,0");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["text"], "Hello, world!");
  r = loom("detokenize " + kDir + " --ids 151644,872,151645 --skip-special-tokens");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["text"], "user");
}

TEST(TokenizerCli, ChatTemplate) {
  const std::string messages = write_temp("messages.json", R"([{"role": "user", "content": "Think first."}])");
  Result r = loom("chat-template " + kDir + " --messages " + messages + " --enable-thinking false");
  ASSERT_EQ(r.code, 0) << r.err;
  auto out = nlohmann::json::parse(r.out);
  EXPECT_EQ(out["text"], "<|im_start|>user\nThink first.<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
  EXPECT_EQ(out["ids"], nlohmann::json({151644, 872, 198, 38687, 1156, 13, 151645, 198, 151644, 77091, 198, 151667,
                                        271, 151668, 271}));
  r = loom("chat-template " + kDir + " --messages " + messages + " --no-generation-prompt");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["text"], "<|im_start|>user\nThink first.<|im_end|>\n");

  const std::string tools = write_temp(
      "tools.json", R"([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])");
  r = loom("chat-template " + kDir + " --messages " + messages + " --tools " + tools);
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string text = nlohmann::json::parse(r.out)["text"];
  // Key order of the tools file is kept, as Python's json.dumps would.
  EXPECT_NE(text.find(R"({"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}})"),
            std::string::npos)
      << text;
}

TEST(TokenizerCli, BadInputExitsTwoWithOneLine) {
  const std::string messages = write_temp("m2.json", R"([{"role": "user", "content": "x"}])");
  const std::string not_json = write_temp("bad.json", "[{oops");
  const std::pair<std::string, std::string> cases[] = {
      {"tokenize " + kDir, "--text is required"},
      {"tokenize --text hi", "--tokenizer is required"},
      {"tokenize --tokenizer /nonexistent/dir --text hi", "--tokenizer"},
      {"tokenize " + kDir + " --text hi --bogus 1", "unknown flag(s): --bogus"},
      {"detokenize " + kDir + " --ids 1,abc", "--ids: 'abc' is not an integer"},
      {"detokenize " + kDir + " --ids 999999", "out of range"},
      {"chat-template " + kDir + " --messages /nonexistent.json", "--messages: cannot open"},
      {"chat-template " + kDir + " --messages " + not_json, "--messages"},
      {"chat-template " + kDir + " --messages " + messages + " --enable-thinking maybe", "allowed: true, false"},
      {"chat-template " + kDir + " --messages " + messages + " --tools " + messages + " --extra", "--extra"},
  };
  for (const auto& [args, needle] : cases) {
    const Result r = loom(args);
    EXPECT_EQ(r.code, 2) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << args << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
}

}  // namespace
}  // namespace loom::tokenizer
