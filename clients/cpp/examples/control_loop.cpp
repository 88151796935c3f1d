// A robot-style control loop against `sim2real serve`: fixed rate, paced with
// clock_nanosleep(TIMER_ABSTIME) on CLOCK_MONOTONIC (no drift: each tick is the previous
// tick plus one period, not "now plus one period"), one ControlSession::Step per tick.
// Prints p50/p99/max round trip, deadline misses, fallbacks and loop overruns.
//
//   control_loop --address 127.0.0.1:50051 --rate 500 --duration 10
//   control_loop --address unix:/run/sim2real.sock --deadline-ms 1.0 --rt-priority 80
//   control_loop --address robot-pc:50051 --token-file token.txt --tls-ca ca.pem
//       --tls-cert robot.crt --tls-key robot.key          (one command line)
//
// For benchmarks/serve_latency.py, which runs one process per simulated robot: --max-rate
// (closed loop, no pacing), --warmup (steps not counted), --start-at (a shared start on
// CLOCK_MONOTONIC, so that N processes tick together, each at its own phase) and
// --latencies-out (every answered round trip, for percentiles over all the robots).
#include <sched.h>
#include <sys/mman.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "sim2real/client.h"

namespace {

std::atomic<bool> g_stop{false};

void OnSignal(int) { g_stop.store(true); }

const char kUsage[] =
    "usage: control_loop [options]\n"
    "  --address TARGET     host:port or unix:/path (default 127.0.0.1:50051)\n"
    "  --token-file PATH    bearer token, first line (default: $SIM2REAL_TOKEN if set)\n"
    "  --tls-ca PEM         CA of the server's certificate (enables TLS)\n"
    "  --tls-cert PEM       client certificate (mutual TLS; needs --tls-key)\n"
    "  --tls-key PEM        client private key\n"
    "  --server-name NAME   TLS name to check the server's certificate against\n"
    "  --model NAME         model in the server's repository (default: its default model)\n"
    "  --rate HZ            loop rate (default 500)\n"
    "  --duration S         seconds to run (default 5; Ctrl-C stops early)\n"
    "  --deadline-ms MS     per-step deadline (default: 75% of the period; 100 with --max-rate)\n"
    "  --obs-size N         observation length (default: GetPolicyInfo's observation_dim)\n"
    "  --fallback MODE      hold (last good action) or default (zeros = default pose)\n"
    "  --rt-priority P      run the loop SCHED_FIFO at priority P with memory locked\n"
    "  --max-rate           no pacing: the next step as soon as the last returned\n"
    "                       (closed loop; --rate is then unused)\n"
    "  --warmup S           run S seconds before counting (default 0)\n"
    "  --start-at NS        first tick at this CLOCK_MONOTONIC time in ns (default: now)\n"
    "  --latencies-out F    write each answered step's round trip (us), one per line\n"
    "  --timeout-ms MS      how long the start-up GetPolicyInfo may take, retried while the server is\n"
    "                       unavailable (a server still starting, or too busy to finish the\n"
    "                       connection handshake in time; default 1000)\n"
    "  --json               also print the summary as one JSON line\n";

struct Args {
  sim2real::ClientOptions client;
  std::string model;
  double rate_hz = 500.0;
  double duration_s = 5.0;
  double deadline_ms = -1.0;
  long obs_size = -1;
  sim2real::Fallback fallback = sim2real::Fallback::kHold;
  int rt_priority = 0;
  bool json = false;
  bool max_rate = false;
  double warmup_s = 0.0;
  long long start_at_ns = -1;
  std::string latencies_out;
};

double ParseNumber(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  errno = 0;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || errno != 0 || !std::isfinite(value)) {
    throw std::invalid_argument(flag + ": expected a number, got '" + text + "'");
  }
  return value;
}

std::string FirstLine(const std::string& flag, const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument(flag + " " + path + ": cannot read it");
  std::string line;
  std::getline(in, line);
  while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
  if (line.empty()) throw std::invalid_argument(flag + " " + path + ": the file is empty");
  return line;
}

Args Parse(int argc, char** argv) {
  Args args;
  if (const char* token = std::getenv("SIM2REAL_TOKEN")) args.client.token = token;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (flag == "--json") {
      args.json = true;
      continue;
    }
    if (flag == "--max-rate") {
      args.max_rate = true;
      continue;
    }
    if (i + 1 >= argc) throw std::invalid_argument(flag + ": expected a value after it");
    const std::string value = argv[++i];
    if (flag == "--address") {
      args.client.address = value;
    } else if (flag == "--token-file") {
      args.client.token = FirstLine(flag, value);
    } else if (flag == "--tls-ca") {
      args.client.tls_ca_file = value;
    } else if (flag == "--tls-cert") {
      args.client.tls_cert_file = value;
    } else if (flag == "--tls-key") {
      args.client.tls_key_file = value;
    } else if (flag == "--server-name") {
      args.client.server_name = value;
    } else if (flag == "--model") {
      args.model = value;
    } else if (flag == "--rate") {
      args.rate_hz = ParseNumber(flag, value);
      if (args.rate_hz <= 0 || args.rate_hz > 100000) {
        throw std::invalid_argument("--rate: expected 0 < HZ <= 100000, got " + value);
      }
    } else if (flag == "--duration") {
      args.duration_s = ParseNumber(flag, value);
      if (args.duration_s <= 0) throw std::invalid_argument("--duration: expected > 0 s, got " + value);
    } else if (flag == "--timeout-ms") {
      const double ms = ParseNumber(flag, value);
      if (ms <= 0 || ms > 3.6e6) throw std::invalid_argument("--timeout-ms: expected 0 < MS <= 3600000, got " + value);
      args.client.timeout = std::chrono::milliseconds(static_cast<long long>(std::ceil(ms)));
    } else if (flag == "--deadline-ms") {
      args.deadline_ms = ParseNumber(flag, value);
      if (args.deadline_ms <= 0) throw std::invalid_argument("--deadline-ms: expected > 0, got " + value);
    } else if (flag == "--obs-size") {
      const double n = ParseNumber(flag, value);
      if (n < 0 || n != std::floor(n)) {
        throw std::invalid_argument("--obs-size: expected a whole number >= 0, got " + value);
      }
      args.obs_size = static_cast<long>(n);
    } else if (flag == "--fallback") {
      if (value == "hold") {
        args.fallback = sim2real::Fallback::kHold;
      } else if (value == "default") {
        args.fallback = sim2real::Fallback::kDefault;
      } else {
        throw std::invalid_argument("--fallback: expected 'hold' or 'default', got '" + value + "'");
      }
    } else if (flag == "--warmup") {
      args.warmup_s = ParseNumber(flag, value);
      if (args.warmup_s < 0) throw std::invalid_argument("--warmup: expected >= 0 s, got " + value);
    } else if (flag == "--start-at") {
      const double ns = ParseNumber(flag, value);
      if (ns < 0 || ns != std::floor(ns)) {
        throw std::invalid_argument("--start-at: expected a CLOCK_MONOTONIC time in whole ns, got " + value);
      }
      args.start_at_ns = static_cast<long long>(ns);
    } else if (flag == "--latencies-out") {
      args.latencies_out = value;
    } else if (flag == "--rt-priority") {
      args.rt_priority = static_cast<int>(ParseNumber(flag, value));
    } else {
      throw std::invalid_argument("unknown option " + flag + " (see --help)");
    }
  }
  return args;
}

// Best effort: a real-time thread with its memory locked (needs CAP_SYS_NICE / rtprio limits).
void TryRealtime(int priority) {
  if (mlockall(MCL_CURRENT | MCL_FUTURE) != 0) {
    std::fprintf(stderr, "warning: mlockall failed (%s); memory may page\n", std::strerror(errno));
  }
  sched_param param{};
  param.sched_priority = priority;
  if (sched_setscheduler(0, SCHED_FIFO, &param) != 0) {
    std::fprintf(stderr, "warning: SCHED_FIFO priority %d refused (%s); running SCHED_OTHER\n",
                 priority, std::strerror(errno));
  }
}

void AddNanos(timespec& t, long long ns) {
  t.tv_sec += static_cast<time_t>(ns / 1000000000LL);
  t.tv_nsec += static_cast<long>(ns % 1000000000LL);
  if (t.tv_nsec >= 1000000000L) {
    t.tv_nsec -= 1000000000L;
    ++t.tv_sec;
  }
}

bool Later(const timespec& a, const timespec& b) {
  return a.tv_sec > b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec > b.tv_nsec);
}

// Percentile of sorted microsecond values (nearest rank); 0 when empty.
double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0.0;
  const auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * sorted.size()));
  return sorted[std::min(sorted.size() - 1, rank == 0 ? 0 : rank - 1)];
}

long long MonotonicNanos() {
  timespec t{};
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<long long>(t.tv_sec) * 1000000000LL + t.tv_nsec;
}

timespec FromNanos(long long ns) {
  timespec t{};
  t.tv_sec = static_cast<time_t>(ns / 1000000000LL);
  t.tv_nsec = static_cast<long>(ns % 1000000000LL);
  return t;
}

void SleepUntil(const timespec& when) {
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &when, nullptr) == EINTR) {
    if (g_stop.load()) break;
  }
}

// GetPolicyInfo, retried while the server is UNAVAILABLE until the client's timeout has
// passed. One call alone can fail within ~50 ms: gRPC gives a connection attempt the
// client's minimum reconnect backoff (50 ms, for quick reconnects) to finish its handshake,
// which a server busy with other robots, or a machine starting 32 of these at once, can
// miss. Other errors (TLS, token, unknown model) are final at once.
sim2real::PolicyInfo InfoWithin(const sim2real::PolicyClient& client, const std::string& model,
                                std::chrono::milliseconds timeout) {
  const auto give_up = std::chrono::steady_clock::now() + timeout;
  while (true) {
    try {
      return client.Info(model);
    } catch (const sim2real::CallError& err) {
      constexpr int kUnavailable = 14;
      if (err.code() != kUnavailable || std::chrono::steady_clock::now() + std::chrono::milliseconds(50) >= give_up) {
        throw;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
}

int Run(const Args& args) {
  sim2real::PolicyClient client(args.client);
  const sim2real::PolicyInfo info = InfoWithin(client, args.model, args.client.timeout);
  const std::size_t obs_size =
      args.obs_size >= 0 ? static_cast<std::size_t>(args.obs_size)
                         : static_cast<std::size_t>(info.observation_dim);
  const bool paced = !args.max_rate;
  const long long period_ns = paced ? std::llround(1e9 / args.rate_hz) : 0;
  // Closed loop there is no period to take a share of: a generous default, so that every
  // answer is measured rather than dropped as late.
  const double deadline_ms =
      args.deadline_ms > 0 ? args.deadline_ms : (paced ? 0.75 * period_ns * 1e-6 : 100.0);

  sim2real::SessionOptions options;
  options.deadline = std::chrono::nanoseconds(std::llround(deadline_ms * 1e6));
  options.fallback = args.fallback;
  options.model_name = args.model;
  options.observation_capacity = std::max<std::size_t>(obs_size, 1024);
  if (args.rt_priority > 0) TryRealtime(args.rt_priority);  // the session's threads inherit it
  sim2real::ControlSession session(client, options);

  // Paced: a fixed number of ticks. Closed loop: until the time is up.
  const auto warmup_steps = static_cast<std::size_t>(std::llround(args.warmup_s * args.rate_hz));
  const auto steps = static_cast<std::size_t>(std::llround((args.warmup_s + args.duration_s) * args.rate_hz));
  char rate_text[32];
  std::snprintf(rate_text, sizeof(rate_text), paced ? "%.0f Hz" : "max rate", args.rate_hz);
  std::printf("control_loop: %s model %s v%lld (%d obs -> %d actions, %s), %s for %.1f s, "
              "deadline %.2f ms, observation of %zu values\n",
              args.client.address.c_str(), info.model_name.c_str(),
              static_cast<long long>(info.model_version), info.observation_dim, info.action_dim,
              info.execution_provider.c_str(), rate_text, args.duration_s, deadline_ms, obs_size);
  std::fflush(stdout);

  // Everything the paced loop touches is allocated before it starts (closed loop, the
  // vectors may grow: it is a load generator, not a real-time loop).
  const std::size_t expected = paced ? steps : static_cast<std::size_t>(args.duration_s * 20000.0);
  std::vector<float> observation(obs_size, 0.0F);
  std::vector<float> action(session.action_dim(), 0.0F);
  std::vector<double> round_trip_us;
  round_trip_us.reserve(expected);
  std::vector<double> step_us;
  step_us.reserve(expected);
  std::size_t done = 0, counted = 0, overruns = 0;
  char first_reason[sim2real::StepResult::kReasonCapacity] = "";

  long long start_ns = MonotonicNanos();
  if (args.start_at_ns >= 0) {
    if (args.start_at_ns < start_ns) {
      std::fprintf(stderr, "warning: --start-at is %.1f ms in the past; starting now\n",
                   (start_ns - args.start_at_ns) * 1e-6);
    } else {
      start_ns = args.start_at_ns;
    }
  }
  const long long measure_from_ns = start_ns + std::llround(args.warmup_s * 1e9);
  const long long end_ns = measure_from_ns + std::llround(args.duration_s * 1e9);
  sim2real::SessionStats baseline{};
  bool counting = false;
  long long measured_start_ns = 0;
  // Paced: tick k is at start + k periods. Closed loop: wait for the start once.
  timespec next = FromNanos(start_ns - period_ns);
  if (!paced) SleepUntil(FromNanos(start_ns));
  for (;; ++done) {
    if (g_stop.load(std::memory_order_relaxed)) break;
    if (paced) {
      if (done >= steps) break;
      AddNanos(next, period_ns);
      SleepUntil(next);
    } else if (MonotonicNanos() >= end_ns) {
      break;
    }
    if (!counting && (paced ? done >= warmup_steps : MonotonicNanos() >= measure_from_ns)) {
      counting = true;
      baseline = session.stats();
      measured_start_ns = MonotonicNanos();
    }
    const double t = static_cast<double>(done) * (paced ? 1.0 / args.rate_hz : 0.002);
    for (std::size_t i = 0; i < obs_size; ++i) {
      observation[i] = static_cast<float>(0.5 * std::sin(2.0 * M_PI * 0.5 * t + static_cast<double>(i)));
    }
    const sim2real::StepResult result = session.Step(observation, action);
    if (!counting) continue;
    ++counted;
    const double us = std::chrono::duration<double, std::micro>(result.latency).count();
    step_us.push_back(us);
    if (!result.fallback) {
      round_trip_us.push_back(us);
    } else if (first_reason[0] == '\0') {
      std::snprintf(first_reason, sizeof(first_reason), "%s", result.reason_c_str());
    }
    if (paced) {
      timespec now{};
      clock_gettime(CLOCK_MONOTONIC, &now);
      timespec tick_end = next;
      AddNanos(tick_end, period_ns);
      if (Later(now, tick_end)) ++overruns;  // this step ran into the next tick
    }
  }
  const double measured_s = counting ? (MonotonicNanos() - measured_start_ns) * 1e-9 : 0.0;
  sim2real::SessionStats stats = session.stats();
  session.Close();
  // Counters over the counted steps only (reconnects: the whole run).
  stats.actions -= baseline.actions;
  stats.fallbacks -= baseline.fallbacks;
  stats.deadline_misses -= baseline.deadline_misses;
  stats.server_errors -= baseline.server_errors;
  stats.disconnected -= baseline.disconnected;

  if (!args.latencies_out.empty()) {
    std::FILE* out = std::fopen(args.latencies_out.c_str(), "w");
    if (out == nullptr) {
      throw std::runtime_error("--latencies-out " + args.latencies_out + ": " + std::strerror(errno));
    }
    for (const double us : round_trip_us) std::fprintf(out, "%.3f\n", us);
    std::fclose(out);
  }
  std::sort(round_trip_us.begin(), round_trip_us.end());
  std::sort(step_us.begin(), step_us.end());
  const double p50 = Percentile(round_trip_us, 50), p99 = Percentile(round_trip_us, 99);
  const double p999 = Percentile(round_trip_us, 99.9);
  const double max = round_trip_us.empty() ? 0.0 : round_trip_us.back();
  std::printf("steps %zu  answered %llu  fallbacks %llu (deadline misses %llu, server errors %llu, "
              "disconnected %llu)  reconnects %llu  loop overruns %zu\n",
              counted, static_cast<unsigned long long>(stats.actions),
              static_cast<unsigned long long>(stats.fallbacks),
              static_cast<unsigned long long>(stats.deadline_misses),
              static_cast<unsigned long long>(stats.server_errors),
              static_cast<unsigned long long>(stats.disconnected),
              static_cast<unsigned long long>(stats.reconnects), overruns);
  std::printf("round trip (answered steps): p50 %.1f us  p99 %.1f us  p99.9 %.1f us  max %.1f us\n",
              p50, p99, p999, max);
  std::printf("step time (all steps):       p50 %.1f us  p99 %.1f us  max %.1f us\n",
              Percentile(step_us, 50), Percentile(step_us, 99), step_us.empty() ? 0.0 : step_us.back());
  if (first_reason[0] != '\0') std::printf("first fallback: %s\n", first_reason);
  if (args.json) {
    std::printf("{\"steps\": %zu, \"answered\": %llu, \"fallbacks\": %llu, \"deadline_misses\": %llu, "
                "\"server_errors\": %llu, \"disconnected\": %llu, \"reconnects\": %llu, \"overruns\": %zu, "
                "\"p50_us\": %.3f, \"p99_us\": %.3f, \"p999_us\": %.3f, \"max_us\": %.3f, "
                "\"deadline_ms\": %.3f, \"seconds\": %.6f}\n",
                counted, static_cast<unsigned long long>(stats.actions),
                static_cast<unsigned long long>(stats.fallbacks),
                static_cast<unsigned long long>(stats.deadline_misses),
                static_cast<unsigned long long>(stats.server_errors),
                static_cast<unsigned long long>(stats.disconnected),
                static_cast<unsigned long long>(stats.reconnects), overruns, p50, p99, p999, max,
                deadline_ms, measured_s);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  try {
    return Run(Parse(argc, argv));
  } catch (const sim2real::CallError& err) {
    std::fprintf(stderr, "error: %s\n", err.what());
    return 1;
  } catch (const std::exception& err) {
    std::fprintf(stderr, "error: %s\n", err.what());
    return 2;
  }
}
