package io.valkeysessions.client;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotEquals;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import com.google.protobuf.ByteString;
import io.grpc.Context;
import io.grpc.Status;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import io.valkeysessions.session.v1.ListSessionsResponse;
import io.valkeysessions.session.v1.Session;
import io.valkeysessions.session.v1.SessionInfo;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.HashSet;
import java.util.HexFormat;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.concurrent.TimeUnit;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
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
  /** The id format: an 11-character slot tag, '.', 256 bits as URL-safe base64 without padding. */
  private static final Pattern ID_FORMAT = Pattern.compile("[^.]{11}\\.[A-Za-z0-9_-]{43}");
  private static final SecureRandom RANDOM = new SecureRandom();
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
    assertEquals(55, s.getId().length());
    assertTrue(s.getId(), ID_FORMAT.matcher(s.getId()).matches());
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
    RANDOM.nextBytes(raw);
    String unknown = Base64.getUrlEncoder().withoutPadding().encodeToString(raw);
    assertThrows(SessionNotFoundException.class, () -> client.get(unknown));
    SessionException e = assertThrows(SessionException.class, () -> client.get("not-a-session-id"));
    assertEquals(Status.Code.INVALID_ARGUMENT, e.code());
    assertNotNull(e.getMessage());
  }

  private static String randomHex() {
    byte[] raw = new byte[8];
    RANDOM.nextBytes(raw);
    return HexFormat.of().formatHex(raw);
  }

  private static List<String> devices(List<SessionInfo> infos) {
    return infos.stream()
        .map(i -> i.getDisplayAttributesOrDefault("device", ByteString.EMPTY).toStringUtf8())
        .collect(Collectors.toList());
  }

  private static long nanos(com.google.protobuf.Timestamp t) {
    return t.getSeconds() * 1_000_000_000L + t.getNanos();
  }

  @Test
  public void sessionsOfAUser() throws InterruptedException {
    String principal = "user-" + randomHex() + "@example.com";
    try {
      sessionsOfAUser(principal);
    } finally {
      try {
        client.revokeSessions(principal);
      } catch (SessionException ignored) {
        // best effort
      }
    }
  }

  private void sessionsOfAUser(String principal) throws InterruptedException {
    Map<String, String> ids = new HashMap<>();
    for (String device : List.of("laptop", "phone", "tablet")) {
      Session s = create(Map.of("device", utf8(device), "secret", utf8("not listed")), principal, null);
      assertEquals(55, s.getId().length());
      assertEquals(principal, s.getPrincipal());
      ids.put(device, s.getId());
      Thread.sleep(50); // distinct activity times: the list is newest activity first
    }
    List<String> device = List.of("device");

    // Two pages of 2 and 1, newest activity first (the last created first).
    ListSessionsResponse first = client.listSessions(principal, 2, "", device);
    assertEquals(2, first.getSessionsCount());
    assertFalse(first.getNextPageToken().isEmpty());
    ListSessionsResponse second = client.listSessions(principal, 2, first.getNextPageToken(), device);
    assertEquals(1, second.getSessionsCount());
    assertEquals("", second.getNextPageToken());
    List<SessionInfo> listed = new ArrayList<>(first.getSessionsList());
    listed.addAll(second.getSessionsList());
    assertEquals(List.of("tablet", "phone", "laptop"), devices(listed));
    for (int i = 1; i < listed.size(); i++) {
      assertTrue("newest activity first",
          nanos(listed.get(i - 1).getLastAccessedAt()) >= nanos(listed.get(i).getLastAccessedAt()));
    }
    for (SessionInfo info : listed) {
      assertEquals(1, info.getDisplayAttributesCount());
      assertEquals(1, info.getVersion());
      assertTrue(info.hasCreatedAt() && info.hasLastAccessedAt() && info.hasExpiresAt());
      assertTrue(nanos(info.getExpiresAt()) > nanos(info.getCreatedAt()));
    }
    List<String> all = new ArrayList<>();
    client.allSessions(principal, 2, List.of()).forEach(info -> all.add(info.getHandle()));
    assertEquals(listed.stream().map(SessionInfo::getHandle).collect(Collectors.toList()), all);

    // A handle revokes, but is not an id: it cannot read the session.
    Map<String, String> handles = new HashMap<>();
    for (SessionInfo info : listed) {
      handles.put(info.getDisplayAttributesOrThrow("device").toStringUtf8(), info.getHandle());
    }
    assertEquals(3, new HashSet<>(handles.values()).size());
    for (String handle : handles.values()) {
      assertFalse(handle.isEmpty());
      assertFalse(ids.containsValue(handle));
      SessionException e = assertThrows(SessionException.class, () -> client.get(handle, true));
      assertTrue(e.getMessage(),
          e.code() == Status.Code.INVALID_ARGUMENT || e.code() == Status.Code.NOT_FOUND);
    }

    // Log out one device.
    assertEquals(1, client.revokeSession(principal, handles.get("phone")));
    assertThrows(SessionNotFoundException.class, () -> client.get(ids.get("phone"), true));

    // Log out everywhere else.
    assertEquals(1, client.revokeSessions(principal, Optional.of(ids.get("laptop"))));
    assertThrows(SessionNotFoundException.class, () -> client.get(ids.get("tablet"), true));
    assertEquals("laptop", client.get(ids.get("laptop"), true).getAttributesOrThrow("device").toStringUtf8());
    ListSessionsResponse left = client.listSessions(principal, 0, "", device);
    assertEquals(List.of("laptop"), devices(left.getSessionsList()));
    assertEquals("", left.getNextPageToken());

    // Bad input: a forged page token; an unknown principal has no sessions.
    SessionException forged = assertThrows(SessionException.class,
        () -> client.listSessions(principal, 0, "garbage", List.of()));
    assertEquals(Status.Code.INVALID_ARGUMENT, forged.code());
    ListSessionsResponse nobody = client.listSessions("nobody-" + randomHex() + "@example.com");
    assertEquals(0, nobody.getSessionsCount());
    assertEquals("", nobody.getNextPageToken());

    // Login: Rotate an anonymous session to the principal.
    Session anonymous = create(Map.of("device", utf8("desktop")), "", null);
    assertEquals("", anonymous.getPrincipal());
    Session rotated = client.rotate(anonymous.getId(), OptionalLong.empty(), Optional.of(principal));
    created.add(rotated.getId());
    assertEquals(55, rotated.getId().length());
    assertTrue(rotated.getId(), ID_FORMAT.matcher(rotated.getId()).matches());
    assertNotEquals(anonymous.getId(), rotated.getId());
    assertEquals(principal, rotated.getPrincipal());
    assertEquals(anonymous.getVersion() + 1, rotated.getVersion());
    assertEquals("desktop", rotated.getAttributesOrThrow("device").toStringUtf8());
    assertThrows(SessionNotFoundException.class, () -> client.get(anonymous.getId(), true));
    assertEquals(principal, client.get(rotated.getId(), true).getPrincipal());
    List<String> now = new ArrayList<>(devices(client.listSessions(principal, 0, "", device).getSessionsList()));
    now.sort(null);
    assertEquals(List.of("desktop", "laptop"), now);
  }
}
