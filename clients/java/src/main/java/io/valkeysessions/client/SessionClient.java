package io.valkeysessions.client;

import com.google.protobuf.ByteString;
import io.grpc.ManagedChannel;
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
import io.valkeysessions.session.v1.PutRequest;
import io.valkeysessions.session.v1.Session;
import io.valkeysessions.session.v1.SessionServiceGrpc;
import java.time.Duration;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.OptionalLong;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

/**
 * A small wrapper over the generated {@code session.v1} blocking stub: one channel, a per-call
 * deadline, and typed exceptions ({@link SessionNotFoundException}, {@link
 * VersionConflictException}, else {@link SessionException}). Returns the generated, immutable
 * {@link Session} message. Thread-safe; create one per application and share it.
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
        default:
          throw new SessionException(status.getCode(), message, e);
      }
    }
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

  public Session put(String id, Map<String, ByteString> set) {
    return put(id, set, List.of(), OptionalLong.empty());
  }

  /** Deletes a session; returns whether a live session was removed. */
  public boolean delete(String id) {
    DeleteRequest req = DeleteRequest.newBuilder().setId(id).build();
    return call(() -> stub().delete(req)).getExisted();
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
