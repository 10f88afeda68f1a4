// Browser test of the wallboard's broken feed: when /ws/supervisor breaks without saying why
// (no 4001), the wallboard asks vacd whether its sign-in still holds (`GET /api/v1/me`) and then
// reconnects or goes back to the sign-in form. The browser reaches vacd through a TCP relay in
// this script standing for the network, which cuts the feed as a dropped Wi-Fi or a sleeping
// laptop does; vacd itself, the logout and the data are real.
// 1. The feed is cut, the sign-in holds: the wallboard reconnects and shows what happens next.
// 2. vacd is unreachable for a while (the check cannot be made): the wallboard keeps trying and
//    is live again once vacd answers.
// 3. sam is logged out (through the API) while the network holds back what vacd sends — its
//    4001 close never arrives — and then the feed is cut: the check says the sign-in ended, and
//    the wallboard shows the sign-in form; signing in again brings the board back.
// Usage: node wallboard-reconnect.mjs BASE_URL SCREENSHOTS_DIR — run by tests/browser.rs.
import { connect, createServer } from "node:net";
import { launch, WAIT } from "./chromium.mjs";

const [base, screenshots] = process.argv.slice(2);
const vacd = new URL(base);

// The relay: every connection the browser opens is relayed to vacd; those that start with the
// feed's upgrade request are the feeds, which `cut` closes (the browser gets no close frame),
// `hold` keeps open while dropping what vacd sends on them. Down, it closes every connection
// it has and each new one at once.
const links = new Set();
let down = false;
const relay = createServer((browser) => {
  if (down) return browser.destroy();
  const server = connect(Number(vacd.port), vacd.hostname);
  const link = { browser, server, feed: false, held: false };
  link.serverClosed = new Promise((closed) => server.once("close", closed));
  links.add(link);
  browser.once("data", (head) => { link.feed = head.toString("latin1").startsWith("GET /ws/supervisor"); });
  browser.on("data", (data) => server.write(data));
  server.on("data", (data) => { if (!link.held) browser.write(data); });
  browser.on("close", () => { links.delete(link); server.destroy(); });
  server.on("close", () => { if (!link.held) browser.destroy(); });
  browser.on("error", () => {});
  server.on("error", () => {});
});
await new Promise((listening) => relay.listen(0, "127.0.0.1", listening));
const front = `http://127.0.0.1:${relay.address().port}`;
const feeds = () => {
  const open = [...links].filter((l) => l.feed);
  if (open.length !== 1) throw new Error(`${open.length} feeds open, not one`);
  return open;
};
const cut = (open) => { for (const l of open) l.browser.destroy(); };

// Data only a live feed brings: an email for Sales DE (nobody is ready, so it waits there),
// made by ada through the API.
const api = async (path, token, body) => {
  const response = await fetch(`${base}${path}`, {
    method: body ? "POST" : "GET",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body && JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
  return response.status === 204 ? null : response.json();
};
const ada = (await api("/api/v1/auth/login", null, { tenant: "demo", username: "ada", password: "demo-password" })).token;
const salesDe = (await api("/api/v1/queues?limit=500", ada)).items.find((q) => q.name === "Sales DE").id;
const newEmail = async () =>
  (await api("/api/v1/interactions", ada, { channel: "email", queue_id: salesDe, language: "de", subject: "Hallo" })).id;

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.setDefaultTimeout(WAIT);
  page.on("pageerror", (e) => { console.error(`page error: ${e.message}`); process.exitCode = 1; });
  const status = (text) => page.getByRole("status").filter({ hasText: text }).first().waitFor();
  const board = page.getByRole("region", { name: "Floor" });
  const signIn = async () => {
    await page.getByLabel("User").fill("sam");
    await page.getByLabel("Password").fill("demo-password");
    const [login] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith("/api/v1/auth/login")),
      page.getByRole("button", { name: "Sign in" }).click(),
    ]);
    await status("live");
    await page.getByRole("article", { name: "Queue Sales DE" }).waitFor();
    return (await login.json()).token;
  };
  const shows = async (interaction) => {
    await page.locator(`tr[data-interaction="${interaction}"]`).getByText("Sales DE").waitFor();
  };

  await page.goto(`${front}/wallboard`);
  const sam = await signIn();

  // 1. Cut, signed in: reconnecting, then live with what came after.
  cut(feeds());
  await status("reconnecting…");
  await status("live");
  await shows(await newEmail());
  if (await page.locator("#login").isVisible()) throw new Error("a cut feed signed the wallboard out");
  console.log("reconnected");

  // 2. vacd unreachable: the check fails, which is no reason to sign out; the wallboard keeps
  //    trying and comes back when vacd answers again.
  const checkFailed = page.waitForEvent("requestfailed", (r) => r.url().endsWith("/api/v1/me"));
  down = true;
  for (const l of links) l.browser.destroy();
  await checkFailed;
  await status("reconnecting…");
  down = false;
  await status("live");
  await shows(await newEmail());
  if (!(await board.isVisible())) throw new Error("an unreachable vacd signed the wallboard out");
  console.log("reconnected after vacd was unreachable");

  // 3. Logged out while the network held the feed: vacd closes it (4001), the wallboard never
  //    hears; when the feed is cut, the check finds the sign-in ended.
  const held = feeds();
  for (const l of held) l.held = true;
  await api("/api/v1/auth/logout", sam, {});
  await Promise.all(held.map((l) => l.serverClosed));
  cut(held);
  await page.getByRole("alert").filter({ hasText: "The sign-in has ended; sign in again." }).waitFor();
  await page.getByRole("button", { name: "Sign in" }).waitFor();
  await status("signed out");
  if (await board.isVisible()) throw new Error("the board stays after its sign-in ended");
  await page.screenshot({ path: `${screenshots}/wallboard-signed-out.png`, fullPage: true });
  await signIn();
  await shows(await newEmail());
  console.log("signed out when the sign-in had ended, and in again");
} finally {
  await browser.close();
  relay.close();
  for (const l of links) l.browser.destroy();
}
