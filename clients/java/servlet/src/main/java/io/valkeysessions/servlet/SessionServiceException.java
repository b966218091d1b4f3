package io.valkeysessions.servlet;

/**
 * The session service could not load or save this request's session (unreachable, failing, or
 * concurrent requests set one attribute to different values). {@link ValkeySessionFilter} turns
 * it into a {@code ServletException}: the container's error path (HTTP 500), never a new empty
 * session. The message never contains the session id.
 */
public class SessionServiceException extends RuntimeException {
  public SessionServiceException(String message, Throwable cause) {
    super(message, cause);
  }
}
