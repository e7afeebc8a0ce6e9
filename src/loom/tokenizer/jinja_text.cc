// Python str semantics for the Jinja builtins: strip, split, replace, case mapping.
#include <cctype>
#include <set>

#include "loom/tokenizer/jinja_builtin_util.h"

namespace loom::tokenizer::jinja {

bool is_py_space(uint32_t c) {
  return c == ' ' || (c >= '\t' && c <= '\r') || c == 0x1c || c == 0x1d || c == 0x1e || c == 0x1f || c == 0x85 ||
         c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
         c == 0x205f || c == 0x3000;
}

static uint32_t decode_at(const std::string& s, size_t b, size_t e) {
  uint32_t cp = static_cast<unsigned char>(s[b]);
  const size_t n = e - b;
  if (n == 1) return cp;
  cp &= n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07;
  for (size_t k = b + 1; k < e; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[k]) & 0x3F);
  return cp;
}

// Python str.strip family: chars (a string) or whitespace when absent.
std::string py_strip(const std::string& s, const Value& chars, bool left, bool right) {
  const auto bounds = char_boundaries(s);
  std::set<uint32_t> set;
  const bool custom = chars.is_string();
  if (custom) {
    const auto cb = char_boundaries(chars.s);
    for (size_t k = 0; k + 1 < cb.size(); ++k) set.insert(decode_at(chars.s, cb[k], cb[k + 1]));
  } else if (!chars.is_none() && !chars.is_undefined()) {
    fail("strip() argument must be a string or none");
  }
  auto strippable = [&](size_t k) {
    const uint32_t c = decode_at(s, bounds[k], bounds[k + 1]);
    return custom ? set.count(c) > 0 : is_py_space(c);
  };
  size_t b = 0, e = bounds.size() - 1;
  if (left) while (b < e && strippable(b)) ++b;
  if (right) while (e > b && strippable(e - 1)) --e;
  return s.substr(bounds[b], bounds[e] - bounds[b]);
}

Value py_split(const std::string& s, const Value& sep, int64_t maxsplit) {
  Array out;
  if (sep.is_none() || sep.is_undefined()) {  // runs of whitespace, no empty parts
    const auto bounds = char_boundaries(s);
    size_t k = 0;
    const size_t n = bounds.size() - 1;
    auto space = [&](size_t i) { return is_py_space(decode_at(s, bounds[i], bounds[i + 1])); };
    while (true) {
      while (k < n && space(k)) ++k;
      if (k == n) break;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
        size_t e = n;
        while (e > k && space(e - 1)) --e;
        out.push_back(Value::string(s.substr(bounds[k], bounds[e] - bounds[k])));
        break;
      }
      size_t e = k;
      while (e < n && !space(e)) ++e;
      out.push_back(Value::string(s.substr(bounds[k], bounds[e] - bounds[k])));
      k = e;
    }
    return Value::array(std::move(out));
  }
  const std::string& d = need_string(sep, "split() separator");
  if (d.empty()) fail("split(): empty separator");
  size_t pos = 0;
  for (size_t hit; (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) &&
                   (hit = s.find(d, pos)) != std::string::npos;
       pos = hit + d.size())
    out.push_back(Value::string(s.substr(pos, hit - pos)));
  out.push_back(Value::string(s.substr(pos)));
  return Value::array(std::move(out));
}

std::string replace_all(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
  if (from.empty()) fail("replace(): empty search string is not supported");
  std::string out;
  size_t pos = 0;
  int64_t done = 0;
  for (size_t hit; (count < 0 || done < count) && (hit = s.find(from, pos)) != std::string::npos;
       pos = hit + from.size(), ++done)
    out += s.substr(pos, hit - pos) + to;
  return out + s.substr(pos);
}

std::string map_case(const std::string& s, bool upper) {
  std::string out = s;
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x80) c = static_cast<char>(upper ? std::toupper(c) : std::tolower(c));
  return out;
}

std::string title_case(const std::string& s) {
  std::string out = s;
  bool prev_letter = false;
  for (char& c : out) {
    const bool letter = std::isalpha(static_cast<unsigned char>(c));
    if (letter) c = static_cast<char>(prev_letter ? std::tolower(c) : std::toupper(c));
    prev_letter = letter;
  }
  return out;
}

}  // namespace loom::tokenizer::jinja
