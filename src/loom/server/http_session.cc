#include "loom/server/http_session.h"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <cstdio>
#include <sstream>

namespace loom::server {
namespace net = boost::asio;
namespace http = boost::beast::http;

namespace {

constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
constexpr std::string_view kLastChunk = "0\r\n\r\n";
constexpr auto kLinger = std::chrono::milliseconds(1000);  // reading out what a refused client still sends

template <class Header>
std::string serialize(const Header& h) {
  std::ostringstream os;
  os << h;
  return os.str();
}

}  // namespace

void SessionSet::add(const std::shared_ptr<HttpSession>& s) {
  std::lock_guard<std::mutex> g(mu_);
  sessions_[s.get()] = s;
}

void SessionSet::remove(const HttpSession* s) {
  std::lock_guard<std::mutex> g(mu_);
  sessions_.erase(s);
}

void SessionSet::close_all() {
  std::vector<std::shared_ptr<HttpSession>> open;
  {
    std::lock_guard<std::mutex> g(mu_);
    for (auto& [_, weak] : sessions_)
      if (auto s = weak.lock()) open.push_back(std::move(s));
  }
  for (auto& s : open) s->close();
}

size_t SessionSet::size() const {
  std::lock_guard<std::mutex> g(mu_);
  return sessions_.size();
}

HttpSession::HttpSession(net::ip::tcp::socket socket, ApiService& service, const SessionConfig& config, SessionSet& set)
    : stream_(std::move(socket)), deadline_(stream_.get_executor()), heartbeat_(stream_.get_executor()),
      service_(service), config_(config), set_(set) {}

HttpSession::~HttpSession() {
  if (gen_) end_generation();  // cannot happen after close(), but never leave a request running
  set_.remove(this);
}

void HttpSession::start() {
  net::post(stream_.get_executor(), [self = shared_from_this()] {
    self->arm_deadline(self->config_.header_timeout);  // a silent new connection counts as a slow header
    self->read_header();
  });
}

void HttpSession::close() {
  net::post(stream_.get_executor(), [self = shared_from_this()] { self->close_now(); });
}

// ---- reading a request ----

void HttpSession::arm_deadline(std::chrono::milliseconds d) {
  const uint64_t generation = ++deadline_generation_;
  deadline_.expires_after(d);
  deadline_.async_wait([self = shared_from_this(), generation](error_code ec) {
    if (ec || generation != self->deadline_generation_ || self->closing_) return;
    self->timed_out_ = true;
    error_code ignored;
    self->socket().cancel(ignored);  // the pending read ends with operation_aborted
  });
}

void HttpSession::disarm_deadline() {
  ++deadline_generation_;
  deadline_.cancel();
}

// A keep-alive connection waits up to the idle timeout for the next request's first byte.
void HttpSession::wait_for_request() {
  if (buffer_.size() > 0) {  // pipelined: it is here already
    arm_deadline(config_.header_timeout);
    return read_header();
  }
  arm_deadline(config_.idle_timeout);
  socket().async_read_some(buffer_.prepare(4096), [self = shared_from_this()](error_code ec, size_t n) {
    if (self->closing_) return;
    self->disarm_deadline();
    if (ec) return self->close_now();  // idle expiry or the client closed: nothing to answer
    self->buffer_.commit(n);
    self->arm_deadline(self->config_.header_timeout);
    self->read_header();
  });
}

void HttpSession::read_header() {
  timed_out_ = false;
  counted_ = head_ = false;  // a new request: its refusal, if any, is counted and has a body
  parser_.emplace();
  apply_limits(*parser_, config_.limits);
  http::async_read_header(socket(), buffer_, *parser_,
                          [self = shared_from_this()](error_code ec, size_t) { self->on_header(ec); });
}

void HttpSession::on_header(error_code ec) {
  if (closing_) return;
  if (ec) return on_read_failed(ec);
  disarm_deadline();
  version_ = parser_->get().version();
  if (auto refusal = check_header(*parser_, config_.limits)) {
    keep_alive_ = false;
    return send_reply(error_reply(*refusal));
  }
  const auto expect = parser_->get()[http::field::expect];
  if (boost::beast::iequals(expect, "100-continue") && !parser_->is_done()) {
    arm_deadline(config_.body_timeout);
    net::async_write(socket(), net::buffer(kContinue.data(), kContinue.size()),
                     [self = shared_from_this()](error_code ec, size_t) {
                       if (self->closing_) return;
                       if (ec) return self->on_read_failed(ec);
                       self->read_body();
                     });
    return;
  }
  arm_deadline(config_.body_timeout);
  read_body();
}

void HttpSession::read_body() {
  http::async_read(socket(), buffer_, *parser_, [self = shared_from_this()](error_code ec, size_t) { self->on_request(ec); });
}

void HttpSession::on_request(error_code ec) {
  if (closing_) return;
  if (ec) return on_read_failed(ec);
  disarm_deadline();
  dispatch();
}

void HttpSession::on_read_failed(error_code ec) {
  disarm_deadline();
  if (timed_out_) ec = boost::beast::error::timeout;
  if (auto refusal = read_error(ec, config_.limits)) {
    keep_alive_ = false;
    return send_reply(error_reply(*refusal));
  }
  close_now();
}

// ---- answering it ----

void HttpSession::dispatch() {
  auto& req = parser_->get();
  keep_alive_ = req.keep_alive();
  head_ = req.method() == http::verb::head;
  try {
    RoutedRequest routed;
    try {
      routed = route_request(request_view(req), service_.router());
    } catch (const ApiError& e) {
      parser_.reset();
      return send_reply(error_reply(e));
    }
    parser_.reset();  // the request's memory goes; only the parsed body is kept
    if (buffer_.size() == 0 && buffer_.capacity() > kMaxPipelined) buffer_.shrink_to_fit();  // after a big body
    if (!routed.generate) return send_reply(service_.answer(routed.route));
    start_generation(std::move(*routed.generate));
  } catch (const std::exception& e) {  // a bug, not the client's fault: a 500 with the envelope
    parser_.reset();
    send_reply(error_reply(ApiError(500, "server_error", str("internal error: ", e.what()))));
  }
}

void HttpSession::start_generation(ParsedRequest parsed) {
  std::weak_ptr<HttpSession> weak = shared_from_this();
  try {
    gen_ = service_.submit(parsed, [weak] {
      if (auto self = weak.lock()) self->wake();
    });
  } catch (const ApiError& e) {
    return send_reply(error_reply(e));
  }
  ++service_.open_generations;
  parsed.request = {};  // the prompt lives in the engine now
  if (parsed.stream) {
    sse_.emplace(std::move(parsed), service_.tokenizer());
    http::response<http::empty_body> res{http::status::ok, version_};
    res.set(http::field::content_type, "text/event-stream");
    res.set(http::field::cache_control, "no-cache");
    res.keep_alive(keep_alive_);
    res.chunked(true);
    status_ = 200;
    next_ += serialize(res.base());
    last_event_ = std::chrono::steady_clock::now();
    on_heartbeat();
  } else {
    answer_.emplace(std::move(parsed), service_.tokenizer());
  }
  watch_peer();
  pump();
}

void HttpSession::wake() {
  if (!wake_posted_.exchange(true))
    net::post(stream_.get_executor(), [self = shared_from_this()] {
      self->wake_posted_ = false;
      self->pump();
    });
}

// Moves the outputs that arrived into the response, as far as the buffer allows (a stalled reader
// leaves them in the channel; they are bounded by the request's max_tokens).
void HttpSession::pump() {
  if (!gen_ || closing_) return;
  if (sse_) {
    if (out_.size() + next_.size() >= kMaxBuffered) return;  // on_written pumps again
    const std::string events = sse_->encode(gen_->channel->take());
    if (!events.empty()) {
      queue_chunk(events);
      last_event_ = std::chrono::steady_clock::now();
    }
    if (sse_->done()) {
      next_ += kLastChunk;
      end_generation();
      response_done_ = true;
    }
    return flush();
  }
  if (!answer_->add(gen_->channel->take())) return;
  const Reply reply = answer_->failure() ? error_reply(*answer_->failure()) : json_reply(200, answer_->response());
  end_generation();
  send_reply(reply);
}

void HttpSession::on_heartbeat() {
  if (!gen_ || !sse_ || closing_) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_event_ >= kHeartbeat) {
    if (out_.size() + next_.size() < kMaxBuffered) queue_chunk(SseEncoder::kHeartbeat);
    last_event_ = now;
    flush();
  }
  heartbeat_.expires_at(last_event_ + kHeartbeat);
  heartbeat_.async_wait([self = shared_from_this()](error_code ec) {
    if (!ec) self->on_heartbeat();
  });
}

// The generation is over (answered, failed or abandoned): choices still running are aborted.
void HttpSession::end_generation() {
  if (!gen_) return;
  if (!gen_->channel->finished()) service_.abort(*gen_);
  gen_.reset();
  heartbeat_.cancel();
  --service_.open_generations;
}

void HttpSession::send_reply(const Reply& reply) {
  http::response<http::string_body> res{static_cast<http::status>(reply.status), version_};
  res.set(http::field::content_type, reply.content_type);
  res.keep_alive(keep_alive_);
  res.body() = reply.body;
  res.prepare_payload();
  status_ = reply.status;
  next_ += head_ ? serialize(res.base()) : serialize(res);
  response_done_ = true;
  flush();
}

void HttpSession::queue_chunk(std::string_view data) {
  char size[20];
  std::snprintf(size, sizeof size, "%zx\r\n", data.size());
  next_ += size;
  next_ += data;
  next_ += "\r\n";
}

// One write at a time; what is queued meanwhile goes out with the next.
void HttpSession::flush() {
  if (writing_ || closing_) return;
  if (next_.empty()) {
    if (response_done_) finish_response();
    return;
  }
  out_.swap(next_);
  writing_ = true;
  stream_.expires_after(config_.write_timeout);  // the write timeout: a reader that stopped is dropped
  net::async_write(stream_, net::buffer(out_), [self = shared_from_this()](error_code ec, size_t) { self->on_written(ec); });
}

void HttpSession::on_written(error_code ec) {
  writing_ = false;
  out_.clear();
  if (closing_) return;
  if (ec) return client_left();  // gone, or stalled past the write timeout
  stream_.expires_never();
  pump();
  flush();
}

void HttpSession::finish_response() {
  response_done_ = false;
  count_once(status_);
  sse_.reset();
  answer_.reset();
  if (watching_) {  // the read watching the client must end before the next request's read
    resume_after_watch_ = true;
    error_code ignored;
    socket().cancel(ignored);
    return;
  }
  next_request_or_close();
}

void HttpSession::next_request_or_close() {
  if (keep_alive_) return wait_for_request();
  graceful_close();
}

// ---- the client's side while a generation runs ----

void HttpSession::watch_peer() {
  watching_ = true;
  socket().async_read_some(buffer_.prepare(4096),
                           [self = shared_from_this()](error_code ec, size_t n) { self->on_peer(ec, n); });
}

void HttpSession::on_peer(error_code ec, size_t n) {
  watching_ = false;
  if (closing_) return;
  if (!ec) buffer_.commit(n);  // the next request, sent early: kept for it
  if (resume_after_watch_) {
    resume_after_watch_ = false;
    if (ec && ec != net::error::operation_aborted) return close_now();
    return next_request_or_close();
  }
  if (ec) return client_left();  // closed or reset: nobody to answer
  if (buffer_.size() < kMaxPipelined) watch_peer();
}

// The client closed its connection or stopped reading: its request is aborted (its KV pages are
// freed on the engine's next turn). A non-streamed answer counts as 499 (nginx's "client closed
// request"); a stream already sent its 200.
void HttpSession::client_left() {
  if (gen_) count_once(sse_ ? 200 : 499);
  else if (response_done_) count_once(status_);
  close_now();
}

void HttpSession::count_once(int status) {
  if (counted_) return;
  counted_ = true;
  service_.count_response(status);
}

// Sends FIN and reads out what the client still sends (the rest of a refused body) for a short
// while, so that closing does not reset the connection before the client has read the answer.
void HttpSession::graceful_close() {
  error_code ignored;
  socket().shutdown(net::ip::tcp::socket::shutdown_send, ignored);
  arm_deadline(kLinger);
  linger();
}

void HttpSession::linger() {
  buffer_.clear();
  socket().async_read_some(buffer_.prepare(4096), [self = shared_from_this()](error_code ec, size_t) {
    if (self->closing_) return;
    if (ec) return self->close_now();  // the client closed too, or the linger expired
    self->linger();
  });
}

void HttpSession::close_now() {
  if (closing_) return;
  closing_ = true;
  end_generation();
  disarm_deadline();
  heartbeat_.cancel();
  error_code ignored;
  socket().shutdown(net::ip::tcp::socket::shutdown_both, ignored);
  stream_.close();
}

}  // namespace loom::server
