// Headless Chromium uses the todo page like a person: add, toggle, reload, delete. The session
// lives only in the SESSION cookie and valkey-sessions, so what survives a reload was stored there.
//   GATEWAY_URL    the running gateway (run.sh starts Valkey, the service and the gateway)
//   ARTIFACTS_DIR  where the screenshot goes (default ../../target/artifacts)
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";

const base = process.env.GATEWAY_URL;
const artifacts = resolve(process.env.ARTIFACTS_DIR ?? new URL("../../target/artifacts", import.meta.url).pathname);
let browser;

before(async () => {
  assert.ok(base, "GATEWAY_URL must point at a running todo-gateway");
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
});

const item = (page, title) => page.locator("#todos li", { hasText: title });

test("a todo added in the page survives a reload, toggled and deleted", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(base + "/");
  await item(page, "Hello World").waitFor();

  await page.fill("#title", "Written in Chromium");
  await page.fill("#description", "added by the browser test");
  await page.click("button[type=submit]");
  await item(page, "Written in Chromium").waitFor();

  await item(page, "Written in Chromium").locator("input[type=checkbox]").check();
  await page.locator("#todos li.done", { hasText: "Written in Chromium" }).waitFor();

  await page.reload();
  await item(page, "Written in Chromium").waitFor();
  assert.equal(await item(page, "Written in Chromium").getAttribute("class"), "done");
  assert.equal(await page.locator("#todos li").count(), 2);
  assert.equal(await page.textContent("#error"), "");

  const [cookie] = (await context.cookies()).filter((c) => c.name === "SESSION");
  assert.ok(cookie, "the gateway set the SESSION cookie");
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, "Lax");
  assert.equal(cookie.path, "/");
  assert.equal(cookie.value.length, 55);

  mkdirSync(artifacts, { recursive: true });
  const shot = join(artifacts, "todo-gateway.png");
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);

  await item(page, "Hello World").getByRole("button", { name: "Delete Hello World" }).click();
  await item(page, "Hello World").waitFor({ state: "detached" });
  await page.reload();
  await item(page, "Written in Chromium").waitFor();
  assert.equal(await item(page, "Hello World").count(), 0);

  // Another browser has its own session: it sees only the demo todo.
  const other = await browser.newContext();
  const otherPage = await other.newPage();
  await otherPage.goto(base + "/");
  await item(otherPage, "Hello World").waitFor();
  assert.equal(await item(otherPage, "Written in Chromium").count(), 0);

  // Logging out starts over in the same browser.
  await page.click("#logout");
  await item(page, "Hello World").waitFor();
  assert.equal(await item(page, "Written in Chromium").count(), 0);
  await other.close();
  await context.close();
});

test("a page on another origin cannot change this site's sessions (CSRF)", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(base + "/");
  await item(page, "Hello World").waitFor();

  // Same page, another origin: localhost is not 127.0.0.1 to the browser.
  const foreign = base.replace("127.0.0.1", "localhost");
  assert.notEqual(foreign, base);
  const attacker = await context.newPage();
  await attacker.goto(foreign + "/");
  const answered = attacker.waitForResponse((r) => r.url() === base + "/todos" && r.request().method() === "POST");
  await attacker.evaluate(async (target) => {
    // A "simple" cross-origin request: sent without a preflight, carrying the browser's Origin.
    await fetch(target + "/todos", {
      method: "POST", mode: "no-cors", credentials: "include",
      headers: { "Content-Type": "text/plain" },
      body: JSON.stringify({ title: "Planted by another site", description: "csrf" }),
    }).catch(() => {});
  }, base);
  const response = await answered;
  // 403 is the CSRF check: without it this text/plain body would be refused with 415.
  assert.equal(response.status(), 403, "the gateway refused the foreign origin");

  await page.reload();
  await item(page, "Hello World").waitFor();
  assert.equal(await item(page, "Planted by another site").count(), 0);
  await context.close();
});
