// The fast path's request path (policy.h): onnxruntime through its C API, the model table
// the Python process sends, and the answer PolicyCore would give.
//
// Model table frame (from the Python process: call id 0, status 255; little-endian):
//   u8 format (2) | u8 sanitize | f64 max_action_delta (0: none) | u8 want_bytes
//   | str input name | str output name (the model contract's, serve/model.py)
//   | str default_name | u32 model count | models
//   model: str name | i64 version | u32 obs_dim | u32 act_dim | str sha256 | str onnx
//          | f32[obs_dim] fill | f32[obs_dim] low | f32[obs_dim] high
//   str: u32 length | bytes
//
// Report frame (to the Python process: call id 0, kind 6), records back to back:
//   u8 method | str model name | i64 version | i64 compute_ns | u8 flags (1 clamped,
//   2 rate limited) | str request bytes | str response bytes (both empty unless the
//   table asked for them)
// or, method 0: u64 step reports dropped since the last such record (the policy process
//   was not reading; it counts them in a metric).
#include "policy.h"

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <type_traits>
#include <utility>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "sim2real/v1/policy.pb.h"
#include "wire.h"

namespace fastpath {

namespace {

constexpr std::size_t kMaxBatchBytes = 64u << 20;

// A little-endian integer or IEEE float of the frame, whatever the host's byte order.
template <typename T>
T LoadLittleEndian(const char* p) {
  static_assert(sizeof(T) == 1 || sizeof(T) == 4 || sizeof(T) == 8, "1, 4 or 8 bytes");
  using Bits = std::conditional_t<sizeof(T) == 8, std::uint64_t,
                                  std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint8_t>>;
  Bits bits = 0;
  for (int i = static_cast<int>(sizeof(T)) - 1; i >= 0; --i) {
    bits = static_cast<Bits>((static_cast<std::uint64_t>(bits) << 8) | static_cast<unsigned char>(p[i]));
  }
  T value;
  std::memcpy(&value, &bits, sizeof(T));
  return value;
}

// "1.20.1" -> {1, 20}; {-1, -1} when it does not read so.
std::pair<int, int> MajorMinor(const std::string& version) {
  int major = -1, minor = -1;
  if (std::sscanf(version.c_str(), "%d.%d", &major, &minor) != 2) return {-1, -1};
  return {major, minor};
}

// Bounds-checked reading of a table frame.
class Reader {
 public:
  Reader(const char* data, std::size_t size) : p_(data), end_(data + size) {}
  bool ok() const { return ok_; }
  bool done() const { return p_ == end_; }
  template <typename T>
  T Get() {
    if (!Need(sizeof(T))) return T{};
    const T value = LoadLittleEndian<T>(p_);
    p_ += sizeof(T);
    return value;
  }
  std::string Str() {
    const auto n = Get<std::uint32_t>();
    if (!Need(n)) return {};  // before allocating
    std::string s(p_, n);
    p_ += n;
    return s;
  }
  template <typename T>
  std::vector<T> Array(std::size_t n) {
    if (n > static_cast<std::size_t>(end_ - p_) / sizeof(T) || !Need(n * sizeof(T))) {  // before allocating
      ok_ = false;
      return {};
    }
    std::vector<T> v(n);
    for (std::size_t i = 0; i < n; ++i, p_ += sizeof(T)) v[i] = LoadLittleEndian<T>(p_);
    return v;
  }

 private:
  bool Need(std::size_t n) {
    if (!ok_ || static_cast<std::size_t>(end_ - p_) < n) ok_ = false;
    return ok_;
  }
  const char* p_;
  const char* end_;
  bool ok_ = true;
};

}  // namespace

// --- Runtime ---------------------------------------------------------------------------

std::unique_ptr<Runtime> Runtime::Open(const std::string& path, std::string* error) {
  std::unique_ptr<Runtime> rt(new Runtime());
  rt->library_ = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (rt->library_ == nullptr) {
    *error = "cannot open " + path + ": " + ::dlerror();
    return nullptr;
  }
  auto get_base = reinterpret_cast<ort::GetApiBaseFn>(::dlsym(rt->library_, "OrtGetApiBase"));
  if (get_base == nullptr || (rt->base_ = get_base()) == nullptr) {
    *error = path + " has no OrtGetApiBase: not an onnxruntime library";
    return nullptr;
  }
  // The entries are declared by position (ort_api.h): only a library of the one major
  // version whose table starts that way, and no older than the wheels this project
  // installs, is trusted with them.
  const auto [major, minor] = MajorMinor(rt->version());
  if (major != ort::kMajorVersion || minor < ort::kMinMinorVersion) {
    *error = path + " is onnxruntime " + rt->version() + "; the fast path runs onnxruntime " +
             std::to_string(ort::kMajorVersion) + "." + std::to_string(ort::kMinMinorVersion) + " or a later " +
             std::to_string(ort::kMajorVersion) + ".x (use --fast-inference python with another)";
    return nullptr;
  }
  rt->table_ = static_cast<const AnyFn*>(rt->base_->GetApi(ort::kApiVersion));
  if (rt->table_ == nullptr) {
    *error = path + " (onnxruntime " + rt->version() + ") does not answer C API version " +
             std::to_string(ort::kApiVersion);
    return nullptr;
  }
  std::string failed = rt->Check(rt->Fn<ort::CreateEnvFn>(ort::kCreateEnv)(ort::kLogError, "sim2real_fastpath", &rt->env_));
  if (failed.empty()) {
    failed = rt->Check(rt->Fn<ort::CreateCpuMemoryInfoFn>(ort::kCreateCpuMemoryInfo)(
        ort::kArenaAllocator, ort::kMemTypeDefault, &rt->cpu_));
  }
  if (!failed.empty()) {
    *error = "onnxruntime " + rt->version() + ": " + failed;
    return nullptr;
  }
  return rt;
}

Runtime::~Runtime() {
  if (table_ != nullptr) {
    if (cpu_ != nullptr) Fn<ort::ReleaseFn<ort::MemoryInfo>>(ort::kReleaseMemoryInfo)(cpu_);
    if (env_ != nullptr) Fn<ort::ReleaseFn<ort::Env>>(ort::kReleaseEnv)(env_);
  }
  // The library stays loaded: onnxruntime's own threads and atexit handlers may still
  // refer to it.
}

std::string Runtime::version() const {
  const char* text = base_ != nullptr ? base_->GetVersionString() : nullptr;
  return text != nullptr ? text : "?";
}

std::string Runtime::Check(ort::Status* status) const {
  if (status == nullptr) return "";
  std::string message = Fn<ort::GetErrorMessageFn>(ort::kGetErrorMessage)(status);
  Fn<ort::ReleaseFn<ort::Status>>(ort::kReleaseStatus)(status);
  return message.empty() ? "onnxruntime error" : message;
}

void Runtime::SessionDeleter::operator()(ort::Session* session) const {
  runtime->Fn<ort::ReleaseFn<ort::Session>>(ort::kReleaseSession)(session);
}

Runtime::SessionPtr Runtime::Load(const std::string& onnx, std::string* error) const {
  ort::SessionOptions* options = nullptr;
  std::string failed = Check(Fn<ort::CreateSessionOptionsFn>(ort::kCreateSessionOptions)(&options));
  if (failed.empty()) failed = Check(Fn<ort::SetThreadsFn>(ort::kSetIntraOpNumThreads)(options, 1));
  if (failed.empty()) failed = Check(Fn<ort::SetThreadsFn>(ort::kSetInterOpNumThreads)(options, 1));
  if (failed.empty()) {
    failed = Check(Fn<ort::SetExecutionModeFn>(ort::kSetSessionExecutionMode)(options, ort::kSequential));
  }
  if (failed.empty()) {
    failed = Check(Fn<ort::SetOptimizationLevelFn>(ort::kSetSessionGraphOptimizationLevel)(options, ort::kEnableAll));
  }
  ort::Session* session = nullptr;
  if (failed.empty()) {
    failed = Check(Fn<ort::CreateSessionFromArrayFn>(ort::kCreateSessionFromArray)(env_, onnx.data(), onnx.size(),
                                                                                   options, &session));
  }
  if (options != nullptr) Fn<ort::ReleaseFn<ort::SessionOptions>>(ort::kReleaseSessionOptions)(options);
  if (!failed.empty()) {
    *error = failed;
    return nullptr;
  }
  return SessionPtr(session, SessionDeleter{this});
}

bool Runtime::Run(ort::Session* session, const IoNames& names, const float* observation, std::size_t obs_dim,
                  float* action, std::size_t act_dim, std::string* error) const {
  const std::int64_t in_shape[2] = {1, static_cast<std::int64_t>(obs_dim)};
  const std::int64_t out_shape[2] = {1, static_cast<std::int64_t>(act_dim)};
  ort::Value* input = nullptr;
  ort::Value* output = nullptr;
  const auto create = Fn<ort::CreateTensorWithDataFn>(ort::kCreateTensorWithDataAsOrtValue);
  // Both tensors wrap the caller's buffers: onnxruntime reads the observation in place and
  // writes the action in place (no allocation of its own for either).
  std::string failed = Check(create(cpu_, const_cast<float*>(observation), obs_dim * sizeof(float), in_shape, 2,
                                    ort::kFloat, &input));
  if (failed.empty()) {
    failed = Check(create(cpu_, action, act_dim * sizeof(float), out_shape, 2, ort::kFloat, &output));
  }
  if (failed.empty()) {
    const char* const input_names[] = {names.input.c_str()};
    const char* const output_names[] = {names.output.c_str()};
    const ort::Value* inputs[] = {input};
    failed = Check(Fn<ort::RunFn>(ort::kRun)(session, nullptr, input_names, inputs, 1, output_names, 1, &output));
  }
  const auto release = Fn<ort::ReleaseFn<ort::Value>>(ort::kReleaseValue);
  if (input != nullptr) release(input);
  if (output != nullptr) release(output);
  if (!failed.empty()) *error = failed;
  return failed.empty();
}

// --- Reporter --------------------------------------------------------------------------

Reporter::Reporter(Send send, std::chrono::milliseconds period)
    : send_(std::move(send)), period_(period), thread_([this] { Loop(); }) {}

Reporter::~Reporter() { Stop(); }

void Reporter::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Reporter::Add(Method method, const Model& model, std::int64_t compute_ns, bool clamped, bool rate_limited,
                   const std::string* request, const std::string* response) {
  bool full = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (batch_.size() > kMaxBatchBytes) {
      // The policy process is not reading (stalled): steps go uncounted rather than
      // without bound into memory. The count goes to it with the next batch it takes
      // (a metric there), and is said here once per 10,000.
      if (dropped_++ % 10000 == 0) {
        std::fprintf(stderr, "sim2real_fastpath: the policy process is not taking step reports; %llu dropped\n",
                     static_cast<unsigned long long>(dropped_));
      }
      return;
    }
    batch_.push_back(static_cast<char>(method));
    PutStr(batch_, model.name);
    PutU64(batch_, static_cast<std::uint64_t>(model.version));
    PutU64(batch_, static_cast<std::uint64_t>(compute_ns));
    batch_.push_back(static_cast<char>((clamped ? 1 : 0) | (rate_limited ? 2 : 0)));
    PutStr(batch_, request != nullptr ? *request : std::string());
    PutStr(batch_, response != nullptr ? *response : std::string());
    full = batch_.size() > (256u << 10);
  }
  if (full) wake_.notify_one();
}

void Reporter::Loop() {
  std::string out;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    wake_.wait_for(lock, period_, [this] { return stop_ || batch_.size() > (256u << 10); });
    out.swap(batch_);
    if (dropped_ > dropped_sent_) {
      out.push_back(static_cast<char>(0));  // method 0: the drop count record
      PutU64(out, dropped_ - dropped_sent_);
      dropped_sent_ = dropped_;
    }
    const bool stopping = stop_;
    lock.unlock();
    if (!out.empty()) send_(out);
    out.clear();
    lock.lock();
    if (stopping && batch_.empty()) return;
  }
}

// --- Stream memory on the wire ---------------------------------------------------------

void EncodeState(const StreamMemory& memory, std::string* out) {
  out->push_back(static_cast<char>(memory.has_previous ? 1 : 0));
  PutStr(*out, memory.has_previous ? memory.model : std::string());
  const std::size_t n = memory.has_previous ? memory.previous.size() : 0;
  PutU32(*out, static_cast<std::uint32_t>(n));
  out->append(reinterpret_cast<const char*>(memory.previous.data()), n * sizeof(double));
}

bool DecodeState(const char* data, std::size_t size, StreamMemory* memory) {
  Reader in(data, size);
  const bool has = in.Get<std::uint8_t>() != 0;
  std::string model = in.Str();
  const auto n = in.Get<std::uint32_t>();
  std::vector<double> previous = in.Array<double>(n);
  if (!in.ok() || !in.done()) return false;
  memory->has_previous = has;
  memory->model = std::move(model);
  memory->previous = std::move(previous);
  return true;
}

// --- Policy ----------------------------------------------------------------------------


Policy::Policy(std::unique_ptr<Runtime> runtime, std::size_t max_message_bytes, Reporter* reporter)
    : runtime_(std::move(runtime)), max_message_bytes_(max_message_bytes), reporter_(reporter) {}

std::shared_ptr<const Table> Policy::Current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return table_;
}

bool Policy::Apply(const char* data, std::size_t size, std::string* error) {
  Reader in(data, size);
  auto table = std::make_shared<Table>();
  const auto format = in.Get<std::uint8_t>();
  if (in.ok() && format != 2) {
    *error = "model table format " + std::to_string(format) + " (this front end reads format 2)";
    return false;
  }
  table->sanitize = in.Get<std::uint8_t>() != 0;
  table->max_action_delta = in.Get<double>();
  table->want_bytes = in.Get<std::uint8_t>() != 0;
  table->names.input = in.Str();
  table->names.output = in.Str();
  if (in.ok() && (table->names.input.empty() || table->names.output.empty())) {
    *error = "model table: empty model input or output name";
    return false;
  }
  table->default_name = in.Str();
  const auto count = in.Get<std::uint32_t>();
  const std::shared_ptr<const Table> previous = Current();
  for (std::uint32_t i = 0; in.ok() && i < count; ++i) {
    auto model = std::make_shared<Model>();
    model->name = in.Str();
    model->version = in.Get<std::int64_t>();
    model->obs_dim = in.Get<std::uint32_t>();
    model->act_dim = in.Get<std::uint32_t>();
    model->sha256 = in.Str();
    const std::string onnx = in.Str();
    model->fill = in.Array<float>(model->obs_dim);
    model->low = in.Array<float>(model->obs_dim);
    model->high = in.Array<float>(model->obs_dim);
    if (!in.ok()) break;
    if (model->obs_dim == 0 || model->act_dim == 0) {
      *error = "model " + model->name + ": zero observation or action size";
      return false;
    }
    // Keep the session of an unchanged file (a reload of another model re-sends all).
    if (previous) {
      for (const auto& [name, old] : previous->models) {
        if (old->sha256 == model->sha256) {
          model->session = old->session;
          break;
        }
      }
    }
    if (!model->session) {
      std::string failed;
      model->session = runtime_->Load(onnx, &failed);
      if (!model->session) {
        // Not served here; the Python process, which loaded it, answers its requests.
        std::fprintf(stderr, "sim2real_fastpath: onnxruntime cannot load %s version %lld here (%s); "
                     "its requests go to the policy process\n", model->name.c_str(),
                     static_cast<long long>(model->version), failed.c_str());
        continue;
      }
    }
    table->models[model->name] = std::move(model);
  }
  if (!in.ok() || !in.done()) {
    *error = "malformed model table (" + std::to_string(size) + " bytes)";
    return false;
  }
  std::lock_guard<std::mutex> lock(mu_);
  rate_limited_.store(table->max_action_delta > 0.0, std::memory_order_release);
  table_ = std::move(table);
  return true;
}

bool Policy::Serve(const std::string& raw, Method method, StreamMemory* memory, std::string* response) {
  if (raw.size() > max_message_bytes_) return false;  // RESOURCE_EXHAUSTED, from Python
  const auto start = std::chrono::steady_clock::now();
  // One of each per gRPC thread: no allocation per message once warm.
  thread_local sim2real::v1::ActRequest request;
  thread_local sim2real::v1::ActResponse answer;
  thread_local std::vector<float> observation, raw_action;
  thread_local std::vector<double> action;
  if (!request.ParseFromString(raw)) return false;
  const std::shared_ptr<const Table> table = Current();
  if (!table) return false;
  const std::string& key = request.model_name().empty() ? table->default_name : request.model_name();
  const auto found = table->models.find(key);
  if (found == table->models.end()) return false;
  const Model& model = *found->second;
  if (static_cast<std::uint32_t>(request.observation_size()) != model.obs_dim) return false;
  observation.assign(request.observation().begin(), request.observation().end());
  for (std::size_t i = 0; i < observation.size(); ++i) {
    const float v = observation[i];
    if (std::isfinite(v)) continue;
    if (!table->sanitize) return false;  // INVALID_ARGUMENT naming the entry, from Python
    observation[i] = std::isnan(v) ? model.fill[i] : (v > 0 ? model.high[i] : model.low[i]);
  }
  raw_action.resize(model.act_dim);
  std::string failed;
  if (!runtime_->Run(model.session.get(), table->names, observation.data(), model.obs_dim, raw_action.data(),
                     model.act_dim, &failed)) {
    // The policy process answers it (and says what it makes of it); said here once per
    // 1,000 failures, not per request.
    static std::atomic<std::uint64_t> failures{0};
    if (failures.fetch_add(1) % 1000 == 0) {
      std::fprintf(stderr, "sim2real_fastpath: onnxruntime run failed for %s (%s); such requests go to the "
                   "policy process\n", model.name.c_str(), failed.c_str());
    }
    return false;
  }
  action.assign(raw_action.begin(), raw_action.end());
  // core.py _finish, step for step (in double, as Python's floats are).
  for (double v : action) {
    if (!std::isfinite(v)) return false;  // withheld with INTERNAL, from Python
  }
  bool clamped = false;
  for (double& v : action) {
    if (v < -1.0 || v > 1.0) {
      clamped = true;
      v = v < -1.0 ? -1.0 : 1.0;
    }
  }
  bool rate_limited = false;
  const double limit = table->max_action_delta;
  if (memory != nullptr) {
    if (limit > 0.0 && memory->has_previous && !request.reset_rate_limit() && memory->model == model.name &&
        memory->previous.size() == action.size()) {
      for (std::size_t i = 0; i < action.size(); ++i) {
        // numpy.clip(a, lo, hi) = minimum(maximum(a, lo), hi)
        const double lo = memory->previous[i] - limit;
        const double hi = memory->previous[i] + limit;
        const double limited = std::min(std::max(action[i], lo), hi);
        rate_limited |= limited != action[i];
        action[i] = limited;
      }
    }
    if (limit > 0.0) {
      memory->previous = action;
      memory->model = model.name;
      memory->has_previous = true;
    }
  }
  const std::int64_t compute_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count();
  answer.Clear();
  auto* values = answer.mutable_action();
  values->Reserve(static_cast<int>(action.size()));
  for (double v : action) values->AddAlreadyReserved(static_cast<float>(v));
  answer.set_sequence(request.sequence());
  answer.set_model_name(model.name);
  answer.set_model_version(model.version);
  answer.set_server_compute_ns(compute_ns);
  answer.set_client_time_ns(request.client_time_ns());
  answer.set_clamped(clamped);
  answer.set_rate_limited(rate_limited);
  answer.SerializeToString(response);
  if (reporter_ != nullptr) {
    const bool bytes = table->want_bytes;
    reporter_->Add(method, model, compute_ns, clamped, rate_limited, bytes ? &raw : nullptr,
                   bytes ? response : nullptr);
  }
  return true;
}

}  // namespace fastpath
