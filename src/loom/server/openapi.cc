#include "loom/server/openapi.h"

namespace loom::server {

const std::string& openapi_json() {
  static const std::string doc =
#include "loom/server/openapi.json.inc"
      ;
  return doc;
}

}  // namespace loom::server
