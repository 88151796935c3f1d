// sim2real C++ client: talk to `sim2real serve` from a robot controller.
//
//   sim2real::ClientOptions options;
//   options.address = "127.0.0.1:50051";          // or "unix:/run/sim2real.sock"
//   sim2real::PolicyClient client(options);
//   sim2real::PolicyInfo info = client.Info();     // dims, names, scale/offset, gains, rate
//
//   sim2real::SessionOptions session_options;
//   session_options.deadline = std::chrono::microseconds(1500);
//   sim2real::ControlSession session(client, session_options);
//   std::vector<float> observation(info.observation_dim), action(info.action_dim);
//   // in the control loop (real-time thread):
//   sim2real::StepResult r = session.Step(observation, action);   // noexcept, no allocation
//   if (r.fallback) { /* `action` holds the fallback; r.reason says why */ }
//
// This header includes no gRPC or protobuf header: the wire types stay inside the library.
//
// Errors: setup calls (PolicyClient's constructor, Info, Act, ControlSession's constructor)
// throw std::invalid_argument for bad options and sim2real::CallError for a failed call.
// ControlSession::Step never throws and never blocks past its deadline.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace sim2real {

// ------------------------------------------------------------------------------------------
// Connection

// How to reach the server. Plaintext by default; TLS when tls_ca_file is set; mutual TLS
// when tls_cert_file and tls_key_file are set too. The bearer token travels as the metadata
// `authorization: Bearer <token>` on every call (a stream pays it once), as the Python
// client sends it.
struct ClientOptions {
  // gRPC target: "host:port", "dns:///host:port", "ipv4:127.0.0.1:50051", or a Unix domain
  // socket "unix:/path/to/socket" (absolute) / "unix:relative/path" / "unix-abstract:name".
  std::string address = "127.0.0.1:50051";
  // Bearer token; empty sends none. Never put it on a command line (visible in `ps`): read
  // it from a file or the environment ($SIM2REAL_TOKEN, as the server does).
  std::string token;
  // PEM file of the CA(s) that signed the server's certificate. Empty: plaintext.
  std::string tls_ca_file;
  // Mutual TLS: this client's certificate chain and unencrypted private key (PEM).
  std::string tls_cert_file;
  std::string tls_key_file;
  // Override the name the server's certificate is checked against (e.g. the certificate
  // names "policy-server" but the address is an IP). Empty: the address's host.
  std::string server_name;
  // Deadline of each unary call (Info, Act).
  std::chrono::milliseconds timeout{1000};
};

// A field the server named as wrong (google.rpc.BadRequest in the error details).
struct FieldViolation {
  std::string field;        // e.g. "observation", "observation[3]"
  std::string description;  // the server's explanation
};

// A unary call the server refused or could not answer.
class CallError : public std::runtime_error {
 public:
  CallError(int code, std::string message, std::vector<FieldViolation> field_violations = {});
  // gRPC status code number (3 INVALID_ARGUMENT, 14 UNAVAILABLE, 16 UNAUTHENTICATED, ...).
  int code() const noexcept { return code_; }
  // "INVALID_ARGUMENT", "UNAVAILABLE", ...
  const char* code_name() const noexcept;
  // The server's message, e.g. "observation: model 'policy' version 1 expects 6 values, got 5".
  const std::string& message() const noexcept { return message_; }
  const std::vector<FieldViolation>& field_violations() const noexcept { return field_violations_; }

 private:
  int code_;
  std::string message_;
  std::vector<FieldViolation> field_violations_;
};

// The name of a gRPC status code number ("OK", "CANCELLED", ..., "UNAUTHENTICATED");
// "UNKNOWN_CODE" outside 0..16. A static string: never allocates.
const char* StatusCodeName(int code) noexcept;

// GetPolicyInfo: what the served model's vectors mean. Actions are in [-1, 1];
// joint target = action_offset + action_scale * action, so the all-zeros action is the
// robot's default pose.
struct PolicyInfo {
  std::string model_name;
  std::int64_t model_version = 0;
  int observation_dim = 0;
  int action_dim = 0;
  std::vector<std::string> observation_names;
  std::vector<std::string> action_names;
  std::vector<std::string> joint_names;
  std::vector<float> action_scale;
  std::vector<float> action_offset;
  float control_rate_hz = 0.0F;
  std::vector<float> kp;
  std::vector<float> kd;
  std::string env_id;
  std::int64_t training_steps = 0;
  std::string sim2real_version;
  std::string execution_provider;  // the onnxruntime provider actually running the model
  std::map<std::string, std::string> metadata;  // every ONNX metadata_props entry (JSON values)
  std::string model_sha256;
  float max_action_delta = 0.0F;  // the server's per-stream rate limit (0: none)
  std::string nonfinite_policy;   // "reject" or "sanitize"
};

// One unary Act answer.
struct ActResult {
  std::vector<float> action;  // in [-1, 1]
  std::uint64_t sequence = 0;
  std::string model_name;
  std::int64_t model_version = 0;
  std::chrono::nanoseconds latency{0};         // round trip measured here
  std::chrono::nanoseconds server_compute{0};  // the server's decode-to-encode time
  bool clamped = false;       // the model's output had to be clamped into [-1, 1]
  bool rate_limited = false;  // the server's --max-action-delta limited it
};

// A connection to `sim2real serve`. Cheap to share: sessions made from it use its channel
// (one HTTP/2 connection). Thread-safe.
class PolicyClient {
 public:
  // Builds the channel (does not connect yet: gRPC connects on the first call).
  // Throws std::invalid_argument naming the option when an option is unusable (an
  // unreadable PEM file, a client certificate without a key or without tls_ca_file).
  explicit PolicyClient(ClientOptions options);
  ~PolicyClient();
  PolicyClient(PolicyClient&&) noexcept;
  PolicyClient& operator=(PolicyClient&&) noexcept;
  PolicyClient(const PolicyClient&) = delete;
  PolicyClient& operator=(const PolicyClient&) = delete;

  // GetPolicyInfo of `model_name` (empty: the server's default model). Throws CallError.
  PolicyInfo Info(const std::string& model_name = "") const;
  // One unary call (for one-off queries; a control loop uses ControlSession). Throws
  // CallError on any failure: a wrong observation length is INVALID_ARGUMENT naming the
  // expected and received sizes, with a field violation for "observation".
  ActResult Act(const std::vector<float>& observation, const std::string& model_name = "") const;

  const ClientOptions& options() const noexcept;

  struct Shared;  // the channel and call metadata, shared with sessions (opaque)
  const std::shared_ptr<const Shared>& shared() const noexcept { return shared_; }

 private:
  std::shared_ptr<const Shared> shared_;
};

// ------------------------------------------------------------------------------------------
// Control loop

enum class Fallback : std::uint8_t {
  kHold,     // the last good action (the default action before the first one)
  kDefault,  // always the default action (zeros unless given: the robot's default pose)
};

struct SessionOptions {
  // Step() returns within this time, with the policy's answer or the fallback. Must be > 0.
  std::chrono::nanoseconds deadline = std::chrono::milliseconds(4);
  Fallback fallback = Fallback::kHold;
  // The default action; empty: zeros of GetPolicyInfo's action_dim (joint targets =
  // action_offset, the default pose). When given, the session needs no GetPolicyInfo call
  // and can start while the server is down (stepping with the fallback until it is up).
  std::vector<float> default_action;
  // Model name in the server's repository; empty: the server's default model.
  std::string model_name;
  // Floats preallocated for one observation. Larger observations are refused locally
  // (status kBadArgument, fallback action) because copying them would allocate.
  // 0: max(1024, 2 x GetPolicyInfo's observation_dim).
  std::size_t observation_capacity = 0;
  // How long the constructor waits for the stream to come up. Negative: max(deadline, 0.5 s),
  // as the Python ControlSession. The session connects in the background regardless.
  std::chrono::nanoseconds connect_wait{-1};
  // Reconnect backoff: initial, doubling up to max (the Python client: 50 ms to 2 s).
  std::chrono::milliseconds initial_backoff{50};
  std::chrono::milliseconds max_backoff{2000};
};

// What one Step() returned. A plain value (no heap memory): returned by value without
// allocating.
enum class StepStatus : std::uint8_t {
  kOk,              // `action` is the policy's answer to this observation
  kDeadlineMissed,  // no answer within the deadline (a late answer is dropped)
  kServerError,     // the server answered this observation with an error (error_code)
  kDisconnected,    // no stream: connecting, or reconnecting after a failure (error_code)
  kBadArgument,     // this call was unusable (sizes); nothing was sent
  kClosed,          // the session was closed
};

const char* StepStatusName(StepStatus status) noexcept;

struct StepResult {
  static constexpr std::size_t kReasonCapacity = 256;

  StepStatus status = StepStatus::kOk;
  // True when the action written is the fallback, not the policy's answer.
  bool fallback = false;
  // Why the fallback was used, NUL-terminated and truncated to fit; empty when !fallback.
  // The same wording as the Python client: "deadline of 4.00 ms missed",
  // "server error INVALID_ARGUMENT: observation: ... expects 6 values, got 5",
  // "disconnected (UNAVAILABLE: ...)".
  std::array<char, kReasonCapacity> reason{};
  // gRPC status code number behind kServerError / kDisconnected (0 when none is known).
  int error_code = 0;
  std::uint64_t sequence = 0;
  std::chrono::nanoseconds latency{0};         // Step() entry to return
  std::chrono::nanoseconds server_compute{0};  // kOk only
  std::int64_t model_version = 0;              // kOk only
  bool clamped = false;
  bool rate_limited = false;

  const char* reason_c_str() const noexcept { return reason.data(); }
};

// Counters since the session started (atomics: read from any thread).
struct SessionStats {
  std::uint64_t steps = 0;
  std::uint64_t actions = 0;    // kOk
  std::uint64_t fallbacks = 0;  // everything else
  std::uint64_t deadline_misses = 0;
  std::uint64_t server_errors = 0;
  std::uint64_t disconnected = 0;
  std::uint64_t reconnects = 0;  // stream attempts after the first
  bool connected = false;
};

// One StreamAct stream driven by a control loop, with a per-step deadline and a fallback.
//
// Step() sends the observation on a long-lived stream and waits at most `deadline`; when
// the answer is late, carries an error, or there is no stream, it writes the fallback and
// says so. Two background threads own all gRPC work: one opens the stream (reconnecting
// with backoff after any failure) and writes requests, one reads answers. Step() itself
// only copies floats into and out of buffers allocated by the constructor and waits on a
// condition variable: after construction it allocates nothing, makes no gRPC call, and
// throws nothing (see clients/cpp/README.md, "Real-time properties").
//
// Call Step() from one thread at a time (the control loop's). Stats/connected() from any.
class ControlSession {
 public:
  // Calls GetPolicyInfo unless options.default_action is given (throws CallError when that
  // call fails); throws std::invalid_argument naming the option when an option is invalid.
  // Then starts the background threads and waits up to connect_wait for the stream.
  ControlSession(const PolicyClient& client, SessionOptions options);
  ~ControlSession();  // Close()
  ControlSession(ControlSession&&) noexcept;
  ControlSession& operator=(ControlSession&&) noexcept;
  ControlSession(const ControlSession&) = delete;
  ControlSession& operator=(const ControlSession&) = delete;

  // The action for `observation` (observation_size floats) written to `action`
  // (action_size >= action_dim() floats), or the fallback, within the deadline.
  // `reset_rate_limit`: the server does not rate-limit this action against the previous
  // one (the robot was reset). With action == nullptr or action_size < action_dim() nothing
  // can be written: status kBadArgument.
  StepResult Step(const float* observation, std::size_t observation_size, float* action,
                  std::size_t action_size, bool reset_rate_limit = false) noexcept;

  // The same for any contiguous containers (std::vector<float>, std::array<float, N>, ...).
  // `action` must already hold action_dim() elements: Step never resizes it.
  template <class Observation, class Action>
  StepResult Step(const Observation& observation, Action& action,
                  bool reset_rate_limit = false) noexcept {
    return Step(std::data(observation), static_cast<std::size_t>(std::size(observation)),
                std::data(action), static_cast<std::size_t>(std::size(action)), reset_rate_limit);
  }

  // Blocks until the stream is up or `timeout` passes; returns connected().
  bool WaitConnected(std::chrono::nanoseconds timeout) const;
  bool connected() const noexcept;
  SessionStats stats() const noexcept;
  // The stream's last failure ("UNAVAILABLE: ...", "stream closed by the server"); empty
  // when none. Allocates: not for the control loop's hot path.
  std::string last_error() const;

  std::size_t action_dim() const noexcept;
  std::size_t observation_capacity() const noexcept;
  // GetPolicyInfo as read by the constructor (empty when default_action was given).
  const PolicyInfo& info() const noexcept;
  const std::vector<float>& default_action() const noexcept;

  // Stops the stream and joins the background threads; later Steps return kClosed with
  // the fallback. Idempotent.
  void Close() noexcept;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace sim2real
