package io.valkeysessions.client;

import io.grpc.Status;

/** The service answered with a non-OK gRPC status; {@link #code()} says which. */
public class SessionException extends RuntimeException {
  private final Status.Code code;

  public SessionException(Status.Code code, String message, Throwable cause) {
    super(code + ": " + message, cause);
    this.code = code;
  }

  /** The gRPC status code (INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNAVAILABLE, ...). */
  public Status.Code code() {
    return code;
  }
}
