// A deliberately small HTTP/1.1 client over a raw loopback socket, so tests control exactly when
// a connection goes away (a client killed mid-stream) and see the bytes the server sent.
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace loom::server::testing {

struct HttpResponse {
  int status = 0;
  std::string headers;  // raw header block
  std::string body;     // de-chunked
  nlohmann::json json() const { return nlohmann::json::parse(body); }
};

class HttpConnection {
 public:
  explicit HttpConnection(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      throw std::runtime_error("cannot connect to 127.0.0.1:" + std::to_string(port));
  }
  ~HttpConnection() { close(); }
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // Sends the request; a server that closes early (413) may make the send fail: that is fine.
  void send_request(const std::string& method, const std::string& path, const std::string& body,
                    const std::string& extra_headers = "") {
    std::string req = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + extra_headers;
    if (method == "POST") req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    req += "\r\n" + body;
    size_t sent = 0;
    while (sent < req.size()) {
      const ssize_t n = ::send(fd_, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return;
      sent += static_cast<size_t>(n);
    }
  }

  // Reads the response; `on_body` sees the de-chunked body as it grows and may return false to
  // stop reading (the caller then usually close()s the connection, like a killed client).
  HttpResponse read_response(const std::function<bool(const std::string& body)>& on_body = nullptr) {
    HttpResponse r;
    std::string raw;
    size_t header_end = std::string::npos;
    while (header_end == std::string::npos) {
      if (!recv_more(raw)) return r;
      header_end = raw.find("\r\n\r\n");
    }
    r.headers = raw.substr(0, header_end);
    r.status = std::stoi(r.headers.substr(r.headers.find(' ') + 1, 3));
    std::string pending = raw.substr(header_end + 4);
    const bool chunked = lower(r.headers).find("transfer-encoding: chunked") != std::string::npos;
    const size_t cl_pos = lower(r.headers).find("content-length:");
    const size_t length = cl_pos == std::string::npos ? std::string::npos : std::stoul(r.headers.substr(cl_pos + 15));
    while (true) {
      bool done = false;
      if (chunked) {
        // Move every complete chunk from `pending` into the body.
        while (true) {
          const size_t eol = pending.find("\r\n");
          if (eol == std::string::npos) break;
          const size_t size = std::stoul(pending.substr(0, eol), nullptr, 16);
          if (size == 0) {
            done = true;
            break;
          }
          if (pending.size() < eol + 2 + size + 2) break;
          r.body += pending.substr(eol + 2, size);
          pending.erase(0, eol + 2 + size + 2);
        }
      } else {
        r.body += pending;
        pending.clear();
        done = length != std::string::npos && r.body.size() >= length;
      }
      if (on_body && !on_body(r.body)) return r;
      if (done || !recv_more(pending)) return r;
    }
  }

 private:
  static std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }
  bool recv_more(std::string& into) {
    char buf[16384];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) return false;
    into.append(buf, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
};

inline HttpResponse http(int port, const std::string& method, const std::string& path, const std::string& body = "",
                         const std::string& extra_headers = "") {
  HttpConnection c(port);
  c.send_request(method, path, body, extra_headers);
  return c.read_response();
}

inline HttpResponse post(int port, const std::string& path, const nlohmann::json& body) {
  return http(port, "POST", path, body.dump());
}

// The `data:` payloads of an SSE body, in order (comment lines skipped).
inline std::vector<std::string> sse_data(const std::string& body) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (true) {
    const size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) break;
    const std::string event = body.substr(pos, end - pos);
    if (event.rfind("data: ", 0) == 0) out.push_back(event.substr(6));
    pos = end + 2;
  }
  return out;
}

}  // namespace loom::server::testing
