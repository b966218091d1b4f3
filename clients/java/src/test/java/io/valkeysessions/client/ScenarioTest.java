package io.valkeysessions.client;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import com.google.protobuf.ByteString;
import io.grpc.Context;
import io.grpc.Status;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import io.valkeysessions.session.v1.Session;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.OptionalLong;
import java.util.concurrent.TimeUnit;
import org.junit.After;
import org.junit.AfterClass;
import org.junit.BeforeClass;
import org.junit.Test;

/**
 * The cross-language scenario against a running service at SESSION_SERVICE_ADDR. Same steps as
 * clients/python/tests, clients/typescript and clients/go.
 */
public class ScenarioTest {
  private static SessionClient client;
  private static final byte[] BINARY = {0, 1, 2, (byte) 255};
  private final List<String> created = new ArrayList<>();

  @BeforeClass
  public static void connect() {
    String address = System.getenv("SESSION_SERVICE_ADDR");
    if (address == null || address.isEmpty()) {
      throw new IllegalStateException("set SESSION_SERVICE_ADDR=host:port of a running valkey-sessions");
    }
    client = new SessionClient(address);
  }

  @AfterClass
  public static void disconnect() {
    client.close();
  }

  @After
  public void cleanup() {
    for (String id : created) {
      try {
        client.delete(id);
      } catch (SessionException ignored) {
        // best effort
      }
    }
  }

  private static ByteString utf8(String s) {
    return ByteString.copyFromUtf8(s);
  }

  private Session create(Map<String, ByteString> attributes, String principal, Duration idle) {
    Session s = client.create(attributes, principal, idle);
    created.add(s.getId());
    return s;
  }

  @Test
  public void healthCheck() {
    assertEquals(HealthCheckResponse.ServingStatus.SERVING, client.check(""));
    assertEquals(HealthCheckResponse.ServingStatus.SERVING, client.check("session.v1.SessionService"));
  }

  @Test
  public void healthWatchFirstMessageIsServing() {
    // The stream stays open until cancelled: run it in a cancellable context.
    Context.CancellableContext watch = Context.current().withCancellation();
    try {
      HealthCheckResponse first = watch.call(() -> {
        Iterator<HealthCheckResponse> stream = HealthGrpc.newBlockingStub(client.channel())
            .withDeadlineAfter(5, TimeUnit.SECONDS)
            .watch(HealthCheckRequest.newBuilder().setService("session.v1.SessionService").build());
        assertTrue(stream.hasNext());
        return stream.next();
      });
      assertEquals(HealthCheckResponse.ServingStatus.SERVING, first.getStatus());
    } catch (Exception e) {
      throw new AssertionError(e);
    } finally {
      watch.cancel(null);
    }
  }

  @Test
  public void createWithAttributesThenGet() {
    Session s = create(Map.of("user", utf8("alice"), "blob", ByteString.copyFrom(BINARY)), "alice", Duration.ofSeconds(60));
    assertEquals(43, s.getId().length());
    assertEquals(1, s.getVersion());
    assertEquals("alice", s.getPrincipal());
    assertEquals(60, s.getIdleTimeout().getSeconds());
    assertTrue(s.getExpiresAt().getSeconds() > s.getCreatedAt().getSeconds());

    for (boolean strong : new boolean[] {false, true}) {
      Session got = client.get(s.getId(), strong);
      assertEquals(s.getId(), got.getId());
      assertEquals(1, got.getVersion());
      assertEquals("alice", got.getPrincipal());
      assertEquals(2, got.getAttributesCount());
      assertEquals("alice", got.getAttributesOrThrow("user").toStringUtf8());
      assertArrayEquals(BINARY, got.getAttributesOrThrow("blob").toByteArray());
    }
  }

  @Test
  public void putWithExpectedVersionThenStalePutIsAborted() {
    Session s = create(Map.of("user", utf8("alice"), "cart", utf8("empty")), "", null);
    Session updated = client.put(s.getId(), Map.of("cart", utf8("3 items")), List.of("user"), OptionalLong.of(1));
    assertEquals(2, updated.getVersion());
    assertEquals(Map.of("cart", utf8("3 items")), updated.getAttributesMap());

    VersionConflictException e = assertThrows(VersionConflictException.class,
        () -> client.put(s.getId(), Map.of("cart", utf8("stale")), List.of(), OptionalLong.of(1)));
    assertEquals(Status.Code.ABORTED, e.code());
    assertEquals(OptionalLong.of(2), e.currentVersion());

    Session got = client.get(s.getId(), true);
    assertEquals(2, got.getVersion());
    assertEquals("3 items", got.getAttributesOrThrow("cart").toStringUtf8());

    assertEquals(3, client.put(s.getId(), Map.of("n", utf8("1"))).getVersion());
  }

  @Test
  public void deleteThenNotFound() {
    Session s = client.create(Map.of("user", utf8("bob")), "", null);
    assertTrue(client.delete(s.getId()));
    assertThrows(SessionNotFoundException.class, () -> client.get(s.getId(), true));
    assertThrows(SessionNotFoundException.class, () -> client.put(s.getId(), Map.of("a", utf8("b"))));
    assertFalse(client.delete(s.getId()));
  }

  @Test
  public void unknownIdNotFoundMalformedIdInvalidArgument() {
    byte[] raw = new byte[32];
    new SecureRandom().nextBytes(raw);
    String unknown = Base64.getUrlEncoder().withoutPadding().encodeToString(raw);
    assertThrows(SessionNotFoundException.class, () -> client.get(unknown));
    SessionException e = assertThrows(SessionException.class, () -> client.get("not-a-session-id"));
    assertEquals(Status.Code.INVALID_ARGUMENT, e.code());
    assertNotNull(e.getMessage());
  }
}
