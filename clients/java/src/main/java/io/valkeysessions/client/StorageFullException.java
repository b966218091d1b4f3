package io.valkeysessions.client;

import io.grpc.Status;

/**
 * RESOURCE_EXHAUSTED with the ErrorInfo reason {@code VALKEY_OUT_OF_MEMORY}: Valkey is at its
 * memory limit and refused the write. Nothing was written and reads keep working; an application
 * answers 503 and leaves the user's session as it is.
 */
public class StorageFullException extends SessionException {
  public StorageFullException(String message, Throwable cause) {
    super(Status.Code.RESOURCE_EXHAUSTED, message, cause);
  }
}
