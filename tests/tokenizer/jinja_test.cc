// The Jinja engine against renderings made by Python Jinja2 with transformers' settings
// (jinja_golden.json, written by scripts/make_jinja_golden.py), plus the errors it must give.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "loom/tensor/error.h"
#include "loom/tokenizer/chat_template.h"

namespace loom::tokenizer {
namespace {

std::string render(const std::string& source, const nlohmann::ordered_json& vars = nlohmann::ordered_json::object()) {
  return ChatTemplate(source).render(vars);
}

// The message of the loom::Error that f throws ("" if none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Jinja, MatchesPythonJinja2OnGoldenCases) {
  std::ifstream f(std::string(LOOM_TEST_DATA) + "/../tokenizer/jinja_golden.json");
  ASSERT_TRUE(f) << "jinja_golden.json missing";
  const auto cases = nlohmann::ordered_json::parse(f);
  ASSERT_GE(cases.size(), 16u);
  for (const auto& c : cases) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const ChatTemplate tpl(c["template"].get<std::string>());
    if (c.contains("error")) {
      try {
        tpl.render(c["variables"]);
        ADD_FAILURE() << "expected raise_exception: " << c["error"];
      } catch (const InvalidArgument& e) {
        EXPECT_NE(std::string(e.what()).find(c["error"].get<std::string>()), std::string::npos) << e.what();
      }
    } else {
      EXPECT_EQ(tpl.render(c["variables"]), c["expected"].get<std::string>());
    }
  }
}

TEST(Jinja, UnknownConstructsNameTheConstructAndLine) {
  auto msg = error_of([] { render("line one\n{% include 'x.j2' %}"); });
  EXPECT_NE(msg.find("line 2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unsupported tag 'include'"), std::string::npos) << msg;

  msg = error_of([] { render("a\nb\n{{ x | frobnicate }}"); });
  EXPECT_NE(msg.find("line 3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unsupported filter 'frobnicate'"), std::string::npos) << msg;

  msg = error_of([] { render("{% if x is prime %}{% endif %}"); });
  EXPECT_NE(msg.find("unsupported test 'prime'"), std::string::npos) << msg;

  msg = error_of([] { render("\n\n\n{{ 'abc'.zfill(5) }}"); });
  EXPECT_NE(msg.find("line 4"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unsupported method 'zfill' on string"), std::string::npos) << msg;

  msg = error_of([] { render("{{ lipsum(2) }}"); });
  EXPECT_NE(msg.find("unknown function 'lipsum'"), std::string::npos) << msg;

  msg = error_of([] { render("{{ 2 ** 3 }}"); });
  EXPECT_NE(msg.find("'**'"), std::string::npos) << msg;
}

TEST(Jinja, SyntaxErrorsAreClear) {
  auto msg = error_of([] { render("{% if x %}never closed"); });
  EXPECT_NE(msg.find("endif"), std::string::npos) << msg;
  msg = error_of([] { render("{% for x in y %}{% endif %}"); });
  EXPECT_NE(msg.find("endif"), std::string::npos) << msg;
  msg = error_of([] { render("ok\n{{ 'unterminated }}"); });
  EXPECT_NE(msg.find("line 2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unterminated"), std::string::npos) << msg;
  msg = error_of([] { render("{{ x"); });
  EXPECT_NE(msg.find("unterminated"), std::string::npos) << msg;
  msg = error_of([] { render("{{ (1 + }}"); });
  EXPECT_NE(msg.find("unexpected"), std::string::npos) << msg;
  msg = error_of([] { render("{% endfor %}"); });
  EXPECT_NE(msg.find("endfor"), std::string::npos) << msg;
}

TEST(Jinja, RuntimeErrorsNameTheLine) {
  auto msg = error_of([] { render("\n{{ 'a' + 1 }}"); });
  EXPECT_NE(msg.find("line 2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unsupported operand types for +: string and int"), std::string::npos) << msg;
  msg = error_of([] { render("{% set d = {} %}{% set d.x = 1 %}"); });
  EXPECT_NE(msg.find("namespace"), std::string::npos) << msg;
  msg = error_of([] { render("{{ 1 // 0 }}"); });
  EXPECT_NE(msg.find("division by zero"), std::string::npos) << msg;
  EXPECT_THROW(render("{{ raise_exception('bad roles') }}"), InvalidArgument);
}

TEST(Jinja, VariablesAndUndefined) {
  nlohmann::ordered_json vars = {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"flag", false}};
  EXPECT_EQ(render("{{ messages[0].role }}:{{ messages[0]['content'] }}", vars), "user:hi");
  EXPECT_EQ(render("{{ nothing }}|{{ messages[5].role is defined }}|{{ flag is false }}", vars), "|False|True");
  EXPECT_EQ(render("{% if enable_thinking is defined and enable_thinking is false %}off{% else %}on{% endif %}", vars),
            "on");
}

}  // namespace
}  // namespace loom::tokenizer
