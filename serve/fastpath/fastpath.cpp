// sim2real_fastpath: the C++ gRPC front end of `sim2real serve --fast-path`.
//
// Python gRPC costs about 240 us of CPU per request on the 2-core dev machine before any
// policy runs (docs/benchmarks.md, echo-py), and the GIL keeps it on one core: that, not
// the model, is what a robot waits for. This binary takes the transport off Python: it
// listens (TCP, optionally TLS, and/or a Unix socket), speaks HTTP/2 and gRPC on gRPC C++'s
// callback API, checks the bearer token and the call limits.
//
// With --onnxruntime LIB (the server's default, --fast-inference cpp) it also answers
// Act and StreamAct itself: policy.cpp runs the models the `sim2real serve` process that
// started it validated and handed over (a model table, before listening and after every
// reload), with onnxruntime's C API, exactly as that process's request path would
// (PolicyCore: checks, clamping, rate limits per stream, the response), and reports each
// step back for metrics and recording. What gets an error (bytes that do not parse, an
// unknown model, a wrong size, a rejected NaN, a non-finite action) and GetPolicyInfo go,
// still serialized, to that process over one Unix socketpair, whose own request path
// answers: the same codes and messages as its own listener. Without --onnxruntime every
// message goes there.
//
//   sim2real_fastpath --worker-fd FD --address 127.0.0.1:0 [--address unix:PATH ...]
//       [--onnxruntime LIB [--report-ms N]]
//       [--max-receive-bytes N] [--max-send-bytes N] [--max-calls N]
//       [--max-calls-per-connection N] [--token-file PATH] [--grace-ms N]
//       [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]]
//
// Prints "ready PORT... [onnxruntime=VERSION]" (one bound port per --address, 0 for a Unix
// socket; the library's version when it runs the policy) once it serves. On SIGTERM/SIGINT
// it drains like the Python listener: health says NOT_SERVING, new calls are refused, open
// ones get --grace-ms (the server's --grace-seconds) to finish, then are cancelled. It also
// stops when the worker socket closes (its parent went away: it never outlives the server
// it fronts).
//
// A stream reads its next message only while fewer than kMaxAhead of its answers wait to
// be written: a client that never reads its answers stops being read, and HTTP/2 flow
// control then stops its sending, as on the Python listener.
//
// Served: sim2real.v1.PolicyService (Act, StreamAct, GetPolicyInfo) and grpc.health.v1.
// Anything else (the admin service, reflection) is UNIMPLEMENTED here and stays on the
// Python server's own address.
//
// Worker protocol (little-endian), one frame per message each way:
//   to the worker:   u32 length | u64 call id | u8 kind | payload (the request's bytes)
//   from the worker: u32 length | u64 call id | u8 status | payload
// length counts what follows it. kind: 1 Act, 2 a StreamAct message, 3 stream opened,
// 4 stream closed, 5 GetPolicyInfo. status 0: payload is the serialized response; else a
// gRPC status code, and the payload is u32 message length | message | status details
// (grpc-status-details-bin, possibly empty). A stream's answers come back in order.
// Call id 0 is no call: from the worker, status 255 carries the model table and status 253
// asks for the drain (u32 grace period, ms); to it, kind 6 a batch of steps served here
// (formats in policy.cpp).
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <google/protobuf/stubs/common.h>
#if GOOGLE_PROTOBUF_VERSION < 4022000  // later releases log through Abseil, without this hook
#include <google/protobuf/stubs/logging.h>
#define SIM2REAL_PROTOBUF_LOG_HOOK 1
#endif
#include <grpcpp/health_check_service_interface.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "policy.h"
#include "wire.h"

namespace {

std::atomic<bool> g_stop{false};
// Set the moment a drain starts (signal or drain frame): from then on every new call is
// refused here, before gRPC's own shutdown begins.
std::atomic<bool> g_draining{false};
void OnSignal(int) {
  g_draining.store(true);
  g_stop.store(true);
}
// The drain's grace period: --grace-ms, or what the policy process's drain frame says.
std::atomic<long> g_grace_ms{5000};

enum Kind : std::uint8_t {
  kAct = 1, kStreamMessage = 2, kStreamOpen = 3, kStreamClose = 4, kInfo = 5, kReport = 6,
  kStreamMessageWithState = 7,  // u32 length | the message | the stream's rate-limit memory
  kDraining = 8,                // call id 0: the drain frame arrived; no new call is taken from now
};
// From the worker, call id 0: a control frame, not an answer (policy.cpp has its format).
constexpr std::uint8_t kModelTable = 255;
// From the worker, to a stream: its rate-limit memory after the messages answered there.
constexpr std::uint8_t kStreamState = 254;
// From the worker, call id 0: drain now (payload: u32 grace period, ms). The policy
// process's own stop (`sim2real serve` on SIGTERM, or a program that embeds the server)
// sends it, so both listeners drain at the same moment with the same grace.
constexpr std::uint8_t kDrain = 253;

constexpr const char* kServiceName = "sim2real.v1.PolicyService";
constexpr const char* kActMethod = "/sim2real.v1.PolicyService/Act";
constexpr const char* kStreamActMethod = "/sim2real.v1.PolicyService/StreamAct";
constexpr const char* kInfoMethod = "/sim2real.v1.PolicyService/GetPolicyInfo";

// Answers of one stream waiting to be written (or for the policy process) before it reads
// the next message: small, so that a client that does not read is pushed back at once;
// more than one, so that a client that pipelines a few messages is not slowed.
constexpr std::size_t kMaxAhead = 8;
// The largest frame the policy process sends: an answer is at most --max-send-bytes plus
// its status message and details (kAnswerSlack); a model table at most kMaxTableBytes
// (frontend.py leaves out the models that would make it larger).
constexpr std::uint32_t kAnswerSlack = 1u << 20;
constexpr std::uint32_t kMaxTableBytes = 256u << 20;

using fastpath::GetU32;
using fastpath::GetU64;
using fastpath::PutU32;
using fastpath::PutU64;

std::string ReadFile(const std::string& flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::invalid_argument(flag + ": cannot read " + path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Constant time in the token's length: a wrong token's prefix must not answer faster.
bool SameBytes(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

class Call;

// The worker end: frames out under one lock (several gRPC threads send), answers in on a
// thread of its own, routed by call id to the live calls.
class Worker {
 public:
  Worker(int fd, std::uint32_t max_answer_bytes) : fd_(fd), max_answer_bytes_(max_answer_bytes) {}

  // False when the worker is gone (the call then fails UNAVAILABLE).
  bool Send(std::uint64_t call, Kind kind, const std::string& payload) {
    std::string& frame = scratch();
    frame.clear();
    PutU32(frame, static_cast<std::uint32_t>(9 + payload.size()));
    PutU64(frame, call);
    frame.push_back(static_cast<char>(kind));
    frame.append(payload);
    std::lock_guard<std::mutex> lock(write_mu_);
    const char* p = frame.data();
    std::size_t left = frame.size();
    while (left > 0) {
      const ssize_t n = ::send(fd_, p, left, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      p += n;
      left -= static_cast<std::size_t>(n);
    }
    return true;
  }

  void set_policy(fastpath::Policy* policy) { policy_ = policy; }

  std::uint64_t Register(Call* call) {
    std::lock_guard<std::mutex> lock(calls_mu_);
    const std::uint64_t id = ++last_id_;
    calls_[id] = call;
    return id;
  }
  void Unregister(std::uint64_t id) {
    std::lock_guard<std::mutex> lock(calls_mu_);
    calls_.erase(id);
  }

  // Runs until the worker closes its end; then asks the server to stop.
  void ReadAnswers();

 private:
  static std::string& scratch() {
    thread_local std::string buffer;
    return buffer;
  }

  int fd_;
  std::uint32_t max_answer_bytes_;
  fastpath::Policy* policy_ = nullptr;
  std::mutex write_mu_;
  std::mutex calls_mu_;
  std::uint64_t last_id_ = 0;
  std::unordered_map<std::uint64_t, Call*> calls_;
};

// Open calls, in all and per TCP connection: the Python server's --max-concurrent-rpcs and
// --max-calls-per-connection, so one client cannot hold every slot. Unix-socket peers are
// all "unix:", so there only the total applies (as on the Python server).
class Admission {
 public:
  Admission(long total, long per_connection) : total_limit_(total), per_connection_limit_(per_connection) {}

  // An empty string: admitted (release later); else the refusal's message.
  std::string Acquire(const std::string& peer) {
    std::lock_guard<std::mutex> lock(mu_);
    if (total_ >= total_limit_) {
      return "the server has " + std::to_string(total_limit_) + " calls open, its limit (--max-concurrent-rpcs " +
             std::to_string(total_limit_) + "); retry later";
    }
    if (peer.rfind("unix:", 0) != 0) {
      long& open = per_peer_[peer];
      if (open >= per_connection_limit_) {
        if (open == 0) per_peer_.erase(peer);
        const std::string n = std::to_string(per_connection_limit_);
        return "this connection already has " + n + " calls open, the server's limit per connection "
               "(--max-calls-per-connection " + n + "); finish or cancel one first";
      }
      ++open;
    }
    ++total_;
    return "";
  }

  void Release(const std::string& peer) {
    std::lock_guard<std::mutex> lock(mu_);
    --total_;
    if (peer.rfind("unix:", 0) != 0) {
      auto it = per_peer_.find(peer);
      if (it != per_peer_.end() && --it->second <= 0) per_peer_.erase(it);
    }
  }

 private:
  long total_limit_, per_connection_limit_;
  long total_ = 0;
  std::mutex mu_;
  std::unordered_map<std::string, long> per_peer_;
};

struct Settings {
  std::string token;  // empty: no token check
  Admission* admission = nullptr;
  fastpath::Policy* policy = nullptr;  // null: every message goes to the policy process
};

// One call of any served method. gRPC's generic API hands every call over as a bidi
// stream of raw byte buffers; unary methods read one message and finish with the answer.
class Call final : public grpc::ServerGenericBidiReactor {
 public:
  Call(Worker& worker, const Settings& settings, grpc::GenericCallbackServerContext* context)
      : worker_(worker), admission_(settings.admission), policy_(settings.policy) {
    const std::string& method = context->method();
    if (method == kStreamActMethod) {
      kind_ = kStreamMessage;
    } else if (method == kActMethod) {
      kind_ = kAct;
    } else if (method == kInfoMethod) {
      kind_ = kInfo;
    } else {
      FinishOnce(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                              "the fast path serves sim2real.v1.PolicyService (Act, StreamAct, "
                              "GetPolicyInfo) and grpc.health.v1.Health; call " + method +
                                  " on the server's main address"));
      return;
    }
    if (!settings.token.empty() && !Authorized(context, settings.token)) {
      FinishOnce(grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                              "missing or wrong bearer token (metadata 'authorization: Bearer <token>')"));
      return;
    }
    if (g_draining.load()) {
      FinishOnce(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down"));
      return;
    }
    peer_ = context->peer();
    const std::string refused = admission_->Acquire(peer_);
    if (!refused.empty()) {
      FinishOnce(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, refused));
      return;
    }
    admitted_ = true;
    id_ = worker_.Register(this);
    if (kind_ == kStreamMessage) {
      // Headers now, as the Python server does: a client's session counts the stream as
      // up (its credentials accepted) before its control loop sends anything.
      StartSendInitialMetadata();
      if (!worker_.Send(id_, kStreamOpen, std::string())) {
        FinishOnce(Unavailable());
        return;
      }
    }
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    {
      std::lock_guard<std::recursive_mutex> lock(mu_);
      if (finished_) return;
      if (!ok) {  // the client half-closed, went away, or sent nothing (unary)
        read_done_ = true;
        if (kind_ != kStreamMessage) {
          FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the call ended before its request arrived"));
        } else if (slots_.empty() && !writing_) {
          FinishLocked(grpc::Status::OK);
        }
        return;
      }
    }
    // The model runs and the worker socket is written without holding mu_ (the worker's
    // reader thread takes mu_ to deliver answers: a send blocked on a full socket under
    // it could stall both directions). A call reads one message at a time (the next
    // StartRead is below), so request_, memory_ and the scratch buffers are ours here.
    std::string& raw = RequestBytes();
    if (!Flatten(request_, &raw)) {
      FinishOnce(grpc::Status(grpc::StatusCode::INTERNAL, "could not read the request's bytes"));
      return;
    }
    std::string& answer = AnswerBytes();
    bool here = false;
    bool with_state = false;
    if (policy_ != nullptr && kind_ != kInfo) {
      const bool limited = kind_ == kStreamMessage && policy_->rate_limit_active();
      bool pending = false;
      if (limited) {
        std::lock_guard<std::recursive_mutex> lock(mu_);
        pending = !forwarded_.empty();
      }
      // With a rate limit, while one of the stream's messages is with the policy process,
      // the next ones go there too: their limit depends on its answer. The process gets
      // the stream's memory with the first one and hands it back (kStreamState) before
      // its answers, so the memory is current again when none is pending.
      if (!pending) {
        here = policy_->Serve(raw, kind_ == kAct ? fastpath::kMethodAct : fastpath::kMethodStream,
                              kind_ == kStreamMessage ? &memory_ : nullptr, &answer);
        with_state = !here && limited;
      }
    }
    bool send = false;
    {
      std::lock_guard<std::recursive_mutex> lock(mu_);
      if (finished_) return;
      if (here && kind_ == kAct) {
        Fill(response_, answer.data(), answer.size());
        finished_ = true;
        StartWriteAndFinish(&response_, grpc::WriteOptions(), grpc::Status::OK);
        return;
      }
      if (here) {
        slots_.push_back(Slot{true, answer});
        if (!writing_) WriteNextLocked();
      } else {
        if (kind_ == kStreamMessage) {
          // Its answer comes later, from the policy process; the ones answered here meanwhile
          // wait behind it, so a stream's answers keep the order of its messages.
          forwarded_.push_back(slot_base_ + slots_.size());
          slots_.push_back(Slot{false, std::string()});
        }
        send = true;
      }
    }
    if (send) {
      bool sent;
      if (with_state) {
        std::string& framed = FramedBytes();
        framed.clear();
        PutU32(framed, static_cast<std::uint32_t>(raw.size()));
        framed.append(raw);
        fastpath::EncodeState(memory_, &framed);
        sent = worker_.Send(id_, kStreamMessageWithState, framed);
      } else {
        sent = worker_.Send(id_, kind_, raw);
      }
      if (!sent) {
        FinishOnce(Unavailable());
        return;
      }
    }
    if (kind_ == kStreamMessage) {
      std::lock_guard<std::recursive_mutex> lock(mu_);
      read_paused_ = true;
      ReadNextLocked();  // the next one may come before the answer, up to kMaxAhead
    }
  }

  // A reference held while the worker thread delivers outside the registry's lock; the
  // call is deleted when gRPC is done with it (OnDone) and no delivery holds it.
  void Ref() { refs_.fetch_add(1, std::memory_order_relaxed); }
  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  // From the worker thread, holding a reference (Ref) and not the registry's lock: an
  // inline OnDone from the Finish or StartWrite below takes that lock (Unregister).
  void Deliver(std::uint8_t status, const char* payload, std::size_t size) {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    if (finished_) return;
    if (status == kStreamState) {
      // Read by OnReadDone only once no message of this stream is with the process (it
      // checks forwarded_ under mu_, which this holds).
      if (!fastpath::DecodeState(payload, size, &memory_)) {
        FinishLocked(grpc::Status(grpc::StatusCode::INTERNAL, "malformed stream state from the policy process"));
      }
      return;
    }
    if (status != 0) {
      if (size < 4 || GetU32(payload) > size - 4) {
        FinishLocked(grpc::Status(grpc::StatusCode::INTERNAL, "malformed answer from the policy process"));
        return;
      }
      const std::uint32_t n = GetU32(payload);
      FinishLocked(grpc::Status(static_cast<grpc::StatusCode>(status), std::string(payload + 4, n),
                                std::string(payload + 4 + n, size - 4 - n)));
      return;
    }
    if (kind_ != kStreamMessage) {
      Fill(response_, payload, size);
      finished_ = true;
      StartWriteAndFinish(&response_, grpc::WriteOptions(), grpc::Status::OK);
      return;
    }
    if (forwarded_.empty()) {
      FinishLocked(grpc::Status(grpc::StatusCode::INTERNAL, "an answer from the policy process to no message"));
      return;
    }
    Slot& slot = slots_[forwarded_.front() - slot_base_];
    forwarded_.pop_front();
    slot.ready = true;
    slot.bytes.assign(payload, size);
    if (!writing_) WriteNextLocked();
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    writing_ = false;
    if (finished_) return;
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away mid-write"));
      return;
    }
    WriteNextLocked();
    if (!writing_ && read_done_ && slots_.empty()) {
      FinishLocked(grpc::Status::OK);
      return;
    }
    ReadNextLocked();
  }

  void OnDone() override {
    if (admitted_) admission_->Release(peer_);
    if (id_ != 0) {
      worker_.Unregister(id_);
      // The worker drops the stream's state (its rate limiter's last action).
      if (kind_ == kStreamMessage) worker_.Send(id_, kStreamClose, std::string());
    }
    Unref();
  }

 private:
  static bool Authorized(grpc::GenericCallbackServerContext* context, const std::string& token) {
    const auto& metadata = context->client_metadata();
    const std::string expected = "Bearer " + token;
    // Exactly one authorization header, as on the Python listener (serve/security.py):
    // with two, which one a proxy or the other listener checked is anyone's guess.
    if (metadata.count("authorization") != 1) return false;
    const auto it = metadata.find("authorization");
    return SameBytes(std::string(it->second.data(), it->second.size()), expected);
  }

  static grpc::Status Unavailable() {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the policy process is gone; the server is stopping");
  }

  static void Fill(grpc::ByteBuffer& buffer, const char* data, std::size_t size) {
    grpc::Slice slice(data, size);
    grpc::ByteBuffer fresh(&slice, 1);
    buffer.Swap(&fresh);
  }

  // Reads the stream's next message if reading was paused and few enough answers wait.
  void ReadNextLocked() {
    if (!read_paused_ || finished_ || read_done_ || slots_.size() >= kMaxAhead) return;
    read_paused_ = false;
    StartRead(&request_);
  }

  // Writes the oldest answer if it is ready (one write at a time, in message order).
  void WriteNextLocked() {
    if (slots_.empty() || !slots_.front().ready) return;
    Fill(response_, slots_.front().bytes.data(), slots_.front().bytes.size());
    slots_.pop_front();
    ++slot_base_;
    writing_ = true;
    StartWrite(&response_);
  }

  // The request's bytes in one piece (gRPC may hold them in several slices).
  static bool Flatten(const grpc::ByteBuffer& buffer, std::string* out) {
    out->clear();
    std::vector<grpc::Slice> slices;
    if (!buffer.Dump(&slices).ok()) return false;
    for (const auto& s : slices) out->append(reinterpret_cast<const char*>(s.begin()), s.size());
    return true;
  }
  static std::string& RequestBytes() {
    thread_local std::string bytes;
    return bytes;
  }
  static std::string& AnswerBytes() {
    thread_local std::string bytes;
    return bytes;
  }
  static std::string& FramedBytes() {
    thread_local std::string bytes;
    return bytes;
  }

  void FinishLocked(const grpc::Status& status) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }
  void FinishOnce(const grpc::Status& status) {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    FinishLocked(status);
  }

  struct Slot {
    bool ready;
    std::string bytes;
  };

  Worker& worker_;
  Admission* admission_;
  fastpath::Policy* policy_;
  fastpath::StreamMemory memory_;
  std::string peer_;
  bool admitted_ = false;
  Kind kind_ = kAct;
  std::uint64_t id_ = 0;
  // Recursive: gRPC may run a reaction (OnWriteDone) inline from the Start* call made
  // under it.
  std::recursive_mutex mu_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer response_;
  // A stream's answers in message order: ready ones wait for the write before them, a
  // forwarded one for the policy process. forwarded_ holds the absolute slot numbers of the
  // forwarded ones (slot_base_ is the number of slots_.front()).
  std::deque<Slot> slots_;
  std::deque<std::size_t> forwarded_;
  std::size_t slot_base_ = 0;
  std::atomic<int> refs_{1};  // gRPC's, until OnDone; plus one per delivery in progress
  bool read_paused_ = false;  // a message was handled and the next StartRead waits (kMaxAhead)
  bool writing_ = false;
  bool read_done_ = false;
  bool finished_ = false;
};

void Worker::ReadAnswers() {
  std::string buffer;
  std::vector<char> chunk(1 << 16);
  while (true) {
    const ssize_t n = ::recv(fd_, chunk.data(), chunk.size(), 0);
    if (n == 0 || (n < 0 && errno != EINTR)) break;
    if (n < 0) continue;
    buffer.append(chunk.data(), static_cast<std::size_t>(n));
    std::size_t offset = 0;
    while (buffer.size() - offset >= 4 + 9) {
      const std::uint32_t length = GetU32(buffer.data() + offset);
      const char* frame = buffer.data() + offset + 4;
      const std::uint64_t id = GetU64(frame);
      const auto status = static_cast<std::uint8_t>(frame[8]);
      // The limit by kind, checked before the frame is buffered whole.
      const std::uint32_t limit = id == 0 && status == kModelTable ? kMaxTableBytes : max_answer_bytes_;
      if (length < 9 || length > limit) {
        std::fprintf(stderr, "sim2real_fastpath: malformed frame from the policy process (length %u, limit %u)\n",
                     length, limit);
        g_stop.store(true);
        return;
      }
      if (buffer.size() - offset - 4 < length) break;
      if (id == 0 && status == kDrain) {
        if (length - 9 >= 4) g_grace_ms.store(static_cast<long>(GetU32(frame + 9)));
        g_draining.store(true);
        // Said once new calls are refused, so the policy process can turn health to
        // NOT_SERVING knowing that this listener already agrees.
        Send(0, kDraining, std::string());
        g_stop.store(true);  // answers keep being read and delivered through the drain
        offset += 4 + length;
        continue;
      }
      if (id == 0 && status == kModelTable) {
        // A hot reload or unload on the Python side: the new table of models to serve.
        std::string error;
        if (policy_ == nullptr) {
          std::fprintf(stderr, "sim2real_fastpath: a model table arrived, but no --onnxruntime was given\n");
        } else if (!policy_->Apply(frame + 9, length - 9, &error)) {
          std::fprintf(stderr, "sim2real_fastpath: model table refused (%s); the previous one stays\n",
                       error.c_str());
        }
        offset += 4 + length;
        continue;
      }
      Call* call = nullptr;
      {
        std::lock_guard<std::mutex> lock(calls_mu_);
        auto it = calls_.find(id);
        if (it != calls_.end()) {
          call = it->second;
          call->Ref();
        }
      }
      if (call != nullptr) {
        call->Deliver(status, frame + 9, length - 9);
        call->Unref();
      }
      offset += 4 + length;
    }
    buffer.erase(0, offset);
  }
  g_stop.store(true);  // the policy process closed its end: nothing left to front
}

class Service final : public grpc::CallbackGenericService {
 public:
  Service(Worker& worker, Settings settings) : worker_(worker), settings_(std::move(settings)) {}
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* context) override {
    return new Call(worker_, settings_, context);
  }

 private:
  Worker& worker_;
  Settings settings_;
};

long ParseInt(const std::string& flag, const std::string& text, long low, long high) {
  char* end = nullptr;
  errno = 0;
  const long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || value < low || value > high) {
    throw std::invalid_argument(flag + ": expected a whole number " + std::to_string(low) + ".." +
                                std::to_string(high) + ", got '" + text + "'");
  }
  return value;
}

struct Options {
  int worker_fd = -1;
  std::vector<std::string> addresses;
  long max_receive_bytes = 4L << 20;
  long max_send_bytes = 1L << 20;
  long max_calls = 256;
  long max_calls_per_connection = 32;
  std::string token_file, tls_cert, tls_key, tls_client_ca;
  std::string onnxruntime;  // the library; empty: every message goes to the policy process
  long report_ms = 10;
  long grace_ms = 5000;
};

Options ParseOptions(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) throw std::invalid_argument(flag + ": expected a value after it");
    const std::string value = argv[++i];
    if (flag == "--worker-fd") {
      o.worker_fd = static_cast<int>(ParseInt(flag, value, 0, 1 << 20));
    } else if (flag == "--address") {
      o.addresses.push_back(value);
    } else if (flag == "--max-receive-bytes") {
      o.max_receive_bytes = ParseInt(flag, value, 1, 2147483647L);
    } else if (flag == "--max-send-bytes") {
      o.max_send_bytes = ParseInt(flag, value, 1, 2147483647L);
    } else if (flag == "--max-calls") {
      o.max_calls = ParseInt(flag, value, 1, 1L << 30);
    } else if (flag == "--max-calls-per-connection") {
      o.max_calls_per_connection = ParseInt(flag, value, 1, 1L << 30);
    } else if (flag == "--onnxruntime") {
      o.onnxruntime = value;
    } else if (flag == "--grace-ms") {
      o.grace_ms = ParseInt(flag, value, 0, 3600L * 1000);
    } else if (flag == "--report-ms") {
      o.report_ms = ParseInt(flag, value, 1, 1000);
    } else if (flag == "--token-file") {
      o.token_file = value;
    } else if (flag == "--tls-cert") {
      o.tls_cert = value;
    } else if (flag == "--tls-key") {
      o.tls_key = value;
    } else if (flag == "--tls-client-ca") {
      o.tls_client_ca = value;
    } else {
      throw std::invalid_argument("unknown option " + flag);
    }
  }
  if (o.worker_fd < 0) throw std::invalid_argument("--worker-fd: required (the socket to the policy process)");
  if (o.addresses.empty()) throw std::invalid_argument("--address: expected at least one");
  if (o.tls_cert.empty() != o.tls_key.empty()) throw std::invalid_argument("--tls-cert and --tls-key go together");
  if (!o.tls_client_ca.empty() && o.tls_cert.empty()) {
    throw std::invalid_argument("--tls-client-ca needs --tls-cert and --tls-key");
  }
  return o;
}

// The first frame from the policy process when --onnxruntime is given: the model table,
// read before listening so that no request arrives before there is a table to serve it.
bool ReadInitialTable(int fd, fastpath::Policy& policy, std::string* error) {
  auto read_all = [fd](char* p, std::size_t n) {
    while (n > 0) {
      const ssize_t got = ::recv(fd, p, n, 0);
      if (got == 0) return false;
      if (got < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      p += got;
      n -= static_cast<std::size_t>(got);
    }
    return true;
  };
  char head[4];
  if (!read_all(head, 4)) {
    *error = "the policy process closed the worker socket before sending the model table";
    return false;
  }
  const std::uint32_t length = GetU32(head);
  if (length < 9 || length > kMaxTableBytes) {
    *error = "malformed first frame (length " + std::to_string(length) + ")";
    return false;
  }
  std::string frame(length, '\0');
  if (!read_all(frame.data(), length)) {
    *error = "the worker socket closed in the middle of the model table";
    return false;
  }
  if (GetU64(frame.data()) != 0 || static_cast<std::uint8_t>(frame[8]) != kModelTable) {
    *error = "the first frame from the policy process is not the model table";
    return false;
  }
  return policy.Apply(frame.data() + 9, length - 9, error);
}

std::string TrimToken(std::string text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  std::size_t start = 0;
  while (start < text.size() && std::isspace(static_cast<unsigned char>(text[start]))) ++start;
  return text.substr(start);
}

}  // namespace

int Serve(const Options& options, Settings settings, std::shared_ptr<grpc::ServerCredentials> tcp_credentials);

int main(int argc, char** argv) {
  Options options;
  Settings settings;
  std::shared_ptr<grpc::ServerCredentials> tcp_credentials = grpc::InsecureServerCredentials();
  try {
    options = ParseOptions(argc, argv);
    if (!options.token_file.empty()) {
      settings.token = TrimToken(ReadFile("--token-file", options.token_file));
      if (settings.token.empty()) throw std::invalid_argument("--token-file: " + options.token_file + " is empty");
    }
    if (!options.tls_cert.empty()) {
      grpc::SslServerCredentialsOptions ssl(options.tls_client_ca.empty()
                                                ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                                : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
      ssl.pem_key_cert_pairs.push_back(
          {ReadFile("--tls-key", options.tls_key), ReadFile("--tls-cert", options.tls_cert)});
      if (!options.tls_client_ca.empty()) ssl.pem_root_certs = ReadFile("--tls-client-ca", options.tls_client_ca);
      tcp_credentials = grpc::SslServerCredentials(ssl);
    }
  } catch (const std::exception& err) {
    std::fprintf(stderr, "error: %s\n", err.what());
    return 2;
  }
  // Whatever fails later (a gRPC or allocation error) ends in one error line and a status,
  // not std::terminate's abort.
  try {
    return Serve(options, std::move(settings), std::move(tcp_credentials));
  } catch (const std::exception& err) {
    std::fprintf(stderr, "error: sim2real_fastpath stopped: %s\n", err.what());
    return 1;
  }
}

namespace {

// A protobuf parse of bytes that are not valid UTF-8 in a string field (a hostile or broken
// client's model_name) makes the library log one error line per message; a flood of them
// would flood the server's log. Said at most once per kLogEvery, with what was left out,
// like the Python listener's bad-request warnings.
#ifdef SIM2REAL_PROTOBUF_LOG_HOOK
constexpr auto kLogEvery = std::chrono::seconds(10);
void ThrottledProtobufLog(google::protobuf::LogLevel level, const char* filename, int line, const std::string& message) {
  static std::mutex mu;
  static std::chrono::steady_clock::time_point last{};
  static unsigned long long suppressed = 0;
  std::lock_guard<std::mutex> lock(mu);
  const auto now = std::chrono::steady_clock::now();
  if (level < google::protobuf::LOGLEVEL_FATAL && last.time_since_epoch().count() != 0 && now - last < kLogEvery) {
    ++suppressed;
    return;
  }
  std::fprintf(stderr, "sim2real_fastpath: protobuf: %s (%s:%d)", message.c_str(), filename, line);
  if (suppressed > 0) std::fprintf(stderr, " [%llu similar lines in the last interval left out]", suppressed);
  std::fprintf(stderr, "\n");
  suppressed = 0;
  last = now;
}
#endif

}  // namespace

int Serve(const Options& options, Settings settings, std::shared_ptr<grpc::ServerCredentials> tcp_credentials) {
#ifdef SIM2REAL_PROTOBUF_LOG_HOOK
  google::protobuf::SetLogHandler(ThrottledProtobufLog);
#endif
  g_grace_ms.store(options.grace_ms);
  Admission admission(options.max_calls, options.max_calls_per_connection);
  settings.admission = &admission;
  Worker worker(options.worker_fd,
                static_cast<std::uint32_t>(std::min<long>(options.max_send_bytes, 1L << 30)) + kAnswerSlack);
  std::unique_ptr<fastpath::Reporter> reporter;
  std::unique_ptr<fastpath::Policy> policy;
  if (!options.onnxruntime.empty()) {
    std::string error;
    std::unique_ptr<fastpath::Runtime> runtime = fastpath::Runtime::Open(options.onnxruntime, &error);
    if (!runtime) {
      std::fprintf(stderr, "error: --onnxruntime: %s\n", error.c_str());
      return 2;
    }
    reporter = std::make_unique<fastpath::Reporter>(
        [&worker](const std::string& batch) { return worker.Send(0, kReport, batch); },
        std::chrono::milliseconds(options.report_ms));
    policy = std::make_unique<fastpath::Policy>(std::move(runtime), static_cast<std::size_t>(options.max_send_bytes),
                                                reporter.get());
    if (!ReadInitialTable(options.worker_fd, *policy, &error)) {
      std::fprintf(stderr, "error: model table: %s\n", error.c_str());
      return 2;
    }
    worker.set_policy(policy.get());
    settings.policy = policy.get();
  }
  Service service(worker, settings);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  // The channel settings of the Python server (serve/server.py), so a client sees the same
  // server whichever listener it calls.
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.max_receive_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(options.max_send_bytes));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 500);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  std::vector<int> ports(options.addresses.size(), 0);
  for (std::size_t i = 0; i < options.addresses.size(); ++i) {
    const bool unix_socket = options.addresses[i].rfind("unix:", 0) == 0;
    // TLS is TCP's, as on the Python server: a Unix socket's access control is its file mode.
    builder.AddListeningPort(options.addresses[i],
                             unix_socket ? grpc::InsecureServerCredentials() : tcp_credentials, &ports[i]);
  }
  builder.RegisterCallbackGenericService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    std::fprintf(stderr, "error: cannot listen on the --address given (in use?)\n");
    return 2;
  }
  for (std::size_t i = 0; i < options.addresses.size(); ++i) {
    if (options.addresses[i].rfind("unix:", 0) != 0 && ports[i] == 0) {
      std::fprintf(stderr, "error: cannot listen on %s (in use?)\n", options.addresses[i].c_str());
      return 2;
    }
  }
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGPIPE, SIG_IGN);
  // Health answers for the service by name as on the main listener (a load balancer may
  // probe either port).
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  if (health != nullptr) health->SetServingStatus(kServiceName, true);
  std::thread answers([&worker] { worker.ReadAnswers(); });
  std::printf("ready");
  for (std::size_t i = 0; i < ports.size(); ++i) std::printf(" %d", ports[i]);
  if (policy) std::printf(" onnxruntime=%s", policy->runtime().version().c_str());
  std::printf("\n");
  std::fflush(stdout);
  while (!g_stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  // The drain: NOT_SERVING first (every service name), then new calls refused and open ones
  // given the grace period, as the Python listener does at the same moment.
  if (health != nullptr) health->Shutdown();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(g_grace_ms.load()));
  if (reporter) reporter->Stop();  // the last steps' reports go out before the socket closes
  ::shutdown(options.worker_fd, SHUT_RDWR);
  answers.join();
  return 0;
}
