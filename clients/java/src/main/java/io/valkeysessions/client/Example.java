package io.valkeysessions.client;

import com.google.protobuf.ByteString;
import io.valkeysessions.session.v1.Session;
import io.valkeysessions.session.v1.SessionInfo;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.TreeSet;

/** Example: one session's life. SESSION_SERVICE_ADDR=host:port bash clients/java/run.sh example */
public final class Example {
  public static void main(String[] args) {
    String address = System.getenv().getOrDefault("SESSION_SERVICE_ADDR", "127.0.0.1:50051");
    try (SessionClient client = new SessionClient(address)) {
      System.out.println("health: " + client.check("session.v1.SessionService"));

      Session session = client.create(Map.of("theme", ByteString.copyFromUtf8("dark")), "alice", Duration.ofMinutes(1));
      System.out.println("created session version " + session.getVersion() + ", expires "
          + java.time.Instant.ofEpochSecond(session.getExpiresAt().getSeconds()));

      Session read = client.get(session.getId());
      System.out.println("theme = " + read.getAttributesOrThrow("theme").toStringUtf8());

      Session updated = client.put(session.getId(), Map.of("cart", ByteString.copyFromUtf8("3 items")), List.of(),
          OptionalLong.of(read.getVersion()));
      System.out.println("put -> version " + updated.getVersion() + ", attributes "
          + String.join(",", new TreeSet<>(updated.getAttributesMap().keySet())));

      try {
        client.put(session.getId(), Map.of("cart", ByteString.copyFromUtf8("stale")), List.of(),
            OptionalLong.of(read.getVersion()));
      } catch (VersionConflictException e) {
        System.out.println("stale put rejected (ABORTED), current version " + e.currentVersion().orElse(-1));
      }

      // Login (or privilege change): a new id, the old one is NOT_FOUND from now on.
      Session rotated = client.rotate(session.getId(), OptionalLong.empty(), Optional.of("alice"));
      System.out.println("rotated to a new id, version " + rotated.getVersion());

      // Where alice is logged in: each session with a revocation handle (never its id).
      int n = 0;
      for (SessionInfo ignored : client.allSessions("alice", 0, List.of("theme"))) n++;
      System.out.println("alice has " + n + " session(s)");

      System.out.println("deleted: " + client.delete(rotated.getId()));
    }
  }
}
