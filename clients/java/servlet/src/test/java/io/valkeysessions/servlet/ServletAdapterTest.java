package io.valkeysessions.servlet;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertFalse;
import static org.junit.Assert.assertNotEquals;
import static org.junit.Assert.assertNotNull;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import io.valkeysessions.client.SessionClient;
import io.valkeysessions.client.SessionNotFoundException;
import java.io.IOException;
import java.net.CookieManager;
import java.net.CookiePolicy;
import java.net.HttpCookie;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import javax.servlet.DispatcherType;
import javax.servlet.http.HttpServlet;
import javax.servlet.http.HttpServletRequest;
import javax.servlet.http.HttpServletResponse;
import javax.servlet.http.HttpSession;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import org.eclipse.jetty.server.handler.ContextHandlerCollection;
import org.eclipse.jetty.servlet.FilterHolder;
import org.eclipse.jetty.servlet.ServletContextHandler;
import org.eclipse.jetty.servlet.ServletHolder;
import org.junit.AfterClass;
import org.junit.Before;
import org.junit.BeforeClass;
import org.junit.Test;

/**
 * The Servlet filter in a small embedded Jetty 9 app, driven over HTTP with a cookie jar against
 * the real service at SESSION_SERVICE_ADDR. "/" uses the service; "/down" is the same app with a
 * filter pointed at a closed port.
 */
public class ServletAdapterTest {
  static final String COOKIE = "VSESSION";
  static Server server;
  static String base;
  static SessionClient client;
  static SessionClient downClient;
  HttpClient http;
  CookieManager jar;

  /** The tiny app: /count, /add?item=x[&sleep=ms], /login?user=u, /logout, /read, /idle?s=n, /bad. */
  public static class App extends HttpServlet {
    @Override
    protected void doGet(HttpServletRequest req, HttpServletResponse res) throws IOException {
      String path = req.getPathInfo() == null ? req.getServletPath() : req.getPathInfo();
      res.setContentType("text/plain");
      switch (path) {
        case "/count": {
          HttpSession s = req.getSession();
          Object c = s.getAttribute("count");
          long n = c == null ? 1 : ((Number) c).longValue() + 1;
          s.setAttribute("count", n);
          res.getWriter().print("count=" + n);
          return;
        }
        case "/idle": {
          HttpSession s = req.getSession();
          s.setMaxInactiveInterval(Integer.parseInt(req.getParameter("s")));
          s.setAttribute("count", 1L);
          res.getWriter().print("idle=" + s.getMaxInactiveInterval());
          return;
        }
        case "/add": {
          HttpSession s = req.getSession();
          @SuppressWarnings("unchecked")
          List<Object> items = (List<Object>) s.getAttribute("items");
          items = items == null ? new ArrayList<>() : new ArrayList<>(items);
          sleep(req.getParameter("sleep"));
          items.add(req.getParameter("item"));
          s.setAttribute("items", items);
          res.getWriter().print("items=" + items);
          return;
        }
        case "/login": {
          HttpSession s = req.getSession();
          s.setAttribute("user", req.getParameter("user"));
          String id = req.changeSessionId();
          res.getWriter().print("user=" + s.getAttribute("user") + " rotated=" + id.equals(s.getId()));
          return;
        }
        case "/logout": {
          HttpSession s = req.getSession(false);
          if (s != null) s.invalidate();
          res.getWriter().print("bye");
          return;
        }
        case "/read": {
          HttpSession s = req.getSession(false);
          res.getWriter().print(s == null ? "none" : "user=" + s.getAttribute("user") + " items="
              + s.getAttribute("items") + " count=" + s.getAttribute("count") + " new=" + s.isNew()
              + " requested=" + (req.getRequestedSessionId() != null) + " valid=" + req.isRequestedSessionIdValid());
          return;
        }
        case "/bad": {
          HttpSession s = req.getSession();
          Object bad = List.of(1.0, Double.NaN);
          if (req.getParameter("catch") != null) {
            try {
              s.setAttribute("bad", bad);
              res.getWriter().print("stored?!");
            } catch (IllegalArgumentException e) {
              res.setStatus(400);
              res.getWriter().print(e.getMessage());
            }
            return;
          }
          s.setAttribute("count", 999L); // must not be saved: the next line throws
          s.setAttribute("bad", bad);
          return;
        }
        default:
          res.sendError(404);
      }
    }

    private static void sleep(String ms) {
      if (ms == null) return;
      try {
        Thread.sleep(Long.parseLong(ms));
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }
  }

  static ServletContextHandler context(String path, SessionClient c) {
    ServletContextHandler ctx = new ServletContextHandler(ServletContextHandler.NO_SESSIONS);
    ctx.setContextPath(path);
    ValkeySessionFilter.Options options = new ValkeySessionFilter.Options();
    options.secure = false; // the test server speaks plain HTTP: a Secure cookie would not come back
    ctx.addFilter(new FilterHolder(new ValkeySessionFilter(c, options)), "/*",
        EnumSet.of(DispatcherType.REQUEST));
    ctx.addServlet(new ServletHolder(new App()), "/*");
    return ctx;
  }

  @BeforeClass
  public static void start() throws Exception {
    String addr = System.getenv("SESSION_SERVICE_ADDR");
    assertNotNull("set SESSION_SERVICE_ADDR", addr);
    client = new SessionClient(addr);
    downClient = new SessionClient("127.0.0.1:1"); // nothing listens there
    server = new Server();
    ServerConnector connector = new ServerConnector(server);
    connector.setHost("127.0.0.1");
    connector.setPort(0);
    server.addConnector(connector);
    ContextHandlerCollection contexts = new ContextHandlerCollection();
    contexts.addHandler(context("/down", downClient));
    contexts.addHandler(context("/", client));
    server.setHandler(contexts);
    server.start();
    base = "http://127.0.0.1:" + connector.getLocalPort();
  }

  @AfterClass
  public static void stop() throws Exception {
    if (server != null) server.stop();
    if (client != null) client.close();
    if (downClient != null) downClient.close();
  }

  @Before
  public void browser() {
    jar = new CookieManager(null, CookiePolicy.ACCEPT_ALL);
    http = HttpClient.newBuilder().cookieHandler(jar).build();
  }

  HttpResponse<String> get(String path) throws Exception {
    return http.send(HttpRequest.newBuilder(URI.create(base + path)).build(), HttpResponse.BodyHandlers.ofString());
  }

  /** A request with an explicit Cookie header and no jar (another browser, or a forged cookie). */
  HttpResponse<String> getWithCookie(String path, String cookie) throws Exception {
    return HttpClient.newHttpClient().send(
        HttpRequest.newBuilder(URI.create(base + path)).header("Cookie", COOKIE + "=" + cookie).build(),
        HttpResponse.BodyHandlers.ofString());
  }

  String cookie() {
    for (HttpCookie c : jar.getCookieStore().getCookies()) {
      if (c.getName().equals(COOKIE)) return c.getValue();
    }
    return null;
  }

  static void assertGone(String id) {
    try {
      client.get(id);
      fail("the session still exists");
    } catch (SessionNotFoundException expected) {
      // ok
    }
  }

  @Test
  public void sessionSurvivesRequests() throws Exception {
    assertEquals("count=1", get("/count").body());
    String id = cookie();
    assertNotNull(id);
    assertEquals("count=2", get("/count").body());
    HttpResponse<String> third = get("/count");
    assertEquals("count=3", third.body());
    assertEquals(id, cookie());
    assertTrue("no new cookie for a loaded session", third.headers().allValues("set-cookie").isEmpty());
    assertEquals("3", client.get(id).getAttributesMap().get("count").toStringUtf8()); // one attribute, JSON
    String read = get("/read").body();
    assertTrue(read, read.contains("count=3 new=false requested=true valid=true"));
  }

  @Test
  public void cookiesAreSecureByDefault() {
    assertTrue("a Secure cookie unless the application says otherwise", new ValkeySessionFilter.Options().secure);
  }

  @Test
  public void cookieFlags() throws Exception {
    String setCookie = get("/count").headers().firstValue("set-cookie").orElseThrow();
    assertTrue(setCookie, setCookie.startsWith(COOKIE + "=") && setCookie.contains("HttpOnly")
        && setCookie.contains("SameSite=Lax") && setCookie.contains("Path=/"));
  }

  @Test
  public void expiresAfterIdleTimeout() throws Exception {
    assertEquals("idle=2", get("/idle?s=2").body());
    String id = cookie();
    assertEquals(2, client.get(id).getIdleTimeout().getSeconds());
    Thread.sleep(3500);
    assertEquals("count=1", get("/count").body());
    assertNotEquals(id, cookie());
  }

  @Test
  public void logoutDestroysTheSession() throws Exception {
    get("/count");
    String id = cookie();
    HttpResponse<String> out = get("/logout");
    assertEquals(200, out.statusCode());
    assertGone(id);
    assertNull("cookie expired", cookie());
    assertEquals("none", get("/read").body());
    assertEquals("count=1", getWithCookie("/count", id).body());
  }

  @Test
  public void loginRotatesTheId() throws Exception {
    get("/add?item=apple");
    String before = cookie();
    assertEquals("user=alice rotated=true", get("/login?user=alice").body());
    String after = cookie();
    assertNotEquals(before, after);
    assertGone(before);
    String read = get("/read").body();
    assertTrue(read, read.startsWith("user=alice items=[apple]"));
    assertEquals("\"alice\"", client.get(after).getAttributesMap().get("user").toStringUtf8());
    assertEquals("the old cookie finds nothing", "count=1", getWithCookie("/count", before).body());
  }

  @Test
  public void concurrentRequestsKeepBothItems() throws Exception {
    get("/add?item=first");
    String id = cookie();
    long merges = ValkeySessionFilter.MERGES.get();
    CompletableFuture<HttpResponse<String>> a = http.sendAsync(
        HttpRequest.newBuilder(URI.create(base + "/add?item=x&sleep=600")).build(), HttpResponse.BodyHandlers.ofString());
    CompletableFuture<HttpResponse<String>> b = http.sendAsync(
        HttpRequest.newBuilder(URI.create(base + "/add?item=y&sleep=600")).build(), HttpResponse.BodyHandlers.ofString());
    assertEquals(200, a.get().statusCode());
    assertEquals(200, b.get().statusCode());
    String items = client.get(id).getAttributesMap().get("items").toStringUtf8();
    assertTrue(items, items.startsWith("[\"first\",") && items.contains("\"x\"") && items.contains("\"y\""));
    assertEquals(id, cookie());
    assertTrue("the second save hit ABORTED and merged", ValkeySessionFilter.MERGES.get() > merges);
  }

  @Test
  public void invalidCookieIsANewSession() throws Exception {
    for (String bad : List.of("not-an-id", "%%%%", "A".repeat(300),
        "Qm9ndXNJZEJvZ3VzSWRCb2d1c0lkQm9ndXNJZEJvZ3VzSWQ")) { // id-shaped, unknown
      HttpResponse<String> res = getWithCookie("/count", bad);
      assertEquals(bad, 200, res.statusCode());
      assertEquals("count=1", res.body());
      String set = res.headers().firstValue("set-cookie").orElseThrow();
      assertFalse(set.contains(bad));
    }
    HttpResponse<String> read = getWithCookie("/read", "not-an-id");
    assertEquals("none", read.body());
  }

  @Test
  public void serviceDownIsAServerError() throws Exception {
    HttpResponse<String> fresh = get("/down/count");
    assertEquals(500, fresh.statusCode());
    assertFalse(fresh.body().contains("count="));
    assertTrue("no cookie", fresh.headers().allValues("set-cookie").isEmpty());
    get("/count"); // a real session, presented to the broken instance: an error, not logged out
    String id = cookie();
    HttpResponse<String> known = getWithCookie("/down/count", id);
    assertEquals(500, known.statusCode());
    assertTrue("cookie untouched", known.headers().allValues("set-cookie").isEmpty());
    assertEquals("1", client.get(id).getAttributesMap().get("count").toStringUtf8());
  }

  /** valkey-cli against the service's Valkey (with-service.sh's SESSION_SERVICE_VALKEY_PORT). */
  static void valkeyCli(String... args) throws Exception {
    String port = System.getenv("SESSION_SERVICE_VALKEY_PORT");
    assertNotNull("with-service.sh sets SESSION_SERVICE_VALKEY_PORT", port);
    List<String> cmd = new ArrayList<>(List.of("valkey-cli", "-p", port));
    cmd.addAll(List.of(args));
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes());
    assertEquals(out, 0, p.waitFor());
  }

  @Test
  public void storageFullIsA503AndTheSessionIsKept() throws Exception {
    assertEquals("count=1", get("/count").body());
    String id = cookie();
    valkeyCli("CONFIG", "SET", "maxmemory-policy", "noeviction");
    valkeyCli("CONFIG", "SET", "maxmemory", "1");
    try {
      String read = get("/read").body();
      assertTrue("reads keep working: " + read, read.contains("count=1 new=false"));
      for (String path : List.of("/count", "/login?user=eve")) {
        HttpResponse<String> r = get(path);
        assertEquals(path + ": " + r.body(), 503, r.statusCode());
        assertEquals(ValkeySessionFilter.STORAGE_FULL_MESSAGE, r.body());
        assertTrue("cookie untouched", r.headers().allValues("set-cookie").isEmpty());
      }
    } finally {
      valkeyCli("CONFIG", "SET", "maxmemory", "0");
    }
    assertEquals(id, cookie());
    assertEquals("count=2", get("/count").body());
  }

  @Test
  public void sessionDeletedByAnotherDevice() throws Exception {
    get("/count");
    get("/count");
    String id = cookie();
    assertTrue(client.delete(id)); // another device logs out
    HttpResponse<String> res = get("/count");
    assertEquals(200, res.statusCode());
    assertEquals("count=1", res.body());
    assertNotEquals(id, cookie());
  }

  @Test
  public void sessionDeletedDuringARequestIsNotResurrected() throws Exception {
    get("/add?item=a");
    String id = cookie();
    CompletableFuture<HttpResponse<String>> slow = http.sendAsync(
        HttpRequest.newBuilder(URI.create(base + "/add?item=b&sleep=800")).build(), HttpResponse.BodyHandlers.ofString());
    Thread.sleep(300);
    assertTrue(client.delete(id));
    assertEquals(200, slow.get().statusCode());
    assertGone(id);
    assertNull("cookie expired", cookie());
  }

  @Test
  public void valuesGsonCannotWriteAreRejectedByName() {
    List<Object> circular = new ArrayList<>();
    circular.add(circular);
    for (Object bad : List.of(Double.NaN, circular, Thread.currentThread())) {
      try {
        ValkeySessionFilter.encode("v", bad);
        fail("encoded " + bad.getClass());
      } catch (IllegalArgumentException e) {
        assertTrue(e.getMessage(), e.getMessage().startsWith("session attribute \"v\" cannot be stored: "));
      }
    }
    assertEquals("{\"a\":[1,\"x\"]}", ValkeySessionFilter.encode("v", Map.of("a", List.of(1, "x"))).toString());
  }

  @Test
  public void unserializableAttributeIsAClearError() throws Exception {
    get("/count");
    String id = cookie();
    HttpResponse<String> caught = get("/bad?catch=1");
    assertEquals(400, caught.statusCode());
    assertTrue(caught.body(), caught.body().contains("session attribute \"bad\" cannot be stored")
        && caught.body().contains("NaN"));
    HttpResponse<String> thrown = get("/bad");
    assertEquals(500, thrown.statusCode());
    Map<String, com.google.protobuf.ByteString> stored = client.get(id).getAttributesMap();
    assertEquals("unchanged", "1", stored.get("count").toStringUtf8());
    assertFalse(stored.containsKey("bad"));
  }
}
