package io.valkeysessions.servlet;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonElement;
import com.google.gson.JsonParser;
import com.google.gson.ToNumberPolicy;
import com.google.protobuf.ByteString;
import io.grpc.Status;
import io.valkeysessions.client.SessionClient;
import io.valkeysessions.client.SessionException;
import io.valkeysessions.client.SessionNotFoundException;
import io.valkeysessions.client.StorageFullException;
import io.valkeysessions.client.VersionConflictException;
import io.valkeysessions.session.v1.Session;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.TreeSet;
import java.util.logging.Level;
import java.util.logging.Logger;
import javax.servlet.Filter;
import javax.servlet.FilterChain;
import javax.servlet.FilterConfig;
import javax.servlet.ServletException;
import javax.servlet.ServletRequest;
import javax.servlet.ServletResponse;
import javax.servlet.http.Cookie;
import javax.servlet.http.HttpServletRequest;
import javax.servlet.http.HttpServletRequestWrapper;
import javax.servlet.http.HttpServletResponse;
import javax.servlet.http.HttpSession;

/**
 * A Servlet filter that keeps {@code HttpSession} in valkey-sessions: register it first, for
 * every path, and the application's {@code request.getSession()} is the service's session.
 *
 * <pre>
 * context.addFilter(new FilterHolder(new ValkeySessionFilter(client, new ValkeySessionFilter.Options())),
 *     "/*", EnumSet.of(DispatcherType.REQUEST));
 * </pre>
 *
 * or in web.xml with init-params {@code address}, {@code cookieName}, {@code cookiePath},
 * {@code secure}, {@code defaultMaxInactiveInterval}, {@code maxInactiveInterval},
 * {@code timeoutMillis} (see {@link Options}).
 *
 * <p>How it maps (docs/adapters.md): the service chooses ids ({@code getSession(true)} is a Create
 * and sets the cookie at once, before any body is written); a request's first {@code getSession}
 * is one strong Get; after the chain returns, changed attributes are one Put with
 * {@code expected_version} (on ABORTED: re-read, three-way merge, up to 8 tries);
 * {@code changeSessionId()} is Rotate; {@code invalidate()} is Delete. The service failing is a
 * {@link SessionServiceException} from {@code getSession}, which this filter rethrows as a
 * {@code ServletException} (the container's HTTP 500), never a new empty session. A write Valkey
 * refused for memory is answered here with a 503 and {@link #STORAGE_FULL_MESSAGE} (while the
 * response is not committed), without a Set-Cookie: the browser keeps its unchanged session.
 */
public class ValkeySessionFilter implements Filter {
  private static final Logger LOG = Logger.getLogger(ValkeySessionFilter.class.getName());
  /** How many times a save re-reads and merges after ABORTED before giving up. */
  public static final int CONFLICT_RETRIES = 8;
  /** Saves that hit ABORTED and merged (observable for tests and metrics). */
  static final java.util.concurrent.atomic.AtomicLong MERGES = new java.util.concurrent.atomic.AtomicLong();
  static final Gson GSON = new GsonBuilder()
      .setObjectToNumberStrategy(ToNumberPolicy.LONG_OR_DOUBLE)
      .disableHtmlEscaping()
      .create();

  /** Options; the defaults suit a plaintext service on 127.0.0.1:50051. */
  public static final class Options {
    /** host:port of the service, for the web.xml form (default 127.0.0.1:50051). */
    public String address = "127.0.0.1:50051";
    /** Cookie name (default VSESSION). The cookie is HttpOnly and SameSite=Lax. */
    public String cookieName = "VSESSION";
    /** Cookie path; null: the context path ("/" for the root context). */
    public String cookiePath = null;
    /**
     * Adds Secure to the cookie (default true: browsers return it over HTTPS only; plain-HTTP
     * development sets it false).
     */
    public boolean secure = true;
    /** Idle timeout of new sessions, seconds (default 1800, the Servlet containers' usual 30 min). */
    public int defaultMaxInactiveInterval = 1800;
    /** Largest idle timeout sent, seconds (default 86400, the service's default maximum). */
    public int maxInactiveInterval = 86400;
    /** Deadline of each call, for the web.xml form (default 2000 ms). */
    public long timeoutMillis = 2000;
  }

  private SessionClient client;
  private boolean ownsClient;
  private Options options;

  /** For web.xml: options from init-params, a client from {@code address} created in init. */
  public ValkeySessionFilter() {}

  /** Programmatic: the caller's client (TLS, token: build it on your own channel). */
  public ValkeySessionFilter(SessionClient client, Options options) {
    this.client = client;
    this.options = options == null ? new Options() : options;
  }

  @Override
  public void init(FilterConfig config) throws ServletException {
    if (client != null) return;
    Options o = new Options();
    String v;
    if ((v = config.getInitParameter("address")) != null) o.address = v;
    if ((v = config.getInitParameter("cookieName")) != null) o.cookieName = v;
    if ((v = config.getInitParameter("cookiePath")) != null) o.cookiePath = v;
    if ((v = config.getInitParameter("secure")) != null) o.secure = Boolean.parseBoolean(v);
    if ((v = config.getInitParameter("defaultMaxInactiveInterval")) != null) o.defaultMaxInactiveInterval = Integer.parseInt(v);
    if ((v = config.getInitParameter("maxInactiveInterval")) != null) o.maxInactiveInterval = Integer.parseInt(v);
    if ((v = config.getInitParameter("timeoutMillis")) != null) o.timeoutMillis = Long.parseLong(v);
    options = o;
    client = new SessionClient(
        io.grpc.netty.NettyChannelBuilder.forTarget(o.address).usePlaintext().build(), Duration.ofMillis(o.timeoutMillis));
    ownsClient = true;
  }

  @Override
  public void destroy() {
    if (ownsClient) {
      client.channel().shutdownNow();
    }
  }

  @Override
  public void doFilter(ServletRequest request, ServletResponse response, FilterChain chain)
      throws IOException, ServletException {
    if (!(request instanceof HttpServletRequest) || !(response instanceof HttpServletResponse)) {
      chain.doFilter(request, response);
      return;
    }
    HttpServletResponse res = (HttpServletResponse) response;
    SessionRequest wrapped = new SessionRequest((HttpServletRequest) request, res, this);
    try {
      chain.doFilter(wrapped, response);
    } catch (SessionServiceException e) {
      if (answerStorageFull(e, res)) return;
      LOG.warning(e.getMessage()); // the container logs the ServletException with its cause
      throw new ServletException(e.getMessage(), e);
    }
    try {
      wrapped.save();
    } catch (RuntimeException e) {
      if (answerStorageFull(e, res)) return;
      // After the chain: if the response is not committed the container sends 500; if it is, the
      // container can only log it and abort the connection. Either way it is logged here.
      LOG.log(Level.SEVERE, "valkey-sessions: the session was not saved"
          + (response.isCommitted() ? " (response already committed)" : "") + ": " + e.getMessage(), e);
      throw new ServletException("valkey-sessions: the session was not saved: " + e.getMessage(), e);
    }
  }

  /** The body of the 503 answered when Valkey is full. */
  public static final String STORAGE_FULL_MESSAGE =
      "session storage is full: your change was not saved and your session is intact; try again later";

  /**
   * Answers 503 with {@link #STORAGE_FULL_MESSAGE} when {@code e} comes from a write Valkey refused
   * for memory and the response can still be replaced: {@code reset()} drops what the app
   * buffered, a new session's Set-Cookie included, so the browser keeps its cookie.
   */
  private static boolean answerStorageFull(RuntimeException e, HttpServletResponse res) throws IOException {
    boolean full = false;
    for (Throwable c = e; c != null && !full; c = c.getCause()) full = c instanceof StorageFullException;
    if (!full || res.isCommitted()) return false;
    LOG.warning("valkey-sessions: Valkey is out of memory; answered 503: " + e.getMessage());
    res.reset();
    res.setStatus(HttpServletResponse.SC_SERVICE_UNAVAILABLE);
    res.setContentType("text/plain;charset=utf-8");
    res.getWriter().print(STORAGE_FULL_MESSAGE);
    return true;
  }

  int clampIdle(int seconds) {
    int max = Math.max(1, options.maxInactiveInterval);
    if (seconds <= 0) return max;
    return Math.min(Math.max(seconds, 1), max);
  }

  /** What the service could accept (22..128 URL-safe characters, '.' in tagged ids). */
  static boolean plausibleId(String v) {
    if (v == null || v.length() < 22 || v.length() > 140) return false;
    for (int i = 0; i < v.length(); i++) {
      char c = v.charAt(i);
      if (!(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.')) {
        return false;
      }
    }
    return true;
  }

  /** The JSON of one attribute value; IllegalArgumentException naming the attribute if gson cannot. */
  static JsonElement encode(String name, Object value) {
    try {
      return GSON.toJsonTree(value);
    } catch (RuntimeException | StackOverflowError e) {
      throw new IllegalArgumentException("session attribute \"" + name + "\" cannot be stored: "
          + value.getClass().getName() + " is not JSON-serializable by gson ("
          + (e instanceof StackOverflowError ? "circular reference" : e.getMessage()) + ")", e);
    }
  }

  static JsonElement parse(ByteString raw) {
    String s = raw.toStringUtf8();
    try {
      return JsonParser.parseString(s);
    } catch (RuntimeException e) {
      return new com.google.gson.JsonPrimitive(s); // not JSON (written by something else): a string
    }
  }

  static Map<String, JsonElement> canonicalAll(Map<String, ByteString> attrs) {
    Map<String, JsonElement> out = new HashMap<>();
    attrs.forEach((k, v) -> out.put(k, parse(v)));
    return out;
  }

  static Map<String, Object> decodeAll(Map<String, ByteString> attrs) {
    Map<String, Object> out = new HashMap<>();
    attrs.forEach((k, v) -> out.put(k, GSON.fromJson(parse(v), Object.class)));
    return out;
  }

  static Map<String, ByteString> bytes(Map<String, JsonElement> m) {
    Map<String, ByteString> out = new HashMap<>();
    m.forEach((k, v) -> out.put(k, ByteString.copyFrom(GSON.toJson(v), StandardCharsets.UTF_8)));
    return out;
  }

  private static boolean isGone(SessionException e) {
    return e.code() == Status.Code.NOT_FOUND || e.code() == Status.Code.INVALID_ARGUMENT;
  }

  private static SessionServiceException failure(String what, SessionException e) {
    return new SessionServiceException("valkey-sessions: " + what + " failed (" + e.code() + ")", e);
  }

  /** The request as the application sees it: getSession and friends are the service's. */
  final class SessionRequest extends HttpServletRequestWrapper {
    final ValkeySessionFilter filter = ValkeySessionFilter.this;
    private final HttpServletResponse response;
    private boolean loaded;
    private ValkeyHttpSession session;
    private String requestedId;
    private boolean requestedValid;
    private SessionServiceException loadFailure;

    SessionRequest(HttpServletRequest request, HttpServletResponse response, ValkeySessionFilter filter) {
      super(request);
      this.response = response;
      Cookie[] cookies = request.getCookies();
      if (cookies != null) {
        for (Cookie c : cookies) {
          if (options.cookieName.equals(c.getName())) {
            requestedId = c.getValue();
            break;
          }
        }
      }
    }

    private void load() {
      if (loaded) return;
      loaded = true;
      if (!plausibleId(requestedId)) return;
      try {
        Session s = client.get(requestedId, true);
        session = new ValkeyHttpSession(this, s, false);
        requestedValid = true;
      } catch (SessionException e) {
        if (isGone(e)) return; // unknown, expired, deleted elsewhere: no session (a new one on demand)
        loadFailure = failure("loading the session", e);
        throw loadFailure;
      }
    }

    @Override
    public HttpSession getSession(boolean create) {
      if (loadFailure != null) throw loadFailure;
      load();
      if (session != null && session.valid) return session;
      if (!create) return null;
      if (response.isCommitted()) {
        throw new IllegalStateException("cannot create a session after the response has been committed");
      }
      int idle = clampIdle(options.defaultMaxInactiveInterval);
      Session s;
      try {
        s = client.create(Map.of(), null, Duration.ofSeconds(idle));
      } catch (SessionException e) {
        throw failure("creating a session", e);
      }
      session = new ValkeyHttpSession(this, s, true);
      setCookie(session.id);
      return session;
    }

    @Override
    public HttpSession getSession() {
      return getSession(true);
    }

    @Override
    public String getRequestedSessionId() {
      return requestedId;
    }

    @Override
    public boolean isRequestedSessionIdValid() {
      if (loadFailure != null) return false;
      load();
      return requestedValid && session != null && session.valid && session.id.equals(requestedId);
    }

    @Override
    public boolean isRequestedSessionIdFromCookie() {
      return requestedId != null;
    }

    @Override
    public boolean isRequestedSessionIdFromURL() {
      return false;
    }

    @Override
    @Deprecated
    public boolean isRequestedSessionIdFromUrl() {
      return false;
    }

    /**
     * Login: saves the pending changes, then Rotate (with the request's user principal, if any):
     * a new id, the old one NOT_FOUND. Call it before the response is committed (the cookie).
     */
    @Override
    public String changeSessionId() {
      HttpSession current = getSession(false);
      if (current == null) throw new IllegalStateException("changeSessionId: the request has no session");
      ValkeyHttpSession s = session;
      Optional<String> principal = Optional.ofNullable(getUserPrincipal()).map(p -> p.getName());
      save();
      Session rotated = null;
      if (s.valid) {
        try {
          rotated = client.rotate(s.id, OptionalLong.empty(), principal);
        } catch (SessionException e) {
          if (!isGone(e)) throw failure("rotating the session", e);
        }
      }
      if (rotated == null) { // deleted elsewhere meanwhile: a new session with this request's values
        try {
          rotated = client.create(bytes(encodeAll(s)), principal.orElse(null), Duration.ofSeconds(s.idle));
        } catch (SessionException e) {
          throw failure("creating a session", e);
        }
        s.valid = true;
      }
      synchronized (s) {
        s.adopt(rotated);
      }
      setCookie(s.id);
      return s.id;
    }

    void invalidated(ValkeyHttpSession s) {
      try {
        client.delete(s.id);
      } catch (SessionException e) {
        if (!isGone(e)) {
          s.valid = true; // still there: the logout did not happen
          throw failure("deleting the session", e);
        }
      }
      expireCookie();
    }

    private Map<String, JsonElement> encodeAll(ValkeyHttpSession s) {
      Map<String, JsonElement> out = new HashMap<>();
      synchronized (s) {
        s.values.forEach((k, v) -> out.put(k, encode(k, v)));
      }
      return out;
    }

    /** Writes the changed attributes (and idle timeout) with expected_version; merges on ABORTED. */
    void save() {
      ValkeyHttpSession s = session;
      if (s == null || !s.valid) return;
      Map<String, JsonElement> target = encodeAll(s);
      for (int i = 0; i < CONFLICT_RETRIES; i++) {
        Map<String, JsonElement> set = new HashMap<>();
        target.forEach((k, v) -> {
          if (!v.equals(s.base.get(k))) set.put(k, v);
        });
        List<String> remove = new ArrayList<>();
        for (String k : new TreeSet<>(s.base.keySet())) {
          if (!target.containsKey(k)) remove.add(k);
        }
        boolean idleChange = s.idleChanged && s.idle != s.storedIdle;
        if (set.isEmpty() && remove.isEmpty() && !idleChange) return;
        try {
          Session res = client.put(s.id, bytes(set), remove, OptionalLong.of(s.version),
              idleChange ? Duration.ofSeconds(s.idle) : null);
          synchronized (s) {
            s.adopt(res);
            s.idleChanged = false;
            s.idle = s.storedIdle;
          }
          return;
        } catch (VersionConflictException e) {
          MERGES.incrementAndGet(); // re-read and merge below
        } catch (SessionException e) {
          if (isGone(e)) {
            gone(s);
            return;
          }
          throw failure("saving the session", e);
        }
        Session cur;
        try {
          cur = client.get(s.id, true);
        } catch (SessionException e) {
          if (isGone(e)) {
            gone(s);
            return;
          }
          throw failure("re-reading the session", e);
        }
        Map<String, JsonElement> theirs = canonicalAll(cur.getAttributesMap());
        Map<String, JsonElement> merged = new HashMap<>();
        TreeSet<String> keys = new TreeSet<>(s.base.keySet());
        keys.addAll(theirs.keySet());
        keys.addAll(target.keySet());
        for (String k : keys) {
          try {
            JsonElement v = JsonMerge.merge(s.base.get(k), theirs.get(k), target.get(k));
            if (v != null) merged.put(k, v);
          } catch (JsonMerge.Conflict c) {
            throw new SessionServiceException("valkey-sessions: concurrent requests set session attribute \"" + k
                + "\" to different values; this request's change was not saved", null);
          }
        }
        target = merged;
        synchronized (s) {
          s.adopt(cur);
          s.values.clear();
          merged.forEach((k, v) -> s.values.put(k, GSON.fromJson(v, Object.class)));
        }
      }
      throw new SessionServiceException("valkey-sessions: still conflicting after " + CONFLICT_RETRIES + " merges", null);
    }

    /** Deleted elsewhere (logout on another device, revoked, expired): dropped, never resurrected. */
    private void gone(ValkeyHttpSession s) {
      s.valid = false;
      if (!response.isCommitted()) expireCookie();
    }

    private String cookiePath() {
      if (options.cookiePath != null) return options.cookiePath;
      String cp = getContextPath();
      return cp == null || cp.isEmpty() ? "/" : cp;
    }

    private void setCookie(String id) {
      if (response.isCommitted()) {
        LOG.warning("valkey-sessions: the response is committed; the session cookie could not be set");
        return;
      }
      response.addHeader("Set-Cookie", options.cookieName + "=" + id + "; Path=" + cookiePath()
          + "; HttpOnly; SameSite=Lax" + (options.secure ? "; Secure" : ""));
    }

    private void expireCookie() {
      if (response.isCommitted()) return;
      response.addHeader("Set-Cookie", options.cookieName + "=; Path=" + cookiePath()
          + "; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Lax"
          + (options.secure ? "; Secure" : ""));
    }
  }
}
