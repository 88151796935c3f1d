// The part of onnxruntime's C API the fast path calls, declared here because no package
// this project installs from (PyPI, Debian 12, npm) ships onnxruntime's C header, while
// the onnxruntime wheel the Python server already uses ships the library itself
// (onnxruntime/capi/libonnxruntime.so.*), which the front end opens with dlopen.
//
// The C API is one table of function pointers, OrtApi, reached through OrtGetApiBase()->
// GetApi(version). onnxruntime keeps that table append-only across releases (an entry
// never moves), which is what lets a program built against an older header run on a newer
// library; so an entry's position is a stable fact of the ABI. Each entry used here is
// named with its position; the ones between are not called and are only counted. The
// tests check every call against the Python onnxruntime (same actions, same errors), so a
// wrong position cannot pass unnoticed.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ort {

struct Status;
struct Env;
struct Session;
struct SessionOptions;
struct Value;
struct MemoryInfo;
struct RunOptions;

using StatusPtr = Status*;

// Enumerations, with the values the C API defines.
enum LoggingLevel : int { kLogVerbose = 0, kLogInfo = 1, kLogWarning = 2, kLogError = 3, kLogFatal = 4 };
enum GraphOptimizationLevel : int { kDisableAll = 0, kEnableBasic = 1, kEnableExtended = 2, kEnableAll = 99 };
enum ExecutionMode : int { kSequential = 0, kParallel = 1 };
enum AllocatorType : int { kDeviceAllocator = 0, kArenaAllocator = 1 };
enum MemType : int { kMemTypeDefault = 0 };
enum ElementType : int { kFloat = 1 };

// Positions in OrtApi (0-based), as the C API orders them.
enum Entry : std::size_t {
  kGetErrorMessage = 2,
  kCreateEnv = 3,
  kCreateSessionFromArray = 8,
  kRun = 9,
  kCreateSessionOptions = 10,
  kSetSessionExecutionMode = 13,
  kSetSessionGraphOptimizationLevel = 23,
  kSetIntraOpNumThreads = 24,
  kSetInterOpNumThreads = 25,
  kCreateTensorWithDataAsOrtValue = 49,
  kCreateCpuMemoryInfo = 69,
  kReleaseEnv = 92,
  kReleaseStatus = 93,
  kReleaseMemoryInfo = 94,
  kReleaseSession = 95,
  kReleaseValue = 96,
  kReleaseSessionOptions = 100,
  kEntriesUsed = 101,
};

// The function types of those entries (all use the platform's C calling convention on
// Linux; every call that can fail returns a Status*, null on success).
using GetErrorMessageFn = const char* (*)(const Status*);
using CreateEnvFn = StatusPtr (*)(LoggingLevel, const char* logid, Env** out);
using CreateSessionFromArrayFn = StatusPtr (*)(const Env*, const void* data, std::size_t size,
                                               const SessionOptions*, Session** out);
using RunFn = StatusPtr (*)(Session*, const RunOptions*, const char* const* input_names,
                            const Value* const* inputs, std::size_t input_count, const char* const* output_names,
                            std::size_t output_count, Value** outputs);
using CreateSessionOptionsFn = StatusPtr (*)(SessionOptions** out);
using SetExecutionModeFn = StatusPtr (*)(SessionOptions*, ExecutionMode);
using SetOptimizationLevelFn = StatusPtr (*)(SessionOptions*, GraphOptimizationLevel);
using SetThreadsFn = StatusPtr (*)(SessionOptions*, int);
using CreateTensorWithDataFn = StatusPtr (*)(const MemoryInfo*, void* data, std::size_t bytes, const std::int64_t* shape,
                                             std::size_t rank, ElementType, Value** out);
using CreateCpuMemoryInfoFn = StatusPtr (*)(AllocatorType, MemType, MemoryInfo** out);
template <typename T>
using ReleaseFn = void (*)(T*);

// OrtApiBase: the two entries of the library's entry point.
struct ApiBase {
  const void* (*GetApi)(std::uint32_t version);
  const char* (*GetVersionString)();
};
using GetApiBaseFn = const ApiBase* (*)();

// The API version asked for: the oldest that has every entry above (all date from the
// first C API); any newer library answers it.
constexpr std::uint32_t kApiVersion = 1;

// The libraries trusted with the positions above (OrtGetApiBase()->GetVersionString()):
// major version 1, no older than the onnxruntime the project installs (pyproject.toml,
// onnxruntime-gpu>=1.20). Anything else is refused by name before a call is made.
constexpr int kMajorVersion = 1;
constexpr int kMinMinorVersion = 20;

}  // namespace ort
