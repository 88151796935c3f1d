// Library-internal: what PolicyClient shares with its sessions, and small helpers.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "sim2real/client.h"
#include "sim2real/v1/policy.grpc.pb.h"

namespace sim2real {

struct PolicyClient::Shared {
  ClientOptions options;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::PolicyService::Stub> stub;  // thread-safe; used by unary calls
  std::string authorization;                      // "Bearer <token>", empty when no token

  // Per-call metadata (the bearer token).
  void Prepare(grpc::ClientContext& context) const;
};

namespace internal {

// A CallError from a failed grpc::Status, with the google.rpc.BadRequest field violations
// decoded from its error details.
CallError ToCallError(const grpc::Status& status);

// Decodes google.rpc.Status bytes (grpc-status-details-bin) into BadRequest field
// violations; an empty list when the bytes are not that (a server that is not ours).
std::vector<FieldViolation> DecodeFieldViolations(const std::string& status_bytes);

PolicyInfo FromProto(const v1::PolicyInfo& proto);

}  // namespace internal
}  // namespace sim2real
