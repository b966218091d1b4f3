// Headless Chromium uses the todo page like a person: add, toggle, reload, delete; two browsers
// sign in as one user, see each other under "Your sessions", and one logs the other out. The
// session lives only in the SESSION cookie and valkey-sessions, so what survives a reload was
// stored there.
//   GATEWAY_URL    the running gateway (run.sh starts Valkey, the service and the gateway)
//   ARTIFACTS_DIR  where the screenshot goes (default ../../target/artifacts)
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { createServer } from "node:http";
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

  // Another site: a page of its own on another loopback port (named localhost, which is not
  // 127.0.0.1 to the browser), not the gateway's page, whose Content-Security-Policy would stop
  // its fetch before the gateway could.
  const elsewhere = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "text/html" });
    res.end("<!doctype html><title>elsewhere</title>");
  });
  await new Promise((ready) => elsewhere.listen(0, "127.0.0.1", ready));
  const foreign = `http://localhost:${elsewhere.address().port}`;
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
  elsewhere.close();
});

const sessionItems = (page) => page.locator("#sessions li");

async function signIn(page, username) {
  await page.locator("#signin").waitFor();
  await page.fill("#username", username);
  await page.click("#signin button[type=submit]");
  await page.locator("#principal", { hasText: username }).waitFor();
}

async function waitForSessions(page, count) {
  await page.waitForFunction((n) => document.querySelectorAll("#sessions li").length === n, count);
}

test("two browsers signed in as one user see both sessions; one logs out the other", async () => {
  const laptop = await browser.newContext();
  const desktop = await browser.newContext();
  const pages = [];
  for (const context of [laptop, desktop]) {
    const page = await context.newPage();
    await page.goto(base + "/");
    await item(page, "Hello World").waitFor();
    assert.equal(await page.locator("#signed-in").isVisible(), false, "not signed in yet");
    pages.push(page);
  }
  const [one, two] = pages;
  // A todo added before signing in is still there after: the session moved, it did not restart.
  await one.fill("#title", "Kept across the login");
  await one.click("#add button[type=submit]");
  await item(one, "Kept across the login").waitFor();
  const [before] = (await laptop.cookies()).filter((c) => c.name === "SESSION");

  await signIn(one, "grace");
  await signIn(two, "grace");
  const [after] = (await laptop.cookies()).filter((c) => c.name === "SESSION");
  assert.notEqual(after.value, before.value, "signing in gave the browser a new session id");
  assert.equal(after.httpOnly, true);
  await one.reload();
  await item(one, "Kept across the login").waitFor();

  for (const page of pages) {
    await waitForSessions(page, 2);
    assert.equal(await page.textContent("#principal"), "grace");
    const mine = sessionItems(page).filter({ hasText: "(this browser)" });
    assert.equal(await mine.count(), 1, "exactly one session is this browser's");
    assert.match(await mine.textContent(), /Chrome on Linux/);
    assert.match(await mine.textContent(), /last active /);
  }
  // Each marks its own: the handles of "(this browser)" differ.
  const own = (page) => sessionItems(page).filter({ hasText: "(this browser)" }).getAttribute("data-handle");
  assert.notEqual(await own(one), await own(two));

  mkdirSync(artifacts, { recursive: true });
  await one.screenshot({ path: join(artifacts, "todo-gateway-sessions.png"), fullPage: true });

  await one.click("#logout-others");
  await waitForSessions(one, 1);
  assert.equal(await one.textContent("#error"), "");

  // The other browser is signed out: after a reload the sign-in form is back, with a fresh
  // anonymous session (the demo todo only).
  await two.reload();
  await two.locator("#signin").waitFor();
  assert.equal(await two.locator("#signed-in").isVisible(), false);
  await item(two, "Hello World").waitFor();
  assert.equal(await sessionItems(two).count(), 0);

  await one.reload();
  await waitForSessions(one, 1);
  assert.equal(await sessionItems(one).filter({ hasText: "(this browser)" }).count(), 1);
  assert.equal(await one.textContent("#principal"), "grace");

  // Logging out of the last session shows the sign-in form again.
  await one.click("#logout");
  await one.locator("#signin").waitFor();
  await laptop.close();
  await desktop.close();
});
