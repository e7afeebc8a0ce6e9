// Arbitrary bytes as a client's request stream through the server's HTTP framing (Beast's parser
// with the server's limits: server/http_framing) and, for each request it yields, the routing, API
// key check and body parsing the server runs before it submits to the engine (server/request_router)
// plus the engine's validation. The first byte picks the limits: the server's defaults, or tight
// ones (so that 413, 414 and 431 are reachable inside libFuzzer's -max_len), and whether an API
// key is required. A refusal is an ApiError or RequestError (the server's 4xx); anything else,
// or a crash, is a bug.
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_data.h"
#include "loom/engine/validate.h"
#include "loom/server/http_framing.h"
#include "loom/server/request_router.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  loom::server::HttpLimits limits;  // the server's defaults, with --max-request-bytes' default
  if (data[0] & 1) {
    limits.max_header_bytes = 1024;
    limits.max_target_bytes = 256;
    limits.max_body_bytes = 512;
  }
  loom::server::RouterConfig router;
  router.protocol = &loom::fuzz::protocol_context();
  if (data[0] & 2) router.api_key = "fuzz-key";
  const std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  loom::server::parse_request_stream(
      bytes, limits,
      [&](loom::server::RequestParser& parser) {
        try {
          const auto routed = loom::server::route_request(loom::server::request_view(parser.get()), router);
          if (routed.generate) loom::engine::validate_request(routed.generate->request, loom::fuzz::protocol_context().limits);
        } catch (const loom::server::ApiError&) {
        } catch (const loom::engine::RequestError&) {
        }
      },
      [](const loom::server::ApiError& refusal) {
        if (refusal.status() < 400 || refusal.status() > 499) __builtin_trap();  // framing refusals are 4xx
      });
  return 0;
}
