// Browser test of the agent console: Debian's chromium (headless) driven by playwright-core.
// Agent bruno signs in on /console and goes ready; the Rust side (tests/browser.rs) then starts
// a German visitor chat. The offer shows with a countdown; bruno accepts, sees the visitor's
// message and her history, expands the /hi text module (her name filled in), sends it, sees the
// visitor's read receipt, is refused going offline while holding the chat (the error shows in
// the status line), ends the chat and finishes wrap-up; then accepts and ends an email, shown as
// a plain card. Screenshots go to SCREENSHOTS.
// Usage: node console.mjs BASE_URL SCREENSHOTS_DIR — run by tests/browser.rs.
import { chromium } from "playwright-core";

const [base, screenshots] = process.argv.slice(2);
const WAIT = 15000;
const GREETING = "Hallo Vera Vogel, danke für Ihre Nachricht. Wie kann ich helfen?";

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.setDefaultTimeout(WAIT);
  page.on("pageerror", (e) => { console.error(`page error: ${e.message}`); process.exitCode = 1; });
  await page.goto(`${base}/console`);
  await page.getByLabel("User").fill("bruno");
  await page.getByLabel("Password").fill("demo-password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#presence", { hasText: "offline" }).waitFor();
  await page.getByRole("button", { name: "Ready" }).click();
  await page.locator("#presence", { hasText: "ready (inbound)" }).waitFor();
  await page.locator('#presence-buttons [aria-pressed="true"]', { hasText: "Ready" }).waitFor();

  // The offer: channel, customer (from the screen pop) and a running countdown.
  const offer = page.locator('article.offer[data-channel="chat"]');
  await offer.getByRole("heading", { name: "chat — Vera Vogel" }).waitFor();
  const countdown = offer.locator(".countdown");
  const first = await countdown.textContent();
  if (!/^\d+ s left$/.test(first)) throw new Error(`countdown shows ${first}`);
  await page.waitForFunction((shown) => document.querySelector("article.offer .countdown")?.textContent !== shown, first);
  await page.screenshot({ path: `${screenshots}/console-offer.png`, fullPage: true });
  await offer.getByRole("button", { name: "Accept" }).click();
  await offer.waitFor({ state: "detached" });

  // The chat: the visitor's message, the customer's history beside it.
  const panel = page.locator('[role="tabpanel"][data-channel="chat"]');
  const transcript = panel.getByRole("log", { name: "Transcript" });
  await transcript.getByText("ich habe eine Frage zu meiner Rechnung").waitFor();
  await page.getByRole("tab", { name: "chat: Vera Vogel", selected: true }).waitFor();
  const customer = panel.getByRole("complementary", { name: "Customer" });
  await customer.getByRole("list", { name: "History" }).getByText("Rechnung März").waitFor();
  await customer.getByText("email: vera@example.com").waitFor();

  // The /hi shortcut expands to the German greeting with the customer's name; Enter sends it.
  const box = panel.getByLabel("Message");
  await box.fill("/hi");
  await box.press("Enter");
  await page.waitForFunction((text) => document.querySelector('[role="tabpanel"] textarea')?.value === text, GREETING);
  await box.press("Enter");
  const sent = transcript.locator(".msg.mine", { hasText: GREETING });
  await sent.locator(".receipt", { hasText: "read" }).waitFor();
  if ((await box.inputValue()) !== "") throw new Error("the composer was not cleared");
  await page.screenshot({ path: `${screenshots}/console-chat.png`, fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: `${screenshots}/console-phone.png`, fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });

  // Refusals show in the status line: no going offline while holding a chat.
  await page.getByRole("button", { name: "Offline" }).click();
  await page.getByRole("status").filter({ hasText: "agent_has_work" }).waitFor();

  // End, wrap-up, done: the panel goes.
  await panel.getByRole("button", { name: "End", exact: true }).click();
  await panel.getByText("Wrap-up").waitFor();
  await panel.getByRole("button", { name: "Done" }).click();
  await panel.waitFor({ state: "detached" });
  await page.getByText("No open interactions").waitFor();

  // An email (the Rust side creates it once bruno is ready again): a plain card, no chat.
  const email = page.locator('article.offer[data-channel="email"]');
  await email.getByRole("heading", { name: "email — Vera Vogel" }).waitFor();
  await email.getByRole("button", { name: "Accept" }).click();
  const card = page.locator('[role="tabpanel"][data-channel="email"]');
  await card.getByText("Mahnung").waitFor();
  if (await card.getByLabel("Message").count()) throw new Error("an email got a chat composer");
  await page.screenshot({ path: `${screenshots}/console-ticket.png`, fullPage: true });
  await card.getByRole("button", { name: "End", exact: true }).click();
  await card.getByRole("button", { name: "Done" }).click();
  await card.waitFor({ state: "detached" });
  console.log("console ok");
} finally {
  await browser.close();
}
