package io.valkeysessions.servlet;

import com.google.gson.JsonElement;
import io.valkeysessions.session.v1.Session;
import java.util.Collections;
import java.util.Enumeration;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;
import javax.servlet.ServletContext;
import javax.servlet.http.HttpSession;

/**
 * One request's view of a service session. Attribute values are kept as the application's
 * objects during the request and written as JSON (gson) when the filter saves the session, so a
 * list changed in place is saved too. Values read from the service come back as gson decodes JSON:
 * {@code Long} (integral numbers), {@code Double}, {@code String}, {@code Boolean}, {@code List},
 * {@code Map}. Not thread-safe beyond its own methods (one request).
 */
final class ValkeyHttpSession implements HttpSession {
  private final ValkeySessionFilter.SessionRequest owner;
  String id;
  long creationTime;
  long lastAccessedTime;
  /** Version and canonical JSON per attribute as read or last saved (the merge base). */
  long version;
  Map<String, JsonElement> base = new HashMap<>();
  /** The idle timeout stored in the service, in seconds. */
  int storedIdle;
  int idle;
  boolean idleChanged;
  final boolean isNew;
  boolean valid = true;
  final Map<String, Object> values = new LinkedHashMap<>();

  ValkeyHttpSession(ValkeySessionFilter.SessionRequest owner, Session s, boolean isNew) {
    this.owner = owner;
    this.isNew = isNew;
    adopt(s);
    values.putAll(ValkeySessionFilter.decodeAll(s.getAttributesMap()));
  }

  /** Takes id, times, version, base and idle timeout from a stored session. */
  void adopt(Session s) {
    id = s.getId();
    creationTime = s.getCreatedAt().getSeconds() * 1000 + s.getCreatedAt().getNanos() / 1_000_000;
    lastAccessedTime = s.getLastAccessedAt().getSeconds() * 1000 + s.getLastAccessedAt().getNanos() / 1_000_000;
    version = s.getVersion();
    base = ValkeySessionFilter.canonicalAll(s.getAttributesMap());
    storedIdle = (int) Math.max(1, Math.min(Integer.MAX_VALUE, s.getIdleTimeout().getSeconds()));
    if (!idleChanged) idle = storedIdle;
  }

  private void check() {
    if (!valid) throw new IllegalStateException("the session has been invalidated");
  }

  @Override
  public synchronized long getCreationTime() {
    check();
    return creationTime;
  }

  @Override
  public synchronized String getId() {
    return id;
  }

  @Override
  public synchronized long getLastAccessedTime() {
    check();
    return lastAccessedTime;
  }

  @Override
  public ServletContext getServletContext() {
    return owner.getServletContext();
  }

  /**
   * The idle timeout, clamped to 1 s .. the filter's maximum (24 h by default); 0 or less
   * ("never expires" in the Servlet API) is the maximum.
   */
  @Override
  public synchronized void setMaxInactiveInterval(int interval) {
    check();
    idle = owner.filter.clampIdle(interval);
    idleChanged = true;
  }

  @Override
  public synchronized int getMaxInactiveInterval() {
    return idle;
  }

  @Override
  @Deprecated
  public javax.servlet.http.HttpSessionContext getSessionContext() {
    return null;
  }

  @Override
  public synchronized Object getAttribute(String name) {
    check();
    return values.get(name);
  }

  @Override
  @Deprecated
  public Object getValue(String name) {
    return getAttribute(name);
  }

  @Override
  public synchronized Enumeration<String> getAttributeNames() {
    check();
    return Collections.enumeration(new java.util.ArrayList<>(values.keySet()));
  }

  @Override
  @Deprecated
  public synchronized String[] getValueNames() {
    check();
    return values.keySet().toArray(new String[0]);
  }

  /**
   * Stores {@code value} (null removes). It must be JSON-encodable by gson: otherwise {@link
   * IllegalArgumentException} naming the attribute, and the session is unchanged.
   */
  @Override
  public synchronized void setAttribute(String name, Object value) {
    check();
    if (name == null) throw new IllegalArgumentException("session attribute name must not be null");
    if (value == null) {
      values.remove(name);
      return;
    }
    ValkeySessionFilter.encode(name, value); // throws IllegalArgumentException
    values.put(name, value);
  }

  @Override
  @Deprecated
  public void putValue(String name, Object value) {
    setAttribute(name, value);
  }

  @Override
  public synchronized void removeAttribute(String name) {
    check();
    values.remove(name);
  }

  @Override
  @Deprecated
  public void removeValue(String name) {
    removeAttribute(name);
  }

  /** Deletes the session in the service (logout) and expires the cookie. */
  @Override
  public void invalidate() {
    synchronized (this) {
      check();
      valid = false;
    }
    owner.invalidated(this);
  }

  @Override
  public synchronized boolean isNew() {
    check();
    return isNew;
  }
}
