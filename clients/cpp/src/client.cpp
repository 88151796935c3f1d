// PolicyClient: channel set-up (plaintext, TLS, mutual TLS, bearer token), Info, Act.
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>
#include <grpcpp/grpcpp.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "internal.h"

namespace sim2real {
namespace {

using google::protobuf::io::CodedInputStream;
using google::protobuf::internal::WireFormatLite;

constexpr const char* kStatusNames[] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

// The whole file, or std::invalid_argument naming the option, the path and the reason.
std::string ReadPem(const char* option, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw std::invalid_argument(std::string(option) + " " + path + ": cannot read it (" +
                                std::strerror(errno) + ")");
  }
  std::ostringstream text;
  text << in.rdbuf();
  std::string pem = text.str();
  if (pem.find("-----BEGIN ") == std::string::npos) {
    throw std::invalid_argument(std::string(option) + " " + path +
                                ": expected a PEM file (-----BEGIN ...), got " +
                                std::to_string(pem.size()) + " bytes without one");
  }
  return pem;
}

std::shared_ptr<grpc::ChannelCredentials> Credentials(const ClientOptions& options) {
  const bool has_cert = !options.tls_cert_file.empty();
  const bool has_key = !options.tls_key_file.empty();
  if (has_cert != has_key) {
    throw std::invalid_argument(
        std::string("mutual TLS needs both tls_cert_file and tls_key_file; got only ") +
        (has_cert ? "tls_cert_file" : "tls_key_file"));
  }
  if (options.tls_ca_file.empty()) {
    if (has_cert) {
      throw std::invalid_argument(
          "a client certificate (mutual TLS) needs tls_ca_file too: set tls_ca_file to the CA "
          "that signed the server's certificate");
    }
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ReadPem("tls_ca_file", options.tls_ca_file);
  if (has_cert) {
    ssl.pem_cert_chain = ReadPem("tls_cert_file", options.tls_cert_file);
    ssl.pem_private_key = ReadPem("tls_key_file", options.tls_key_file);
  }
  return grpc::SslCredentials(ssl);
}

grpc::ChannelArguments ChannelArgs(const ClientOptions& options) {
  grpc::ChannelArguments args;
  // Reconnect quickly after a server restart: a robot is waiting (the Python client's values).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  // Notice a silently dead link in about 2 s instead of TCP's minutes: ping every second,
  // give up after one unanswered second (the server permits 500 ms pings).
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 1000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 1000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  if (!options.server_name.empty()) {
    args.SetSslTargetNameOverride(options.server_name);
  }
  return args;
}

template <class Repeated>
std::vector<std::string> Strings(const Repeated& values) {
  return {values.begin(), values.end()};
}

template <class Repeated>
std::vector<float> Floats(const Repeated& values) {
  return {values.begin(), values.end()};
}

// One length-delimited field's bytes.
bool ReadBytes(CodedInputStream& in, std::string* out) {
  std::uint32_t size = 0;
  return in.ReadVarint32(&size) && in.ReadString(out, static_cast<int>(size));
}

// A message of two string fields numbered 1 and 2, other fields skipped: both
// google.rpc.BadRequest.FieldViolation {1: field, 2: description} and
// google.protobuf.Any {1: type_url, 2: value} have this shape.
bool DecodeStringPair(const std::string& bytes, std::string* first, std::string* second) {
  CodedInputStream in(reinterpret_cast<const std::uint8_t*>(bytes.data()),
                      static_cast<int>(bytes.size()));
  while (std::uint32_t tag = in.ReadTag()) {
    const int field = WireFormatLite::GetTagFieldNumber(tag);
    const bool delimited =
        WireFormatLite::GetTagWireType(tag) == WireFormatLite::WIRETYPE_LENGTH_DELIMITED;
    if (delimited && field == 1) {
      if (!ReadBytes(in, first)) return false;
    } else if (delimited && field == 2) {
      if (!ReadBytes(in, second)) return false;
    } else if (!WireFormatLite::SkipField(&in, tag)) {
      return false;
    }
  }
  return in.ConsumedEntireMessage();
}

// google.rpc.BadRequest {1: repeated FieldViolation}.
bool DecodeBadRequest(const std::string& bytes, std::vector<FieldViolation>* out) {
  CodedInputStream in(reinterpret_cast<const std::uint8_t*>(bytes.data()),
                      static_cast<int>(bytes.size()));
  while (std::uint32_t tag = in.ReadTag()) {
    if (WireFormatLite::GetTagFieldNumber(tag) == 1 &&
        WireFormatLite::GetTagWireType(tag) == WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      std::string violation_bytes;
      FieldViolation violation;
      if (!ReadBytes(in, &violation_bytes) ||
          !DecodeStringPair(violation_bytes, &violation.field, &violation.description)) {
        return false;
      }
      out->push_back(std::move(violation));
    } else if (!WireFormatLite::SkipField(&in, tag)) {
      return false;
    }
  }
  return in.ConsumedEntireMessage();
}

}  // namespace

const char* StatusCodeName(int code) noexcept {
  if (code < 0 || code >= static_cast<int>(std::size(kStatusNames))) return "UNKNOWN_CODE";
  return kStatusNames[code];
}

CallError::CallError(int code, std::string message, std::vector<FieldViolation> field_violations)
    : std::runtime_error(std::string(StatusCodeName(code)) + ": " + message),
      code_(code),
      message_(std::move(message)),
      field_violations_(std::move(field_violations)) {}

const char* CallError::code_name() const noexcept { return StatusCodeName(code_); }

namespace internal {

std::vector<FieldViolation> DecodeFieldViolations(const std::string& status_bytes) {
  // google.rpc.Status {1: code, 2: message, 3: repeated Any details}. Decoded with
  // protobuf's wire-format reader: Debian ships no generated google/rpc classes, and
  // copying generated code is what this library avoids.
  std::vector<FieldViolation> out;
  CodedInputStream in(reinterpret_cast<const std::uint8_t*>(status_bytes.data()),
                      static_cast<int>(status_bytes.size()));
  while (std::uint32_t tag = in.ReadTag()) {
    if (WireFormatLite::GetTagFieldNumber(tag) == 3 &&
        WireFormatLite::GetTagWireType(tag) == WireFormatLite::WIRETYPE_LENGTH_DELIMITED) {
      std::string any_bytes, type_url, value;
      if (!ReadBytes(in, &any_bytes) || !DecodeStringPair(any_bytes, &type_url, &value)) return {};
      // "type.googleapis.com/google.rpc.BadRequest"; other details are skipped.
      const std::string suffix = "/google.rpc.BadRequest";
      if (type_url.size() >= suffix.size() &&
          type_url.compare(type_url.size() - suffix.size(), suffix.size(), suffix) == 0) {
        if (!DecodeBadRequest(value, &out)) return {};
      }
    } else if (!WireFormatLite::SkipField(&in, tag)) {
      return {};
    }
  }
  return out;
}

CallError ToCallError(const grpc::Status& status) {
  return CallError(static_cast<int>(status.error_code()), status.error_message(),
                   DecodeFieldViolations(status.error_details()));
}

PolicyInfo FromProto(const v1::PolicyInfo& proto) {
  PolicyInfo info;
  info.model_name = proto.model_name();
  info.model_version = proto.model_version();
  info.observation_dim = proto.observation_dim();
  info.action_dim = proto.action_dim();
  info.observation_names = Strings(proto.observation_names());
  info.action_names = Strings(proto.action_names());
  info.joint_names = Strings(proto.joint_names());
  info.action_scale = Floats(proto.action_scale());
  info.action_offset = Floats(proto.action_offset());
  info.control_rate_hz = proto.control_rate_hz();
  info.kp = Floats(proto.kp());
  info.kd = Floats(proto.kd());
  info.env_id = proto.env_id();
  info.training_steps = proto.training_steps();
  info.sim2real_version = proto.sim2real_version();
  info.execution_provider = proto.execution_provider();
  info.metadata = {proto.metadata().begin(), proto.metadata().end()};
  info.model_sha256 = proto.model_sha256();
  info.max_action_delta = proto.max_action_delta();
  info.nonfinite_policy = proto.nonfinite_policy();
  return info;
}

}  // namespace internal

void PolicyClient::Shared::Prepare(grpc::ClientContext& context) const {
  if (!authorization.empty()) context.AddMetadata("authorization", authorization);
}

PolicyClient::PolicyClient(ClientOptions options) {
  if (options.address.empty()) {
    throw std::invalid_argument(
        "address: expected a gRPC target (\"host:port\" or \"unix:/path\"), got an empty string");
  }
  if (options.timeout.count() <= 0) {
    throw std::invalid_argument("timeout: expected > 0 ms, got " +
                                std::to_string(options.timeout.count()) + " ms");
  }
  auto shared = std::make_shared<Shared>();
  shared->channel =
      grpc::CreateCustomChannel(options.address, Credentials(options), ChannelArgs(options));
  shared->stub = v1::PolicyService::NewStub(shared->channel);
  if (!options.token.empty()) shared->authorization = "Bearer " + options.token;
  shared->options = std::move(options);
  shared_ = std::move(shared);
}

PolicyClient::~PolicyClient() = default;
PolicyClient::PolicyClient(PolicyClient&&) noexcept = default;
PolicyClient& PolicyClient::operator=(PolicyClient&&) noexcept = default;

const ClientOptions& PolicyClient::options() const noexcept { return shared_->options; }

PolicyInfo PolicyClient::Info(const std::string& model_name) const {
  grpc::ClientContext context;
  shared_->Prepare(context);
  context.set_deadline(std::chrono::system_clock::now() + shared_->options.timeout);
  v1::PolicyInfoRequest request;
  request.set_model_name(model_name);
  v1::PolicyInfo reply;
  const grpc::Status status = shared_->stub->GetPolicyInfo(&context, request, &reply);
  if (!status.ok()) throw internal::ToCallError(status);
  return internal::FromProto(reply);
}

ActResult PolicyClient::Act(const std::vector<float>& observation,
                            const std::string& model_name) const {
  grpc::ClientContext context;
  shared_->Prepare(context);
  context.set_deadline(std::chrono::system_clock::now() + shared_->options.timeout);
  v1::ActRequest request;
  request.mutable_observation()->Add(observation.begin(), observation.end());
  request.set_model_name(model_name);
  const auto wall = std::chrono::system_clock::now().time_since_epoch();
  request.set_client_time_ns(std::chrono::duration_cast<std::chrono::nanoseconds>(wall).count());
  v1::ActResponse reply;
  const auto sent = std::chrono::steady_clock::now();
  const grpc::Status status = shared_->stub->Act(&context, request, &reply);
  const auto latency = std::chrono::steady_clock::now() - sent;
  if (!status.ok()) throw internal::ToCallError(status);
  ActResult result;
  result.action.assign(reply.action().begin(), reply.action().end());
  result.sequence = reply.sequence();
  result.model_name = reply.model_name();
  result.model_version = reply.model_version();
  result.latency = std::chrono::duration_cast<std::chrono::nanoseconds>(latency);
  result.server_compute = std::chrono::nanoseconds(reply.server_compute_ns());
  result.clamped = reply.clamped();
  result.rate_limited = reply.rate_limited();
  return result;
}

}  // namespace sim2real
