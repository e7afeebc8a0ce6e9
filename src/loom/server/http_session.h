// One client connection on Boost.Beast, every step asynchronous on the connection's strand (so a
// few I/O threads serve thousands of connections): read a request under the header and body
// deadlines, route it, and answer it — at once, or, for a generation, as the engine's outputs
// arrive (the RequestChannel's callback wakes the strand; no thread waits). While a generation
// runs a read stays pending on the socket, so a client that leaves is seen at once and its
// request aborted; a client that stops reading is dropped when one write cannot progress for the
// write timeout, and at most kMaxBuffered bytes wait for it meanwhile.
#pragma once
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "loom/server/api_service.h"
#include "loom/server/generation_output.h"
#include "loom/server/http_framing.h"

namespace loom::server {

struct SessionConfig {
  HttpLimits limits;
  std::chrono::milliseconds header_timeout{30000}, body_timeout{60000}, idle_timeout{5000}, write_timeout{30000};
};

class HttpSession;

// The open connections, so that a stop can close them all.
class SessionSet {
 public:
  void add(const std::shared_ptr<HttpSession>& s);
  void remove(const HttpSession* s);
  void close_all();
  size_t size() const;

 private:
  mutable std::mutex mu_;
  std::unordered_map<const HttpSession*, std::weak_ptr<HttpSession>> sessions_;
};

class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  static constexpr size_t kMaxBuffered = 64 << 10;   // response bytes waiting for a slow reader
  static constexpr size_t kMaxPipelined = 64 << 10;  // bytes of the next request read early
  static constexpr auto kHeartbeat = std::chrono::milliseconds(500);

  HttpSession(boost::asio::ip::tcp::socket socket, ApiService& service, const SessionConfig& config, SessionSet& set);
  ~HttpSession();
  void start();
  void close();  // from any thread

 private:
  using error_code = boost::system::error_code;
  boost::asio::ip::tcp::socket& socket() { return stream_.socket(); }

  // Reading a request.
  void wait_for_request();
  void read_header();
  void on_header(error_code ec);
  void read_body();
  void on_request(error_code ec);
  void on_read_failed(error_code ec);
  void arm_deadline(std::chrono::milliseconds d);
  void disarm_deadline();

  // Answering it.
  void dispatch();
  void start_generation(ParsedRequest parsed);
  void wake();  // any thread: outputs arrived
  void pump();
  void on_heartbeat();
  void end_generation();
  void send_reply(const Reply& reply);
  void queue_chunk(std::string_view data);
  void flush();
  void on_written(error_code ec);
  void finish_response();
  void next_request_or_close();

  // The client's side while a generation runs.
  void watch_peer();
  void on_peer(error_code ec, size_t n);
  void client_left();

  void count_once(int status);
  void graceful_close();
  void linger();
  void close_now();

  boost::beast::tcp_stream stream_;  // writes go through it (its expiry is the write timeout)
  boost::beast::flat_buffer buffer_;
  boost::asio::steady_timer deadline_, heartbeat_;
  ApiService& service_;
  const SessionConfig& config_;
  SessionSet& set_;
  std::optional<RequestParser> parser_;
  uint64_t deadline_generation_ = 0;
  bool timed_out_ = false;

  // The response in progress.
  unsigned version_ = 11;
  bool keep_alive_ = false, head_ = false;
  int status_ = 0;
  bool counted_ = false;
  bool response_done_ = false;  // its last byte is queued
  bool writing_ = false, closing_ = false;
  std::string out_, next_;  // being written, and queued behind it

  std::optional<Submission> gen_;  // the generation in progress
  std::optional<SseEncoder> sse_;
  std::optional<AnswerCollector> answer_;
  std::atomic<bool> wake_posted_{false};
  std::chrono::steady_clock::time_point last_event_;
  bool watching_ = false, resume_after_watch_ = false;
};

}  // namespace loom::server
