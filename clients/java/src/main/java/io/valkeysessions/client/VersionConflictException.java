package io.valkeysessions.client;

import io.grpc.Status;
import java.util.OptionalLong;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** ABORTED: the Put's expected version was stale. Re-read the session and retry. */
public class VersionConflictException extends SessionException {
  private static final Pattern CURRENT = Pattern.compile("current version is (\\d+)");
  private final OptionalLong currentVersion;

  public VersionConflictException(String message, Throwable cause) {
    super(Status.Code.ABORTED, message, cause);
    Matcher m = CURRENT.matcher(message == null ? "" : message);
    this.currentVersion = m.find() ? OptionalLong.of(Long.parseUnsignedLong(m.group(1))) : OptionalLong.empty();
  }

  /** The stored version, parsed from the status message; empty if the message has none. */
  public OptionalLong currentVersion() {
    return currentVersion;
  }
}
