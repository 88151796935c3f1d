// Test driver for tests/clients/test_cpp_client.py: runs the library against a real
// `sim2real serve` and prints what happened as JSON lines for pytest to check.
//
//   sim2real_client_test info    [client options]
//   sim2real_client_test act     --obs-file F [--session] [--deadline-ms MS] [client options]
//       F: one observation per line (whitespace-separated floats; lines may differ in
//       length). Per line: the unary Act answer or error, and with --session the
//       ControlSession::Step result.
//   sim2real_client_test session --rate HZ --duration S --deadline-ms MS [--warmup N]
//       [--default-action a,b,c] [--fallback hold|default] [--obs-size N] [--bad-every K]
//       [client options]
//       (--bad-every K: every K-th observation has one value too many.)
//       One line per step (flushed), then a summary line. SIGTERM/SIGINT end it early.
//       Counts heap allocations made on this (the control) thread inside Step() after
//       the first --warmup steps: "control_thread_allocations" in the summary.
//
// client options: --address --token-file --tls-ca --tls-cert --tls-key --server-name --model
#include <time.h>

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
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "sim2real/client.h"

// ------------------------------------------------------------------------------------------
// Allocation counting: every heap allocation in this process goes through malloc & co.
// (libstdc++'s operator new calls malloc), so wrapping them here sees all of them, from
// our code, the standard library, gRPC and protobuf alike. Only allocations made on a
// thread that switched counting on are counted.
extern "C" {
void* __libc_malloc(std::size_t size);
void* __libc_calloc(std::size_t count, std::size_t size);
void* __libc_realloc(void* ptr, std::size_t size);
void* __libc_memalign(std::size_t alignment, std::size_t size);
}

namespace {
thread_local bool t_counting = false;  // static TLS of the executable: no allocation to read
std::atomic<unsigned long long> g_counted{0};
inline void Count() {
  if (t_counting) g_counted.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

extern "C" {
void* malloc(std::size_t size) {
  Count();
  return __libc_malloc(size);
}
void* calloc(std::size_t count, std::size_t size) {
  Count();
  return __libc_calloc(count, size);
}
void* realloc(void* ptr, std::size_t size) {
  Count();
  return __libc_realloc(ptr, size);
}
void* memalign(std::size_t alignment, std::size_t size) {
  Count();
  return __libc_memalign(alignment, size);
}
void* aligned_alloc(std::size_t alignment, std::size_t size) {
  Count();
  return __libc_memalign(alignment, size);
}
int posix_memalign(void** out, std::size_t alignment, std::size_t size) {
  Count();
  void* p = __libc_memalign(alignment, size);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}
}

namespace {

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }

using Flags = std::map<std::string, std::string>;

Flags ParseFlags(int argc, char** argv, int first) {
  Flags flags;
  for (int i = first; i < argc; ++i) {
    std::string key = argv[i];
    if (key.rfind("--", 0) != 0) throw std::invalid_argument("expected --flag, got '" + key + "'");
    if (key == "--session") {
      flags[key] = "1";
    } else if (i + 1 < argc) {
      flags[key] = argv[++i];
    } else {
      throw std::invalid_argument(key + ": expected a value after it");
    }
  }
  return flags;
}

std::string Get(const Flags& flags, const std::string& key, const std::string& fallback = "") {
  auto it = flags.find(key);
  return it == flags.end() ? fallback : it->second;
}

std::string FirstLine(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument("--token-file " + path + ": cannot read it");
  std::string line;
  std::getline(in, line);
  while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
  return line;
}

sim2real::ClientOptions ClientFrom(const Flags& flags) {
  sim2real::ClientOptions options;
  options.address = Get(flags, "--address", options.address);
  if (flags.count("--token-file")) options.token = FirstLine(Get(flags, "--token-file"));
  options.tls_ca_file = Get(flags, "--tls-ca");
  options.tls_cert_file = Get(flags, "--tls-cert");
  options.tls_key_file = Get(flags, "--tls-key");
  options.server_name = Get(flags, "--server-name");
  options.timeout = std::chrono::milliseconds(5000);
  return options;
}

std::string Quote(const std::string& text) {
  std::string out = "\"";
  for (const char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string Floats(const float* values, std::size_t n) {
  std::string out = "[";
  char buf[32];
  for (std::size_t i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof(buf), "%s%.9g", i ? ", " : "", static_cast<double>(values[i]));
    out += buf;
  }
  return out + "]";
}

std::string Strings(const std::vector<std::string>& values) {
  std::string out = "[";
  for (std::size_t i = 0; i < values.size(); ++i) out += (i ? ", " : "") + Quote(values[i]);
  return out + "]";
}

std::string ErrorJson(const sim2real::CallError& err) {
  std::string violations = "[";
  for (std::size_t i = 0; i < err.field_violations().size(); ++i) {
    const auto& v = err.field_violations()[i];
    violations += (i ? ", " : "") + std::string("{\"field\": ") + Quote(v.field) +
                  ", \"description\": " + Quote(v.description) + "}";
  }
  violations += "]";
  return "{\"code\": " + std::to_string(err.code()) + ", \"code_name\": " + Quote(err.code_name()) +
         ", \"message\": " + Quote(err.message()) + ", \"field_violations\": " + violations + "}";
}

std::string StepJson(const sim2real::StepResult& r, const float* action, std::size_t n) {
  char head[160];
  std::snprintf(head, sizeof(head),
                "{\"seq\": %llu, \"status\": \"%s\", \"fallback\": %s, \"error_code\": %d, "
                "\"latency_us\": %.3f, \"model_version\": %lld, ",
                static_cast<unsigned long long>(r.sequence), sim2real::StepStatusName(r.status),
                r.fallback ? "true" : "false", r.error_code,
                std::chrono::duration<double, std::micro>(r.latency).count(),
                static_cast<long long>(r.model_version));
  return head + std::string("\"reason\": ") + Quote(r.reason_c_str()) +
         ", \"action\": " + (action ? Floats(action, n) : "null") + "}";
}

void Print(const std::string& line) {
  std::fputs(line.c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

int Info(const Flags& flags) {
  sim2real::PolicyClient client(ClientFrom(flags));
  try {
    const sim2real::PolicyInfo info = client.Info(Get(flags, "--model"));
    Print("{\"info\": {\"model_name\": " + Quote(info.model_name) +
          ", \"model_version\": " + std::to_string(info.model_version) +
          ", \"observation_dim\": " + std::to_string(info.observation_dim) +
          ", \"action_dim\": " + std::to_string(info.action_dim) +
          ", \"action_names\": " + Strings(info.action_names) +
          ", \"action_scale\": " + Floats(info.action_scale.data(), info.action_scale.size()) +
          ", \"action_offset\": " + Floats(info.action_offset.data(), info.action_offset.size()) +
          ", \"control_rate_hz\": " + std::to_string(info.control_rate_hz) +
          ", \"env_id\": " + Quote(info.env_id) +
          ", \"execution_provider\": " + Quote(info.execution_provider) +
          ", \"metadata_keys\": " + std::to_string(info.metadata.size()) + "}}");
  } catch (const sim2real::CallError& err) {
    Print("{\"error\": " + ErrorJson(err) + "}");
  }
  return 0;
}

std::vector<std::vector<float>> ReadRows(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument("--obs-file " + path + ": cannot read it");
  std::vector<std::vector<float>> rows;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::vector<float> row;
    for (double value; fields >> value;) row.push_back(static_cast<float>(value));
    rows.push_back(std::move(row));
  }
  return rows;
}

int Act(const Flags& flags) {
  sim2real::PolicyClient client(ClientFrom(flags));
  const std::string model = Get(flags, "--model");
  const auto rows = ReadRows(Get(flags, "--obs-file"));
  std::unique_ptr<sim2real::ControlSession> session;
  if (flags.count("--session")) {
    sim2real::SessionOptions options;
    options.deadline = std::chrono::microseconds(
        std::llround(std::stod(Get(flags, "--deadline-ms", "1000")) * 1000.0));
    options.model_name = model;
    options.connect_wait = std::chrono::seconds(10);
    try {
      session = std::make_unique<sim2real::ControlSession>(client, options);
    } catch (const sim2real::CallError& err) {
      Print("{\"session_error\": " + ErrorJson(err) + "}");
    }
  }
  std::vector<float> action(session ? session->action_dim() : 0);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    std::string line = "{\"row\": " + std::to_string(i) + ", \"unary\": ";
    try {
      const sim2real::ActResult r = client.Act(rows[i], model);
      line += "{\"action\": " + Floats(r.action.data(), r.action.size()) +
              ", \"model_name\": " + Quote(r.model_name) + "}";
    } catch (const sim2real::CallError& err) {
      line += "{\"error\": " + ErrorJson(err) + "}";
    }
    if (session) {
      const sim2real::StepResult r = session->Step(rows[i], action);
      line += ", \"stream\": " + StepJson(r, action.data(), action.size());
    }
    Print(line + "}");
  }
  if (session) Print("{\"last_error\": " + Quote(session->last_error()) + "}");
  return 0;
}

std::vector<float> ParseList(const std::string& text) {
  std::vector<float> out;
  std::istringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) out.push_back(std::stof(item));
  return out;
}

int Session(const Flags& flags) {
  sim2real::PolicyClient client(ClientFrom(flags));
  sim2real::SessionOptions options;
  options.deadline = std::chrono::microseconds(
      std::llround(std::stod(Get(flags, "--deadline-ms", "20")) * 1000.0));
  options.model_name = Get(flags, "--model");
  options.default_action = ParseList(Get(flags, "--default-action"));
  options.fallback = Get(flags, "--fallback", "hold") == "default" ? sim2real::Fallback::kDefault
                                                                   : sim2real::Fallback::kHold;
  options.observation_capacity = 64;
  const double rate = std::stod(Get(flags, "--rate", "100"));
  const double duration = std::stod(Get(flags, "--duration", "5"));
  const long warmup = std::stol(Get(flags, "--warmup", "20"));
  const auto obs_size = static_cast<std::size_t>(std::stol(Get(flags, "--obs-size", "6")));
  const long bad_every = std::stol(Get(flags, "--bad-every", "0"));  // one value too many
  sim2real::ControlSession session(client, options);

  std::vector<float> observation(obs_size + 1, 0.0F), action(session.action_dim(), 0.0F);
  const auto period = std::chrono::nanoseconds(std::llround(1e9 / rate));
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(duration);
  timespec next{};
  clock_gettime(CLOCK_MONOTONIC, &next);
  long step = 0;
  double max_latency_us = 0.0;
  while (!g_stop.load() && std::chrono::steady_clock::now() < end) {
    for (std::size_t i = 0; i < obs_size; ++i) {
      observation[i] = static_cast<float>(std::sin(0.05 * static_cast<double>(step + i)));
    }
    const bool bad = bad_every > 0 && step % bad_every == bad_every - 1;
    t_counting = step >= warmup;
    const sim2real::StepResult r =
        session.Step(observation.data(), obs_size + (bad ? 1 : 0), action.data(), action.size());
    t_counting = false;
    max_latency_us = std::max(max_latency_us, std::chrono::duration<double, std::micro>(r.latency).count());
    Print(StepJson(r, action.data(), action.size()));
    ++step;
    next.tv_nsec += static_cast<long>(period.count());
    while (next.tv_nsec >= 1000000000L) {
      next.tv_nsec -= 1000000000L;
      ++next.tv_sec;
    }
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, nullptr) == EINTR && !g_stop) {
    }
  }
  const sim2real::SessionStats s = session.stats();
  const std::string last_error = session.last_error();
  session.Close();
  char buf[512];
  std::snprintf(buf, sizeof(buf),
                "{\"summary\": {\"steps\": %llu, \"actions\": %llu, \"fallbacks\": %llu, "
                "\"deadline_misses\": %llu, \"server_errors\": %llu, \"disconnected\": %llu, "
                "\"reconnects\": %llu, \"max_latency_us\": %.3f, \"warmup\": %ld, "
                "\"control_thread_allocations\": %llu, ",
                static_cast<unsigned long long>(s.steps), static_cast<unsigned long long>(s.actions),
                static_cast<unsigned long long>(s.fallbacks),
                static_cast<unsigned long long>(s.deadline_misses),
                static_cast<unsigned long long>(s.server_errors),
                static_cast<unsigned long long>(s.disconnected),
                static_cast<unsigned long long>(s.reconnects), max_latency_us, warmup,
                g_counted.load());
  Print(buf + std::string("\"last_error\": ") + Quote(last_error) + "}}");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  if (argc < 2) {
    std::fprintf(stderr, "usage: sim2real_client_test info|act|session [options]\n");
    return 2;
  }
  try {
    const std::string command = argv[1];
    const Flags flags = ParseFlags(argc, argv, 2);
    if (command == "info") return Info(flags);
    if (command == "act") return Act(flags);
    if (command == "session") return Session(flags);
    throw std::invalid_argument("command: expected info, act or session, got '" + command + "'");
  } catch (const sim2real::CallError& err) {
    Print("{\"error\": " + ErrorJson(err) + "}");
    return 1;
  } catch (const std::exception& err) {
    std::fprintf(stderr, "error: %s\n", err.what());
    return 2;
  }
}
