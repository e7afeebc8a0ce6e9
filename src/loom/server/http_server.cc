#include "loom/server/http_server.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <cstdio>
#include <thread>
#include <vector>

#include "loom/server/api_service.h"
#include "loom/server/http_session.h"

namespace loom::server {
namespace net = boost::asio;
using tcp = net::ip::tcp;

struct HttpServer::Io {
  Io(engine::Engine& engine, const ServerOptions& o)
      : service(engine, o), acceptor(net::make_strand(context)), retry(acceptor.get_executor()) {
    config.limits.max_body_bytes = o.max_request_bytes;
    config.header_timeout = o.header_timeout;
    config.body_timeout = o.body_timeout;
    config.idle_timeout = o.idle_timeout;
    config.write_timeout = o.write_timeout;
    send_buffer = o.socket_send_buffer;
  }

  void accept() {
    acceptor.async_accept(net::make_strand(context), [this](boost::system::error_code ec, tcp::socket socket) {
      if (stopping || !acceptor.is_open()) return;
      if (ec) {  // out of descriptors, most likely: retry soon rather than spin
        std::fprintf(stderr, "loom serve: accept failed: %s\n", ec.message().c_str());
        retry.expires_after(std::chrono::milliseconds(50));
        retry.async_wait([this](boost::system::error_code e) {
          if (!e) accept();
        });
        return;
      }
      socket.set_option(tcp::no_delay(true), ec);  // an SSE event is one small write: send it now
      if (send_buffer > 0) socket.set_option(net::socket_base::send_buffer_size(send_buffer), ec);
      auto session = std::make_shared<HttpSession>(std::move(socket), service, config, sessions);
      sessions.add(session);
      session->start();
      accept();
    });
  }

  // Destroyed bottom-up: the context, whose destructor may destroy sessions still queued in it,
  // goes before the service, configuration and set that those sessions use.
  ApiService service;
  SessionConfig config;
  int send_buffer = 0;
  SessionSet sessions;
  net::io_context context;
  tcp::acceptor acceptor;
  net::steady_timer retry;
  std::atomic<bool> stopping{false};
};

HttpServer::HttpServer(engine::Engine& engine, ServerOptions options)
    : engine_(engine), options_(std::move(options)) {
  LOOM_CHECK_ARG(options_.http_threads >= 1, "--http-threads must be at least 1");
  io_ = std::make_unique<Io>(engine_, options_);
}

HttpServer::~HttpServer() { stop(); }

int HttpServer::bind() {
  boost::system::error_code ec;
  const auto address = net::ip::make_address(options_.host, ec);
  LOOM_CHECK(!ec, "cannot listen on ", options_.host, ":", options_.port, " (not an IP address: ", ec.message(), ")");
  const tcp::endpoint endpoint(address, static_cast<unsigned short>(options_.port));
  auto& acceptor = io_->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);  // bursts of connects queue
  LOOM_CHECK(!ec, "cannot listen on ", options_.host, ":", options_.port, " (", ec.message(), ")");
  return acceptor.local_endpoint().port();
}

void HttpServer::serve() {
  {
    std::lock_guard<std::mutex> g(stop_mu_);
    if (stopped_) return;
    io_->accept();
  }
  std::vector<std::thread> threads;
  for (int i = 1; i < options_.http_threads; ++i) threads.emplace_back([this] { io_->context.run(); });
  io_->context.run();
  for (auto& t : threads) t.join();
}

void HttpServer::stop() {
  std::lock_guard<std::mutex> g(stop_mu_);
  if (stopped_) return;
  stopped_ = true;
  engine_.shutdown(options_.shutdown_grace);
  // Every request has ended now; give the responses a moment to send their last bytes.
  for (int i = 0; i < 200 && io_->service.open_generations.load() > 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  io_->stopping = true;
  net::post(io_->acceptor.get_executor(), [io = io_.get()] {
    boost::system::error_code ignored;
    io->acceptor.close(ignored);
    io->retry.cancel();
  });
  io_->sessions.close_all();
  // Closed connections finish on the I/O threads; then run() returns for want of work. A
  // connection that does not let go within 2 s is cut off.
  for (int i = 0; i < 200 && io_->sessions.size() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  io_->context.stop();
}

}  // namespace loom::server
