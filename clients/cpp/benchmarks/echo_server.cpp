// The latency floor for benchmarks/serve_latency.py: a sim2real.v1.PolicyService that
// answers with a fixed action and runs no model, in C++ on gRPC's callback API.
//
//   sim2real_echo_server --address 127.0.0.1:0 --address unix:/tmp/echo.sock
//       [--observation-dim 45] [--action-dim 12]
//
// Prints "ready PORT" (the first TCP address's port; 0 when there is none) once it
// serves; SIGTERM/SIGINT stop it. It answers GetPolicyInfo (the dims given, so a
// ControlSession sizes its buffers), Act and StreamAct (the request's sequence and
// client_time_ns echoed, the action all zeros), and checks nothing: no token, no size or
// finiteness check, no metrics. It is the cheapest server a client can talk to over the
// same transport, so a client's round trip against it is what the transport and the
// client cost, and our server's excess over it is what the server adds.
//
// Callback API rather than the synchronous one: no thread per stream (32 streams would
// be 32 blocked threads on 2 cores) and no completion-queue thread hop of our own; gRPC's
// own threads run the reactors.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "sim2real/v1/policy.grpc.pb.h"

namespace {

namespace v1 = sim2real::v1;

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }

// One StreamAct stream: read a request, write its answer, read the next. One read and one
// write are never outstanding at once, so the request and response objects are reused.
class EchoStream final : public grpc::ServerBidiReactor<v1::ActRequest, v1::ActResponse> {
 public:
  explicit EchoStream(int action_dim) {
    response_.mutable_action()->Resize(action_dim, 0.0F);
    // Headers now, as sim2real serve does: the client's session counts the stream as up
    // once it has them.
    StartSendInitialMetadata();
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client half-closed or went away
      Finish(grpc::Status::OK);
      return;
    }
    response_.set_sequence(request_.sequence());
    response_.set_client_time_ns(request_.client_time_ns());
    StartWrite(&response_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
      return;
    }
    StartRead(&request_);
  }

  void OnDone() override { delete this; }

 private:
  v1::ActRequest request_;
  v1::ActResponse response_;
};

class EchoService final : public v1::PolicyService::CallbackService {
 public:
  EchoService(int observation_dim, int action_dim)
      : observation_dim_(observation_dim), action_dim_(action_dim) {}

  grpc::ServerUnaryReactor* GetPolicyInfo(grpc::CallbackServerContext* context,
                                          const v1::PolicyInfoRequest*,
                                          v1::PolicyInfo* info) override {
    info->set_model_name("echo");
    info->set_model_version(1);
    info->set_observation_dim(observation_dim_);
    info->set_action_dim(action_dim_);
    info->set_execution_provider("none (echo)");
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* Act(grpc::CallbackServerContext* context, const v1::ActRequest* request,
                                v1::ActResponse* response) override {
    response->mutable_action()->Resize(action_dim_, 0.0F);
    response->set_sequence(request->sequence());
    response->set_client_time_ns(request->client_time_ns());
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerBidiReactor<v1::ActRequest, v1::ActResponse>* StreamAct(
      grpc::CallbackServerContext*) override {
    return new EchoStream(action_dim_);
  }

 private:
  int observation_dim_;
  int action_dim_;
};

int ParseDim(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  const long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || value < 1 || value > 65536) {
    throw std::invalid_argument(flag + ": expected a whole number 1..65536, got '" + text + "'");
  }
  return static_cast<int>(value);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> addresses;
  int observation_dim = 45, action_dim = 12;  // the benchmark's quadruped-sized policy
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string flag = argv[i];
      if (i + 1 >= argc) throw std::invalid_argument(flag + ": expected a value after it");
      const std::string value = argv[++i];
      if (flag == "--address") {
        addresses.push_back(value);
      } else if (flag == "--observation-dim") {
        observation_dim = ParseDim(flag, value);
      } else if (flag == "--action-dim") {
        action_dim = ParseDim(flag, value);
      } else {
        throw std::invalid_argument("unknown option " + flag);
      }
    }
    if (addresses.empty()) throw std::invalid_argument("--address: expected at least one");
  } catch (const std::exception& err) {
    std::fprintf(stderr, "error: %s\n", err.what());
    return 2;
  }

  EchoService service(observation_dim, action_dim);
  grpc::ServerBuilder builder;
  // The channel settings sim2real serve uses that a client can notice: accept its 1 s
  // keepalive pings (gRPC's default would answer them with GOAWAY too_many_pings).
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 500);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  std::vector<int> ports(addresses.size(), 0);
  for (std::size_t i = 0; i < addresses.size(); ++i) {
    builder.AddListeningPort(addresses[i], grpc::InsecureServerCredentials(), &ports[i]);
  }
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    std::fprintf(stderr, "error: cannot listen on the --address given\n");
    return 2;
  }
  int tcp_port = 0;
  for (std::size_t i = 0; i < addresses.size(); ++i) {
    if (addresses[i].rfind("unix", 0) != 0) {
      tcp_port = ports[i];
      break;
    }
  }
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  std::printf("ready %d\n", tcp_port);
  std::fflush(stdout);
  while (!g_stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  return 0;
}
