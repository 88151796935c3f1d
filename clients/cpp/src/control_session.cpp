// ControlSession: one StreamAct stream behind a deadline-bounded, allocation-free Step().
//
// Threads:
//   control thread  Step(): copies the observation into the request slot, wakes the
//                   session thread, waits (condition variable, absolute deadline) for the
//                   answer slot, copies the action out. No gRPC call, no allocation, no throw.
//   session thread  opens the stream (reconnecting with backoff after any failure) and
//                   writes the request slot to it; all gRPC writes and their allocations
//                   happen here.
//   reader thread   one per stream: reads answers into a reused ActResponse and hands the
//                   one the control thread is waiting for (same sequence) to the answer slot;
//                   when the stream ends it collects the status (last_error) and marks the
//                   session disconnected, waking a waiting Step at once.
//
// The request slot holds one observation: a step whose request was not yet handed to gRPC
// when the next step comes is replaced by it (the newest observation wins; nothing stale
// queues up behind a slow link).
#include <pthread.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "internal.h"

namespace sim2real {
namespace {

using Clock = std::chrono::steady_clock;
using Stream = grpc::ClientReaderWriter<v1::ActRequest, v1::ActResponse>;

constexpr std::size_t kMinObservationCapacity = 1024;
constexpr std::size_t kErrorCapacity = 200;  // server error messages kept per answer
constexpr std::chrono::seconds kWriteFailureGrace{1};

void Format(StepResult& result, const char* format, ...) noexcept
    __attribute__((format(printf, 2, 3)));

void Format(StepResult& result, const char* format, ...) noexcept {
  va_list args;
  va_start(args, format);
  std::vsnprintf(result.reason.data(), result.reason.size(), format, args);
  va_end(args);
}

void NameThread(const char* name) noexcept {
  pthread_setname_np(pthread_self(), name);  // best effort (15 chars max)
}

std::int64_t WallNanos() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Describe(const grpc::Status& status) {
  return std::string(StatusCodeName(static_cast<int>(status.error_code()))) + ": " +
         status.error_message();
}

}  // namespace

const char* StepStatusName(StepStatus status) noexcept {
  switch (status) {
    case StepStatus::kOk:
      return "ok";
    case StepStatus::kDeadlineMissed:
      return "deadline_missed";
    case StepStatus::kServerError:
      return "server_error";
    case StepStatus::kDisconnected:
      return "disconnected";
    case StepStatus::kBadArgument:
      return "bad_argument";
    case StepStatus::kClosed:
      return "closed";
  }
  return "unknown";
}

class ControlSession::Impl {
 public:
  Impl(std::shared_ptr<const PolicyClient::Shared> shared, SessionOptions options,
       PolicyInfo info)
      : shared_(std::move(shared)), options_(std::move(options)), info_(std::move(info)) {
    default_action_ = options_.default_action;
    if (default_action_.empty()) {
      default_action_.assign(static_cast<std::size_t>(info_.action_dim), 0.0F);
    }
    action_dim_ = default_action_.size();
    observation_capacity_ = options_.observation_capacity;
    if (observation_capacity_ == 0) {
      observation_capacity_ = std::max(kMinObservationCapacity,
                                       2 * static_cast<std::size_t>(info_.observation_dim));
    }
    // Everything Step touches is allocated here, once.
    last_action_ = default_action_;
    pending_observation_.assign(observation_capacity_, 0.0F);
    answer_action_.assign(action_dim_, 0.0F);
    answer_error_.fill('\0');
    last_error_.reserve(512);
    request_.mutable_observation()->Reserve(static_cast<int>(observation_capacity_));
    request_.set_model_name(options_.model_name);
    session_thread_ = std::thread([this] { RunSession(); });
  }

  ~Impl() { Close(); }

  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  StepResult Step(const float* observation, std::size_t observation_size, float* action,
                  std::size_t action_size, bool reset_rate_limit) noexcept {
    const Clock::time_point start = Clock::now();
    StepResult result;
    result.sequence = ++sequence_;
    steps_.fetch_add(1, std::memory_order_relaxed);
    if (action == nullptr || action_size < action_dim_) {
      // Nothing can be written, not even the fallback: a bug in the caller.
      Format(result, "action: expected a buffer of at least %zu floats (action_dim), got %zu%s",
             action_dim_, action == nullptr ? std::size_t{0} : action_size,
             action == nullptr ? " (null pointer)" : "");
      return Finish(result, StepStatus::kBadArgument, nullptr, start);
    }
    if (observation == nullptr && observation_size > 0) {
      Format(result, "observation: expected %zu floats, got a null pointer", observation_size);
      return Finish(result, StepStatus::kBadArgument, action, start);
    }
    if (observation_size > observation_capacity_) {
      Format(result,
             "observation: %zu values exceed the session's capacity of %zu "
             "(SessionOptions::observation_capacity); nothing sent",
             observation_size, observation_capacity_);
      return Finish(result, StepStatus::kBadArgument, action, start);
    }

    std::unique_lock<std::mutex> lock(mutex_);
    if (closed_) {
      Format(result, "session closed");
      return Finish(result, StepStatus::kClosed, action, start);
    }
    if (!connected_) {
      result.error_code = last_code_;
      Format(result, "disconnected (%s)", last_error_.empty() ? "connecting" : last_error_.c_str());
      return Finish(result, StepStatus::kDisconnected, action, start);
    }
    if (observation_size > 0) {
      std::memcpy(pending_observation_.data(), observation, observation_size * sizeof(float));
    }
    pending_size_ = observation_size;
    pending_sequence_ = result.sequence;
    pending_reset_ = reset_rate_limit;
    pending_time_ns_ = WallNanos();
    has_pending_ = true;
    waiting_sequence_ = result.sequence;
    answered_ = false;
    io_cv_.notify_one();
    step_cv_.wait_until(lock, start + options_.deadline,
                        [this] { return answered_ || !connected_ || closed_; });
    waiting_sequence_ = 0;
    if (!answered_) {
      if (closed_) {
        Format(result, "session closed");
        return Finish(result, StepStatus::kClosed, action, start);
      }
      if (!connected_) {
        result.error_code = last_code_;
        Format(result, "disconnected (%s)", last_error_.c_str());
        return Finish(result, StepStatus::kDisconnected, action, start);
      }
      deadline_misses_.fetch_add(1, std::memory_order_relaxed);
      Format(result, "deadline of %.2f ms missed",
             std::chrono::duration<double, std::milli>(options_.deadline).count());
      return Finish(result, StepStatus::kDeadlineMissed, action, start);
    }
    if (answer_has_error_) {
      result.error_code = answer_error_code_;
      Format(result, "server error %s: %s", StatusCodeName(answer_error_code_),
             answer_error_.data());
      server_errors_.fetch_add(1, std::memory_order_relaxed);
      return Finish(result, StepStatus::kServerError, action, start);
    }
    if (answer_size_ != action_dim_) {
      Format(result, "action: expected %zu values (the session's action_dim), got %zu",
             action_dim_, answer_size_);
      server_errors_.fetch_add(1, std::memory_order_relaxed);
      return Finish(result, StepStatus::kServerError, action, start);
    }
    std::memcpy(action, answer_action_.data(), action_dim_ * sizeof(float));
    std::memcpy(last_action_.data(), answer_action_.data(), action_dim_ * sizeof(float));
    result.server_compute = std::chrono::nanoseconds(answer_compute_ns_);
    result.model_version = answer_version_;
    result.clamped = answer_clamped_;
    result.rate_limited = answer_rate_limited_;
    return Finish(result, StepStatus::kOk, nullptr, start);
  }

  bool WaitConnected(std::chrono::nanoseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    return step_cv_.wait_for(lock, timeout, [this] { return connected_ || closed_; }) &&
           connected_;
  }

  bool connected() const noexcept { return connected_flag_.load(std::memory_order_relaxed); }

  SessionStats stats() const noexcept {
    SessionStats s;
    s.steps = steps_.load(std::memory_order_relaxed);
    s.actions = actions_.load(std::memory_order_relaxed);
    s.fallbacks = fallbacks_.load(std::memory_order_relaxed);
    s.deadline_misses = deadline_misses_.load(std::memory_order_relaxed);
    s.server_errors = server_errors_.load(std::memory_order_relaxed);
    s.disconnected = disconnected_.load(std::memory_order_relaxed);
    s.reconnects = reconnects_.load(std::memory_order_relaxed);
    s.connected = connected();
    return s;
  }

  std::string last_error() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return last_error_;
  }

  void Close() noexcept {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (closed_ && !session_thread_.joinable()) return;
      closed_ = true;
      if (context_ != nullptr) context_->TryCancel();
      io_cv_.notify_all();
      step_cv_.notify_all();
    }
    if (session_thread_.joinable() && session_thread_.get_id() != std::this_thread::get_id()) {
      session_thread_.join();
    }
  }

  std::size_t action_dim() const noexcept { return action_dim_; }
  std::size_t observation_capacity() const noexcept { return observation_capacity_; }
  const PolicyInfo& info() const noexcept { return info_; }
  const std::vector<float>& default_action() const noexcept { return default_action_; }

 private:
  // Writes the fallback (unless `action` is null or the status is kOk), counts, stamps.
  StepResult& Finish(StepResult& result, StepStatus status, float* action,
                     Clock::time_point start) noexcept {
    result.status = status;
    result.fallback = status != StepStatus::kOk;
    if (result.fallback) {
      fallbacks_.fetch_add(1, std::memory_order_relaxed);
      if (status == StepStatus::kDisconnected) disconnected_.fetch_add(1, std::memory_order_relaxed);
      if (action != nullptr) {
        // last_action_ is only written by Step (this thread), so no lock is needed.
        const std::vector<float>& source =
            options_.fallback == Fallback::kHold ? last_action_ : default_action_;
        std::memcpy(action, source.data(), action_dim_ * sizeof(float));
      }
    } else {
      actions_.fetch_add(1, std::memory_order_relaxed);
    }
    result.latency = Clock::now() - start;
    return result;
  }

  // --- session thread ----------------------------------------------------------------------
  void RunSession() noexcept {
    NameThread("sim2real-stream");
    std::chrono::milliseconds backoff = options_.initial_backoff;
    for (bool first = true;; first = false) {
      if (!first) {
        reconnects_.fetch_add(1, std::memory_order_relaxed);
        // The channel keeps its own connect backoff (up to 2 s) and fails calls fast until it
        // expires; reset it so that this attempt, paced by the session's backoff, really
        // tries to connect (a restarted server is found within one session backoff).
        grpc::experimental::ChannelResetConnectionBackoff(shared_->channel.get());
      }
      bool was_up = false;
      try {
        was_up = RunStream();
      } catch (const std::exception& err) {
        // Never let a failure escape a background thread (std::terminate): note it, retry.
        SetDisconnected(13, std::string("client error: ") + err.what());
      } catch (...) {
        SetDisconnected(13, "client error: unknown exception");
      }
      if (was_up) backoff = options_.initial_backoff;
      std::unique_lock<std::mutex> lock(mutex_);
      io_cv_.wait_for(lock, backoff, [this] { return closed_; });
      if (closed_) return;
      backoff = std::min(backoff * 2, options_.max_backoff);
    }
  }

  // One stream's life. Returns whether it carried answers (then the backoff starts over; a
  // stream refused right after its headers, e.g. UNAUTHENTICATED, keeps backing off).
  bool RunStream() {
    // Declared before the stream: destroyed after it.
    auto context = std::make_unique<grpc::ClientContext>();
    shared_->Prepare(*context);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (closed_) return false;
      context_ = context.get();  // Close() cancels it, also while connecting
    }
    std::unique_ptr<Stream> stream = shared_->stub->StreamAct(context.get());
    // The server sends its headers as soon as the call is accepted (credentials included).
    stream->WaitForInitialMetadata();
    // A call that failed before reaching a server (none listening, TLS refused) completes
    // at once with empty metadata: tell it apart by the channel, which is not READY then.
    // (A server's trailers-only refusal, e.g. UNAUTHENTICATED, passes this check; the
    // reader thread ends it within microseconds with its status.)
    bool closed = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      closed = closed_;
    }
    if (closed || shared_->channel->GetState(false) != GRPC_CHANNEL_READY) {
      if (!closed) context->TryCancel();  // a call still waiting on a connection gives up
      const grpc::Status status = stream->Finish();
      std::lock_guard<std::mutex> lock(mutex_);
      context_ = nullptr;
      if (!closed_) {
        if (status.error_code() == grpc::StatusCode::CANCELLED) {  // our cancel above
          SetDisconnectedLocked(14, "UNAVAILABLE: no connection to " + shared_->options.address);
        } else {
          SetDisconnectedLocked(static_cast<int>(status.error_code()), Describe(status));
        }
      }
      return false;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stream_broken_ = false;
      has_pending_ = false;  // an observation from before this stream is stale
      connected_ = true;
      connected_flag_.store(true, std::memory_order_relaxed);
      step_cv_.notify_all();
    }
    std::uint64_t received = 0;
    std::thread reader([this, &stream, &received] { received = ReadAnswers(*stream); });
    WriteRequests(*stream, *context);
    reader.join();
    std::lock_guard<std::mutex> lock(mutex_);
    context_ = nullptr;
    return received > 0;
  }

  void WriteRequests(Stream& stream, grpc::ClientContext& context) {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      io_cv_.wait(lock, [this] { return has_pending_ || stream_broken_ || closed_; });
      if (closed_ || stream_broken_) break;
      auto* observation = request_.mutable_observation();
      observation->Resize(static_cast<int>(pending_size_), 0.0F);  // within the reserved capacity
      if (pending_size_ > 0) {
        std::memcpy(observation->mutable_data(), pending_observation_.data(),
                    pending_size_ * sizeof(float));
      }
      request_.set_sequence(pending_sequence_);
      request_.set_client_time_ns(pending_time_ns_);
      request_.set_reset_rate_limit(pending_reset_);
      has_pending_ = false;
      lock.unlock();
      const bool written = stream.Write(request_);
      lock.lock();
      if (!written) {
        // The call is over; the reader sees it end and collects the status. Give it a
        // moment before cancelling (a cancel would replace the real status).
        io_cv_.wait_for(lock, kWriteFailureGrace, [this] { return stream_broken_ || closed_; });
        break;
      }
    }
    if (!stream_broken_) context.TryCancel();  // closing, or the reader is stuck: end the call
  }

  // --- reader thread -----------------------------------------------------------------------
  // Returns how many messages the stream carried.
  std::uint64_t ReadAnswers(Stream& stream) noexcept {
    NameThread("sim2real-read");
    std::uint64_t received = 0;
    try {
      while (stream.Read(&response_)) {
        ++received;
        Deliver();
      }
      const grpc::Status status = stream.Finish();
      std::lock_guard<std::mutex> lock(mutex_);
      if (closed_) {  // our own cancel: not a failure worth reporting
        connected_ = false;
        connected_flag_.store(false, std::memory_order_relaxed);
      } else {
        SetDisconnectedLocked(static_cast<int>(status.error_code()),
                              status.ok() ? "stream closed by the server" : Describe(status));
      }
      stream_broken_ = true;
    } catch (const std::exception& err) {
      std::lock_guard<std::mutex> lock(mutex_);
      SetDisconnectedLocked(13, std::string("client error: ") + err.what());
      stream_broken_ = true;
    }
    io_cv_.notify_all();
    return received;
  }

  void Deliver() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (waiting_sequence_ == 0 || response_.sequence() != waiting_sequence_) return;  // late
    answer_has_error_ = response_.has_error();
    if (answer_has_error_) {
      answer_error_code_ = response_.error().code();
      const std::string& message = response_.error().message();
      const std::size_t n = std::min(message.size(), answer_error_.size() - 1);
      std::memcpy(answer_error_.data(), message.data(), n);
      answer_error_[n] = '\0';
    } else {
      answer_size_ = static_cast<std::size_t>(response_.action_size());
      if (answer_size_ == action_dim_) {
        std::memcpy(answer_action_.data(), response_.action().data(), action_dim_ * sizeof(float));
      }
      answer_compute_ns_ = response_.server_compute_ns();
      answer_version_ = response_.model_version();
      answer_clamped_ = response_.clamped();
      answer_rate_limited_ = response_.rate_limited();
    }
    answered_ = true;
    step_cv_.notify_all();
  }

  void SetDisconnected(int code, const std::string& error) {
    std::lock_guard<std::mutex> lock(mutex_);
    SetDisconnectedLocked(code, error);
  }

  void SetDisconnectedLocked(int code, const std::string& error) {
    last_code_ = code;
    last_error_.assign(error);
    connected_ = false;
    connected_flag_.store(false, std::memory_order_relaxed);
    step_cv_.notify_all();
  }

  const std::shared_ptr<const PolicyClient::Shared> shared_;
  const SessionOptions options_;
  const PolicyInfo info_;
  std::vector<float> default_action_;
  std::size_t action_dim_ = 0;
  std::size_t observation_capacity_ = 0;

  // Control thread only.
  std::uint64_t sequence_ = 0;
  std::vector<float> last_action_;

  // Session thread only (reused for every request).
  v1::ActRequest request_;
  // Reader thread only (one stream at a time).
  v1::ActResponse response_;

  mutable std::mutex mutex_;
  std::condition_variable io_cv_;    // the session thread waits: request, broken stream, close
  std::condition_variable step_cv_;  // Step / WaitConnected wait: answer, (dis)connect, close
  // Guarded by mutex_.
  bool closed_ = false;
  bool connected_ = false;
  bool stream_broken_ = false;
  grpc::ClientContext* context_ = nullptr;
  int last_code_ = 0;
  std::string last_error_;
  // The request slot (control thread -> session thread).
  std::vector<float> pending_observation_;
  std::size_t pending_size_ = 0;
  std::uint64_t pending_sequence_ = 0;
  std::int64_t pending_time_ns_ = 0;
  bool pending_reset_ = false;
  bool has_pending_ = false;
  // The answer slot (reader thread -> control thread).
  std::uint64_t waiting_sequence_ = 0;
  bool answered_ = false;
  bool answer_has_error_ = false;
  int answer_error_code_ = 0;
  std::array<char, kErrorCapacity> answer_error_{};
  std::vector<float> answer_action_;
  std::size_t answer_size_ = 0;
  std::int64_t answer_compute_ns_ = 0;
  std::int64_t answer_version_ = 0;
  bool answer_clamped_ = false;
  bool answer_rate_limited_ = false;

  std::atomic<bool> connected_flag_{false};
  std::atomic<std::uint64_t> steps_{0}, actions_{0}, fallbacks_{0}, deadline_misses_{0},
      server_errors_{0}, disconnected_{0}, reconnects_{0};

  std::thread session_thread_;  // last: started after everything above exists
};

namespace {

SessionOptions Checked(SessionOptions options) {
  if (options.deadline.count() <= 0) {
    throw std::invalid_argument("deadline: expected > 0 ns, got " +
                                std::to_string(options.deadline.count()) + " ns");
  }
  if (options.initial_backoff.count() <= 0 || options.max_backoff < options.initial_backoff) {
    throw std::invalid_argument(
        "initial_backoff/max_backoff: expected 0 < initial_backoff <= max_backoff, got " +
        std::to_string(options.initial_backoff.count()) + " ms and " +
        std::to_string(options.max_backoff.count()) + " ms");
  }
  if (options.fallback != Fallback::kHold && options.fallback != Fallback::kDefault) {
    throw std::invalid_argument("fallback: expected Fallback::kHold or Fallback::kDefault, got " +
                                std::to_string(static_cast<int>(options.fallback)));
  }
  return options;
}

}  // namespace

ControlSession::ControlSession(const PolicyClient& client, SessionOptions options) {
  options = Checked(std::move(options));
  PolicyInfo info;
  if (options.default_action.empty()) {
    info = client.Info(options.model_name);
    if (info.action_dim <= 0) {
      throw std::invalid_argument("GetPolicyInfo action_dim: expected > 0, got " +
                                  std::to_string(info.action_dim));
    }
  }
  std::chrono::nanoseconds wait = options.connect_wait;
  if (wait.count() < 0) {
    wait = std::max<std::chrono::nanoseconds>(options.deadline, std::chrono::milliseconds(500));
  }
  impl_ = std::make_unique<Impl>(client.shared(), std::move(options), std::move(info));
  if (wait.count() > 0) impl_->WaitConnected(wait);
}

ControlSession::~ControlSession() = default;
ControlSession::ControlSession(ControlSession&&) noexcept = default;
ControlSession& ControlSession::operator=(ControlSession&&) noexcept = default;

StepResult ControlSession::Step(const float* observation, std::size_t observation_size,
                                float* action, std::size_t action_size,
                                bool reset_rate_limit) noexcept {
  if (!impl_) {
    StepResult result;
    result.status = StepStatus::kClosed;
    result.fallback = true;
    std::snprintf(result.reason.data(), result.reason.size(), "session moved from");
    return result;
  }
  return impl_->Step(observation, observation_size, action, action_size, reset_rate_limit);
}

bool ControlSession::WaitConnected(std::chrono::nanoseconds timeout) const {
  return impl_ && impl_->WaitConnected(timeout);
}
bool ControlSession::connected() const noexcept { return impl_ && impl_->connected(); }
SessionStats ControlSession::stats() const noexcept { return impl_ ? impl_->stats() : SessionStats{}; }
std::string ControlSession::last_error() const { return impl_ ? impl_->last_error() : std::string(); }
std::size_t ControlSession::action_dim() const noexcept { return impl_ ? impl_->action_dim() : 0; }
std::size_t ControlSession::observation_capacity() const noexcept {
  return impl_ ? impl_->observation_capacity() : 0;
}
const PolicyInfo& ControlSession::info() const noexcept {
  static const PolicyInfo kEmpty;
  return impl_ ? impl_->info() : kEmpty;
}
const std::vector<float>& ControlSession::default_action() const noexcept {
  static const std::vector<float> kEmpty;
  return impl_ ? impl_->default_action() : kEmpty;
}
void ControlSession::Close() noexcept {
  if (impl_) impl_->Close();
}

}  // namespace sim2real
