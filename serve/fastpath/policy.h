// The fast path's own request path: the policy run in the front end, with onnxruntime's C
// API, so a served step never waits for the Python process (fastpath.cpp, policy.cpp).
//
// The Python server stays the authority: it validates and loads every model (serve/
// model.py), then sends the front end a table of the models it serves on the CPU (their
// ONNX bytes, checked against the sha256 it loaded, with the safety settings and the
// sanitizer's bounds), again on every hot reload or unload. A message is answered here
// exactly as PolicyCore would answer it (serve/core.py: the same checks, clamping, rate
// limit, response fields); everything else goes to the Python process as before: a
// message that does not parse or is too big, a model the table does not hold (not
// served, or served on CUDA), a wrong observation size, a non-finite observation the
// server rejects, a non-finite action. Those are the requests that get an error (or run
// on a GPU), so Python's message is the one the client reads. Each step served here is
// reported to the Python process in batches for its metrics and recording.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "ort_api.h"

namespace fastpath {

// The graph's input and output names: the model contract's (serve/model.py INPUT_NAME,
// OUTPUT_NAME), sent in the model table so that the contract is written in one place.
struct IoNames {
  std::string input;
  std::string output;
};

// onnxruntime opened from a shared library (the Python wheel's capi/libonnxruntime.so.*).
class Runtime {
 public:
  // Null and *error set when the library cannot be opened or answers no C API.
  static std::unique_ptr<Runtime> Open(const std::string& path, std::string* error);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  struct SessionDeleter {
    const Runtime* runtime;
    void operator()(ort::Session* session) const;
  };
  using SessionPtr = std::shared_ptr<ort::Session>;

  // A session on the CPU, one intra-op thread, all graph optimizations: the settings of
  // serve/model.py's SessionTuning. Null and *error set on failure.
  SessionPtr Load(const std::string& onnx, std::string* error) const;
  // observation [1, obs_dim] -> action [1, act_dim], into `action`. False and *error set
  // on failure.
  bool Run(ort::Session* session, const IoNames& names, const float* observation, std::size_t obs_dim,
           float* action, std::size_t act_dim, std::string* error) const;
  std::string version() const;

 private:
  Runtime() = default;
  template <typename F>
  F Fn(ort::Entry entry) const {
    return reinterpret_cast<F>(table_[entry]);
  }
  // Takes ownership of a returned status: "" when it is null (success), else its message.
  std::string Check(ort::Status* status) const;

  using AnyFn = void (*)();
  void* library_ = nullptr;
  const ort::ApiBase* base_ = nullptr;
  const AnyFn* table_ = nullptr;
  ort::Env* env_ = nullptr;
  ort::MemoryInfo* cpu_ = nullptr;
};

struct Model {
  std::string name;
  std::int64_t version = 0;
  std::uint32_t obs_dim = 0;
  std::uint32_t act_dim = 0;
  std::string sha256;
  // PolicyCore._sanitize_bounds: NaN -> fill, -Inf -> low, +Inf -> high.
  std::vector<float> fill, low, high;
  Runtime::SessionPtr session;
};

struct Table {
  bool sanitize = false;          // --nonfinite sanitize (else reject: Python answers)
  double max_action_delta = 0.0;  // 0: no rate limit
  bool want_bytes = false;        // the Python process records steps: report their bytes
  IoNames names;
  std::string default_name;
  std::unordered_map<std::string, std::shared_ptr<const Model>> models;
};

// A stream's memory for the rate limit (core.py StreamState).
struct StreamMemory {
  std::vector<double> previous;
  std::string model;
  bool has_previous = false;
};

// A stream's memory on the wire (frames kind 7 and status 254, fastpath.cpp):
//   u8 has_previous | str model | u32 n | f64[n] previous
void EncodeState(const StreamMemory& memory, std::string* out);
bool DecodeState(const char* data, std::size_t size, StreamMemory* memory);

enum Method : std::uint8_t { kMethodAct = 1, kMethodStream = 2 };

// Steps served here, batched for the Python process (its metrics and recorder). `send`
// writes one frame to the worker socket; a flush happens every `period` or when the batch
// passes 256 KiB, off the request path.
class Reporter {
 public:
  using Send = std::function<bool(const std::string& payload)>;
  Reporter(Send send, std::chrono::milliseconds period);
  ~Reporter();
  void Add(Method method, const Model& model, std::int64_t compute_ns, bool clamped, bool rate_limited,
           const std::string* request, const std::string* response);
  void Stop();

 private:
  void Loop();
  Send send_;
  std::chrono::milliseconds period_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::string batch_;
  std::uint64_t dropped_ = 0;
  std::uint64_t dropped_sent_ = 0;  // of dropped_, told to the policy process already
  bool stop_ = false;
  std::thread thread_;
};

class Policy {
 public:
  Policy(std::unique_ptr<Runtime> runtime, std::size_t max_message_bytes, Reporter* reporter);

  // Replace the table from its frame (format in policy.cpp); sessions of models whose
  // sha256 is unchanged are kept. False and *error set when the frame is malformed (the
  // previous table stays).
  bool Apply(const char* data, std::size_t size, std::string* error);

  // Answer one Act request or StreamAct message here: true with `response` the serialized
  // ActResponse; false when the Python process must answer it (see the file comment).
  // `memory` is the stream's (null for Act).
  bool Serve(const std::string& raw, Method method, StreamMemory* memory, std::string* response);

  const Runtime& runtime() const { return *runtime_; }
  // True when the table in force has a rate limit (--max-action-delta): read once per
  // stream message, so kept beside the table rather than read through its lock.
  bool rate_limit_active() const { return rate_limited_.load(std::memory_order_acquire); }

 private:
  std::shared_ptr<const Table> Current() const;

  std::unique_ptr<Runtime> runtime_;
  std::size_t max_message_bytes_;
  Reporter* reporter_;
  mutable std::mutex mu_;
  std::shared_ptr<const Table> table_;
  std::atomic<bool> rate_limited_{false};
};

}  // namespace fastpath
