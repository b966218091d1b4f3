package io.valkeysessions.servlet;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import java.util.Objects;
import java.util.TreeSet;

/**
 * The three-way merge of one attribute's JSON after a version conflict, the same rules as the
 * other adapters (clients/go/gorillastore, clients/typescript/src/express-store.ts): a value
 * changed by this request only wins; one changed by the other request only is kept; arrays and
 * objects changed by both are merged item by item (items added by each are kept, items removed
 * by this request go). Anything else changed by both is a {@link Conflict}.
 */
final class JsonMerge {
  private JsonMerge() {}

  /** Both requests changed one value in incompatible ways. */
  static final class Conflict extends Exception {
    Conflict() {
      super("conflicting changes", null, false, false);
    }
  }

  /** null stands for "absent"; the result null means "remove the key". */
  static JsonElement merge(JsonElement base, JsonElement theirs, JsonElement mine) throws Conflict {
    if (Objects.equals(mine, base)) return theirs;
    if (Objects.equals(theirs, base) || Objects.equals(theirs, mine)) return mine;
    if (theirs != null && mine != null && theirs.isJsonArray() && mine.isJsonArray()) {
      JsonArray b = base != null && base.isJsonArray() ? base.getAsJsonArray() : new JsonArray();
      JsonArray t = theirs.getAsJsonArray(), m = mine.getAsJsonArray(), out = new JsonArray();
      for (JsonElement v : t) {
        if (!b.contains(v) || m.contains(v)) out.add(v);
      }
      for (JsonElement v : m) {
        if (!b.contains(v) && !out.contains(v)) out.add(v);
      }
      return out;
    }
    if (theirs != null && mine != null && theirs.isJsonObject() && mine.isJsonObject()) {
      JsonObject b = base != null && base.isJsonObject() ? base.getAsJsonObject() : new JsonObject();
      JsonObject t = theirs.getAsJsonObject(), m = mine.getAsJsonObject(), out = new JsonObject();
      TreeSet<String> keys = new TreeSet<>(b.keySet());
      keys.addAll(t.keySet());
      keys.addAll(m.keySet());
      for (String k : keys) {
        JsonElement v = merge(b.get(k), t.get(k), m.get(k));
        if (v != null) out.add(k, v);
      }
      return out;
    }
    throw new Conflict();
  }
}
