package io.valkeysessions.client;

import io.grpc.Status;

/** NOT_FOUND: the session does not exist, expired or was deleted. */
public class SessionNotFoundException extends SessionException {
  public SessionNotFoundException(String message, Throwable cause) {
    super(Status.Code.NOT_FOUND, message, cause);
  }
}
