package io.valkeysessions.client;

import com.google.protobuf.ByteString;
import com.google.protobuf.CodedInputStream;
import com.google.protobuf.WireFormat;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.netty.NettyChannelBuilder;
import io.valkeysessions.session.v1.Consistency;
import io.valkeysessions.session.v1.CreateRequest;
import io.valkeysessions.session.v1.DeleteRequest;
import io.valkeysessions.session.v1.GetRequest;
import io.valkeysessions.session.v1.ListSessionsRequest;
import io.valkeysessions.session.v1.ListSessionsResponse;
import io.valkeysessions.session.v1.PutRequest;
import io.valkeysessions.session.v1.RevokeSessionRequest;
import io.valkeysessions.session.v1.RevokeSessionsRequest;
import io.valkeysessions.session.v1.RotateRequest;
import io.valkeysessions.session.v1.Session;
import io.valkeysessions.session.v1.SessionInfo;
import io.valkeysessions.session.v1.SessionServiceGrpc;
import java.io.IOException;
import java.time.Duration;
import java.util.Collection;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.NoSuchElementException;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

/**
 * A small wrapper over the generated {@code session.v1} blocking stub: one channel, a per-call
 * deadline, and typed exceptions ({@link SessionNotFoundException}, {@link
 * VersionConflictException}, else {@link SessionException}). Returns the generated, immutable
 * messages ({@link Session}, {@link ListSessionsResponse} with {@link SessionInfo}s). Thread-safe;
 * create one per application and share it.
 */
public final class SessionClient implements AutoCloseable {
  private final ManagedChannel channel;
  private final boolean ownsChannel;
  private final Duration timeout;
  private final SessionServiceGrpc.SessionServiceBlockingStub sessions;
  private final HealthGrpc.HealthBlockingStub health;

  /** Plaintext connection to {@code host:port}, 5 s deadline per call. */
  public SessionClient(String target) {
    this(NettyChannelBuilder.forTarget(target).usePlaintext().build(), Duration.ofSeconds(5), true);
  }

  /** Uses the caller's channel (TLS, interceptors, ...); the caller closes it. */
  public SessionClient(ManagedChannel channel, Duration timeout) {
    this(channel, timeout, false);
  }

  private SessionClient(ManagedChannel channel, Duration timeout, boolean ownsChannel) {
    this.channel = channel;
    this.ownsChannel = ownsChannel;
    this.timeout = timeout;
    this.sessions = SessionServiceGrpc.newBlockingStub(channel);
    this.health = HealthGrpc.newBlockingStub(channel);
  }

  private SessionServiceGrpc.SessionServiceBlockingStub stub() {
    return sessions.withDeadlineAfter(timeout.toMillis(), TimeUnit.MILLISECONDS);
  }

  private static <T> T call(Supplier<T> rpc) {
    try {
      return rpc.get();
    } catch (StatusRuntimeException e) {
      Status status = e.getStatus();
      String message = status.getDescription() == null ? "" : status.getDescription();
      switch (status.getCode()) {
        case NOT_FOUND:
          throw new SessionNotFoundException(message, e);
        case ABORTED:
          throw new VersionConflictException(message, e);
        case RESOURCE_EXHAUSTED:
          if ("VALKEY_OUT_OF_MEMORY".equals(errorReason(e.getTrailers()))) {
            throw new StorageFullException(message, e);
          }
          throw new SessionException(status.getCode(), message, e);
        default:
          throw new SessionException(status.getCode(), message, e);
      }
    }
  }

  private static final Metadata.Key<byte[]> STATUS_DETAILS =
      Metadata.Key.of("grpc-status-details-bin", Metadata.BINARY_BYTE_MARSHALLER);

  /** Length-delimited field {@code n}'s tag. */
  private static int bytesTag(int n) {
    return (n << 3) | WireFormat.WIRETYPE_LENGTH_DELIMITED;
  }

  /**
   * The reason of the google.rpc.ErrorInfo detail the service attached (domain
   * "valkey-sessions"), if any. The details travel as a google.rpc.Status (details = 3, each an
   * Any: type_url = 1, value = 2; ErrorInfo: reason = 1, domain = 2), read with protobuf's wire
   * reader rather than a googleapis dependency.
   */
  static String errorReason(Metadata trailers) {
    byte[] raw = trailers == null ? null : trailers.get(STATUS_DETAILS);
    if (raw == null) return null;
    try {
      CodedInputStream status = CodedInputStream.newInstance(raw);
      for (int tag = status.readTag(); tag != 0; tag = status.readTag()) {
        if (tag != bytesTag(3)) {
          status.skipField(tag);
          continue;
        }
        CodedInputStream any = status.readBytes().newCodedInput();
        String type = "";
        ByteString value = ByteString.EMPTY;
        for (int t = any.readTag(); t != 0; t = any.readTag()) {
          if (t == bytesTag(1)) type = any.readString();
          else if (t == bytesTag(2)) value = any.readBytes();
          else any.skipField(t);
        }
        if (!type.endsWith("/google.rpc.ErrorInfo")) continue;
        CodedInputStream info = value.newCodedInput();
        String reason = null;
        String domain = null;
        for (int t = info.readTag(); t != 0; t = info.readTag()) {
          if (t == bytesTag(1)) reason = info.readString();
          else if (t == bytesTag(2)) domain = info.readString();
          else info.skipField(t);
        }
        if ("valkey-sessions".equals(domain)) return reason;
      }
    } catch (IOException e) {
      return null;
    }
    return null;
  }

  private static com.google.protobuf.Duration duration(Duration d) {
    return com.google.protobuf.Duration.newBuilder().setSeconds(d.getSeconds()).setNanos(d.getNano()).build();
  }

  /** Starts a session (version 1). {@code idleTimeout} may be null for the server default. */
  public Session create(Map<String, ByteString> attributes, String principal, Duration idleTimeout) {
    CreateRequest.Builder req = CreateRequest.newBuilder().putAllAttributes(attributes);
    if (principal != null) req.setPrincipal(principal);
    if (idleTimeout != null) req.setIdleTimeout(duration(idleTimeout));
    return call(() -> stub().create(req.build())).getSession();
  }

  /** Reads a session (counts as activity); {@code strong} reads from the primary. */
  public Session get(String id, boolean strong) {
    GetRequest req = GetRequest.newBuilder()
        .setId(id)
        .setConsistency(strong ? Consistency.CONSISTENCY_STRONG : Consistency.CONSISTENCY_EVENTUAL)
        .build();
    return call(() -> stub().get(req)).getSession();
  }

  public Session get(String id) {
    return get(id, false);
  }

  /**
   * Applies one atomic delta. With {@code expectedVersion} present the Put succeeds only if the
   * stored version matches, else {@link VersionConflictException}.
   */
  public Session put(String id, Map<String, ByteString> set, Collection<String> remove, OptionalLong expectedVersion) {
    PutRequest.Builder req = PutRequest.newBuilder().setId(id).putAllSet(set).addAllRemove(remove);
    expectedVersion.ifPresent(req::setExpectedVersion);
    return call(() -> stub().put(req.build())).getSession();
  }

  /**
   * As {@link #put(String, Map, Collection, OptionalLong)}, also setting the idle timeout (null
   * keeps the stored one).
   */
  public Session put(String id, Map<String, ByteString> set, Collection<String> remove, OptionalLong expectedVersion,
      Duration idleTimeout) {
    PutRequest.Builder req = PutRequest.newBuilder().setId(id).putAllSet(set).addAllRemove(remove);
    expectedVersion.ifPresent(req::setExpectedVersion);
    if (idleTimeout != null) req.setIdleTimeout(duration(idleTimeout));
    return call(() -> stub().put(req.build())).getSession();
  }

  public Session put(String id, Map<String, ByteString> set) {
    return put(id, set, List.of(), OptionalLong.empty());
  }

  /** Deletes a session; returns whether a live session was removed. */
  public boolean delete(String id) {
    DeleteRequest req = DeleteRequest.newBuilder().setId(id).build();
    return call(() -> stub().delete(req)).getExisted();
  }

  /**
   * Moves the session to a new id (the old one is NOT_FOUND afterwards) and returns it. With
   * {@code principal} present this is the login step: the session belongs to it from now on. With
   * {@code expectedVersion} present a stale version throws {@link VersionConflictException}.
   */
  public Session rotate(String id, OptionalLong expectedVersion, Optional<String> principal) {
    RotateRequest.Builder req = RotateRequest.newBuilder().setId(id);
    expectedVersion.ifPresent(req::setExpectedVersion);
    principal.ifPresent(req::setPrincipal);
    return call(() -> stub().rotate(req.build())).getSession();
  }

  public Session rotate(String id) {
    return rotate(id, OptionalLong.empty(), Optional.empty());
  }

  /**
   * One page of the principal's live sessions, newest activity first, each with a revocation
   * handle (never the id). {@code pageSize} 0 is the server default (20); {@code pageToken} is the
   * previous page's {@code getNextPageToken()}, "" for the first page (a forged or stale one is
   * INVALID_ARGUMENT); {@code displayAttributes} names the attributes returned with each session.
   * An unknown principal has an empty list.
   */
  public ListSessionsResponse listSessions(
      String principal, int pageSize, String pageToken, Collection<String> displayAttributes) {
    ListSessionsRequest req = ListSessionsRequest.newBuilder()
        .setPrincipal(principal)
        .setPageSize(pageSize)
        .setPageToken(pageToken)
        .addAllDisplayAttributes(displayAttributes)
        .build();
    return call(() -> stub().listSessions(req));
  }

  public ListSessionsResponse listSessions(String principal) {
    return listSessions(principal, 0, "", List.of());
  }

  /**
   * All of the principal's live sessions, newest activity first; each iteration lists them again,
   * fetching the next page (one call, with this client's deadline) as it goes.
   */
  public Iterable<SessionInfo> allSessions(String principal, int pageSize, Collection<String> displayAttributes) {
    List<String> names = List.copyOf(displayAttributes);
    return () -> new Iterator<SessionInfo>() {
      private Iterator<SessionInfo> page = List.<SessionInfo>of().iterator();
      private String token = "";
      private boolean last = false;

      @Override
      public boolean hasNext() {
        while (!page.hasNext() && !last) {
          ListSessionsResponse res = listSessions(principal, pageSize, token, names);
          page = res.getSessionsList().iterator();
          token = res.getNextPageToken();
          last = token.isEmpty();
        }
        return page.hasNext();
      }

      @Override
      public SessionInfo next() {
        if (!hasNext()) throw new NoSuchElementException();
        return page.next();
      }
    };
  }

  /**
   * Ends one session of {@code principal} by its handle from {@link #listSessions}; returns 1.
   * A handle that is not (or no longer) one of its sessions throws {@link SessionNotFoundException}.
   */
  public long revokeSession(String principal, String handle) {
    RevokeSessionRequest req = RevokeSessionRequest.newBuilder().setPrincipal(principal).setHandle(handle).build();
    return Integer.toUnsignedLong(call(() -> stub().revokeSession(req)).getRevoked());
  }

  /**
   * Ends every session of {@code principal}, or every one but {@code exceptId} ("log out
   * everywhere else"); returns how many were revoked.
   */
  public long revokeSessions(String principal, Optional<String> exceptId) {
    RevokeSessionsRequest.Builder req = RevokeSessionsRequest.newBuilder().setPrincipal(principal);
    exceptId.ifPresent(req::setExceptId);
    return Integer.toUnsignedLong(call(() -> stub().revokeSessions(req.build())).getRevoked());
  }

  public long revokeSessions(String principal) {
    return revokeSessions(principal, Optional.empty());
  }

  /** grpc.health.v1 Check; {@code ""} is the server as a whole. */
  public HealthCheckResponse.ServingStatus check(String service) {
    HealthCheckRequest req = HealthCheckRequest.newBuilder().setService(service).build();
    return call(() -> health.withDeadlineAfter(timeout.toMillis(), TimeUnit.MILLISECONDS).check(req)).getStatus();
  }

  /** The underlying channel, e.g. for the generated async or streaming stubs. */
  public ManagedChannel channel() {
    return channel;
  }

  @Override
  public void close() {
    if (!ownsChannel) return;
    channel.shutdown();
    try {
      if (!channel.awaitTermination(5, TimeUnit.SECONDS)) channel.shutdownNow();
    } catch (InterruptedException e) {
      channel.shutdownNow();
      Thread.currentThread().interrupt();
    }
  }
}
