// Browser test of the agent console: Debian's chromium (headless) driven by playwright-core.
// Agent bruno signs in on /console (after a wrong password) and goes ready; the Rust side
// (tests/browser.rs) then starts German visitor chats. The first offer shows with a countdown;
// bruno accepts with the keyboard (Enter), sees the visitor's message, her history and that she
// is typing; a second chat arrives in its own tab. He expands the /hi text module (the
// visitor's name filled in) and sends it, sees the read receipt; reads the second chat and
// invites alice into it; a new line there is unread, and after a reload — his work found
// again, the visitor's read receipt too — that line still is, and what he had read is not;
// answers the second chat from the text-module picker, and that visitor ends it; is refused going offline while holding the first (the error shows
// in the status line), ends it and finishes wrap-up. Then an email made through the API (no
// ticket thread, so no reply editor; tickets.mjs answers real tickets): he rejects it once,
// accepts it when it comes back, and transfers it to alice. Last he signs out. Screenshots go
// to SCREENSHOTS.
// Usage: node console.mjs BASE_URL ALICE_ID SCREENSHOTS_DIR — run by tests/browser.rs.
import { consolePage, launch, signIn } from "./chromium.mjs";

const [base, aliceId, screenshots] = process.argv.slice(2);
const GREETING = (name) => `Hallo ${name}, danke für Ihre Nachricht. Wie kann ich helfen?`;

const browser = await launch();
try {
  const page = await consolePage(browser, base);
  await page.getByLabel("User").fill("bruno");
  await page.getByLabel("Password").fill("not-the-password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").filter({ hasText: /./ }).waitFor();
  await signIn(page, "bruno");
  await page.getByRole("button", { name: "Ready" }).click();
  await page.locator("#presence", { hasText: "ready (inbound)" }).waitFor();
  await page.locator('#presence-buttons [aria-pressed="true"]', { hasText: "Ready" }).waitFor();

  // The offer: channel, customer (from the screen pop) and a running countdown.
  const offerFrom = (name) => page.locator("article.offer").filter({ has: page.getByRole("heading", { name }) });
  const offer = offerFrom("chat — Vera Vogel");
  await offer.waitFor();
  const countdown = offer.locator(".countdown");
  const first = await countdown.textContent();
  if (!/^\d+ s left$/.test(first)) throw new Error(`countdown shows ${first}`);
  await page.waitForFunction((shown) => document.querySelector("article.offer .countdown")?.textContent !== shown, first);
  await page.screenshot({ path: `${screenshots}/console-offer.png`, fullPage: true });
  // Keyboard only: the offer's Accept has the focus, and then the chat's composer.
  await page.keyboard.press("Enter");
  await offer.waitFor({ state: "detached" });

  // The chat: the visitor's message, the customer's history beside it.
  await page.getByRole("tab", { name: "chat: Vera Vogel", selected: true }).waitFor();
  const panel = page.getByRole("tabpanel", { name: "chat: Vera Vogel" });
  const transcript = panel.getByRole("log", { name: "Transcript" });
  await transcript.getByText("ich habe eine Frage zu meiner Rechnung").waitFor();
  await page.waitForFunction(() => document.activeElement?.matches('[role="tabpanel"] textarea'));
  const customer = panel.getByRole("complementary", { name: "Customer" });
  await customer.getByRole("list", { name: "History" }).getByText("Rechnung März").waitFor();
  await customer.getByText("email: vera@example.com").waitFor();
  await panel.getByText("Vera Vogel is typing…").waitFor();

  // A second chat comes in beside the first: its own tab, not shown yet, with an unread badge.
  const secondOffer = offerFrom("chat — Klara Klein");
  await secondOffer.getByRole("button", { name: "Accept" }).click();
  const secondTab = page.getByRole("tab", { name: "chat: Klara Klein" });
  await secondTab.and(page.locator('[aria-selected="false"]')).getByLabel("1 unread").waitFor();

  // The /hi shortcut expands to the German greeting with the customer's name; Enter sends it.
  const box = panel.getByLabel("Message");
  await box.fill("/hi");
  await box.press("Enter");
  await page.waitForFunction((text) => [...document.querySelectorAll('[role="tabpanel"] textarea')].some((t) => t.value === text), GREETING("Vera Vogel"));
  await box.press("Enter");
  const sent = transcript.locator(".msg.mine", { hasText: GREETING("Vera Vogel") });
  await sent.locator(".receipt", { hasText: "read" }).waitFor();
  if ((await box.inputValue()) !== "") throw new Error("the composer was not cleared");
  // A line the chat refuses (over its 4,000 characters) is marked not sent, and its text comes
  // back to the composer.
  const long = "x".repeat(4001);
  await box.fill(long);
  await box.press("Enter");
  await transcript.locator(".msg.mine", { hasText: "xxxx" }).locator(".receipt", { hasText: "not sent" }).waitFor();
  if ((await box.inputValue()) !== long) throw new Error("the refused text was lost");
  await box.fill("");
  await page.screenshot({ path: `${screenshots}/console-chat.png`, fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: `${screenshots}/console-phone.png`, fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });

  // The second chat read (its tab shown) and alice invited into it (shown once the chat has
  // taken the read before it), then back to the first.
  await secondTab.click();
  const second = page.getByRole("tabpanel", { name: "chat: Klara Klein" });
  await second.getByText("mein Paket ist noch nicht angekommen").waitFor();
  await second.getByLabel("Invite agent").selectOption(`agent:${aliceId}`);
  await second.getByRole("button", { name: "Invite" }).click();
  await second.getByText("Alice Andersen joined").waitFor();
  await page.getByRole("tab", { name: "chat: Vera Vogel" }).click();
  // A line to the first chat; its visitor then writes in the second one, not shown: unread.
  await box.fill("Einen Moment bitte.");
  await box.press("Enter");
  await transcript.locator(".msg.mine", { hasText: "Einen Moment bitte." }).locator(".receipt", { hasText: "sent" }).waitFor();
  await secondTab.getByLabel("1 unread").waitFor();

  // A reload comes back signed in to the same work: the chats, the transcript, the customer —
  // and what was read is not unread again.
  await page.reload();
  await page.getByRole("tab", { name: "chat: Vera Vogel", selected: true }).waitFor();
  await transcript.locator(".msg.mine", { hasText: GREETING("Vera Vogel") }).locator(".receipt", { hasText: "read" }).waitFor();
  await customer.getByText("Rechnung März").waitFor();
  await page.getByRole("tabpanel", { name: "chat: Klara Klein", includeHidden: true })
    .getByText("mein Paket ist noch nicht angekommen").waitFor({ state: "attached" });
  await page.getByRole("tabpanel", { name: "chat: Klara Klein", includeHidden: true })
    .getByText("Die Sendungsnummer ist 4711.").waitFor({ state: "attached" });
  const badge = await secondTab.locator(".badge").textContent();
  if (badge !== "1") throw new Error(`after the reload the second chat shows ${badge} unread, not the one it had`);
  // The dropped connection may have set bruno not ready; he chooses Ready again.
  await page.getByRole("button", { name: "Ready" }).click();
  await page.locator('#presence-buttons [aria-pressed="true"]', { hasText: "Ready" }).waitFor();

  // The second chat: the picker fills in the text module; the visitor ends the chat.
  await secondTab.click();
  await second.getByText("mein Paket ist noch nicht angekommen").waitFor();
  await second.getByLabel("Text module").selectOption({ label: "greeting (/hi)" });
  const secondBox = second.getByLabel("Message");
  if ((await secondBox.inputValue()) !== GREETING("Klara Klein")) throw new Error(`picker filled ${await secondBox.inputValue()}`);
  await secondBox.press("Enter");
  await second.getByText("Chat ended (visitor)").waitFor();
  await second.getByText("Wrap-up").waitFor();
  await second.getByRole("button", { name: "Done" }).click();
  await second.waitFor({ state: "detached" });
  await page.getByRole("tab", { name: "chat: Vera Vogel", selected: true }).waitFor();

  // Refusals show in the status line: no going offline while holding a chat.
  await page.getByRole("button", { name: "Offline" }).click();
  await page.getByRole("status").filter({ hasText: "agent_has_work" }).waitFor();

  // End, wrap-up, done: the panel goes.
  await panel.getByRole("button", { name: "End", exact: true }).click();
  await panel.getByText("Wrap-up").waitFor();
  await panel.getByRole("button", { name: "Done" }).click();
  await panel.waitFor({ state: "detached" });
  await page.getByText("No open interactions").waitFor();

  // An email (the Rust side creates it once bruno is ready again): no chat composer.
  // Rejected once, it comes back when bruno is ready again; accepted, he transfers it to alice.
  const email = page.locator('article.offer[data-channel="email"]');
  await email.getByRole("button", { name: "Reject" }).click();
  await email.waitFor({ state: "detached" });
  await page.locator("#presence", { hasText: "not ready (missed)" }).waitFor();
  await page.getByRole("button", { name: "Ready" }).click();
  await email.getByRole("heading", { name: "email — Vera Vogel" }).waitFor();
  await email.getByRole("button", { name: "Accept" }).click();
  const card = page.locator('[role="tabpanel"][data-channel="email"]');
  await card.getByText("Mahnung").waitFor();
  if (await card.getByLabel("Message").count()) throw new Error("an email got a chat composer");
  await page.screenshot({ path: `${screenshots}/console-email.png`, fullPage: true });
  await card.getByLabel("Transfer to").selectOption(`agent:${aliceId}`);
  await card.getByRole("button", { name: "Transfer" }).click();
  await card.getByText("Wrap-up").waitFor();
  await card.getByRole("button", { name: "Done" }).click();
  await card.waitFor({ state: "detached" });

  // Signing out ends the kept sign-in: a reload shows the form.
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("button", { name: "Sign in" }).waitFor();
  await page.reload();
  await page.getByRole("button", { name: "Sign in" }).waitFor();
  console.log("console ok");
} finally {
  await browser.close();
}
