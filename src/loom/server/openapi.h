// The OpenAPI 3.0 description of loom's HTTP API (served at /openapi.json): the endpoints, their
// request and response schemas and the error envelope. CI checks the server against it with
// schemathesis (tests/server/schemathesis_test.py).
#pragma once
#include <string>

namespace loom::server {

const std::string& openapi_json();

}  // namespace loom::server
