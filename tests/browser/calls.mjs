// Browser test of the console's call controls, over real SIP: Debian's chromium (headless)
// driven by playwright-core, with the Rust side (tests/browser.rs) playing bruno's phone, a
// caller on the trunk and the carrier behind it. Bruno signs in; with the keyboard he dials a
// number that is no phone number (the server's invalid_command shows in the status line, the
// number stays to be corrected), then a real one before his phone is registered (dial_failed);
// once it is, he dials again, as work of one of his queues: the call's panel opens (Connected, the number's customer beside
// it), he is busy, his phone rings, then the carrier; hung up, the call is in wrap-up until he
// presses Done, and he is ready for outbound work again. Back to Ready, a call is
// offered and his phone answers it: the call's panel has the focus on Hold; he holds the call
// (the button becomes Resume, the caller hears music), reloads the page (the call comes back
// held, with Resume), resumes it, is refused a transfer to a
// number without its country code, and transfers the call to an outside number; wrap-up, Done.
//
// The script and the test take turns: the script prints a line when it has reached a step
// (`tell`) and, where the test has to do its part first, waits for the test's line on stdin
// (`hear`).
// Usage: node calls.mjs BASE_URL SCREENSHOTS_DIR — run by tests/browser.rs.
import { createInterface } from "node:readline";
import { consolePage, launch, signIn } from "./chromium.mjs";

const [base, screenshots] = process.argv.slice(2);
const input = createInterface({ input: process.stdin });
const fromTest = input[Symbol.asyncIterator]();
const tell = (line) => console.log(line);
async function hear(expected) {
  const { value, done } = await fromTest.next();
  if (done || value !== expected) throw new Error(`expected "${expected}" from the test, got ${done ? "the end" : `"${value}"`}`);
}

const browser = await launch();
try {
  const page = await consolePage(browser, base);
  await signIn(page, "bruno");
  const status = page.getByRole("status");

  // Click-to-dial with the keyboard: a number that is none is refused by the server and kept.
  const dial = page.getByRole("form", { name: "Call a number" });
  const number = dial.getByLabel("Number to call");
  await number.fill("030 555");
  await number.press("Enter");
  await status.filter({ hasText: /^call 030 555: .*\(invalid_command\)$/ }).waitFor();
  if ((await number.inputValue()) !== "030 555") throw new Error("the refused number was not kept");
  // Without a registered phone the dial fails.
  await number.fill("+4940555000");
  await dial.getByRole("button", { name: "Call" }).click();
  await status.filter({ hasText: /^call \+4940555000: .*\(dial_failed\)$/ }).waitFor();
  tell("dial refused");
  await hear("registered");
  // Registered now: vacd rings bruno's phone, then the number. The call is bruno's work at once,
  // in the queue he picks among his own: its panel, the customer of the number, bruno busy.
  const queue = dial.getByLabel("as work of");
  await queue.locator("option", { hasText: "Support DE" }).waitFor({ state: "attached" });
  const choices = await queue.locator("option").allTextContents();
  if (choices[0] !== "my first queue" || choices.slice(1).sort().join("|") !== "Sales DE|Support DE") throw new Error(`dial queues: ${choices}`);
  await queue.selectOption({ label: "Support DE" });
  await number.press("Enter");
  await status.filter({ hasText: "calling +4940555000" }).waitFor();
  if ((await number.inputValue()) !== "") throw new Error("the dialled number stayed in the box");
  const dialled = page.locator('[role="tabpanel"][data-channel="call"]');
  await dialled.locator(".state", { hasText: /^Connected$/ }).waitFor();
  await dialled.locator(".customer li", { hasText: "phone: +4940555000" }).waitFor();
  await dialled.locator("dd", { hasText: /^Support DE$/ }).waitFor();
  await page.locator("#presence", { hasText: /^busy$/ }).waitFor();
  tell("dial connected");
  await hear("dialled");
  // Hung up: wrap-up, finished with Done; bruno is ready for outbound work, which Ready does
  // not stand for.
  await dialled.locator(".state", { hasText: /^Wrap-up/ }).waitFor();
  await dialled.getByRole("button", { name: "Done" }).click();
  await dialled.waitFor({ state: "detached" });
  await page.locator("#presence", { hasText: "ready (outbound)" }).waitFor();
  if (await page.locator('#presence-buttons [aria-pressed="true"]').count()) throw new Error("a presence button is pressed while outbound");

  // Ready for inbound calls again: a caller is offered, and bruno's phone answers.
  await page.getByRole("button", { name: "Ready" }).click();
  await page.locator("#presence", { hasText: "ready (inbound)" }).waitFor();
  await page.locator('#presence-buttons [aria-pressed="true"]', { hasText: "Ready" }).waitFor();
  tell("ready");
  const offer = page.locator('article.offer[data-channel="call"]');
  await offer.getByRole("heading", { name: /^call — / }).waitFor();
  tell("offered");
  const panel = page.locator('[role="tabpanel"][data-channel="call"]');
  const state = (text) => panel.locator(".state", { hasText: text });
  await state(/^Connected$/).waitFor();
  await offer.waitFor({ state: "detached" });
  // Keyboard flow: the new call's first control is Hold.
  const holdButton = panel.getByRole("button", { name: "Hold", exact: true });
  await page.waitForFunction(() => document.activeElement?.dataset.action === "hold");
  tell(`connected ${await panel.getAttribute("data-interaction")}`);
  await hear("bridged");

  // Hold (Enter on the focused button): once vacd acknowledges, the button resumes.
  await page.keyboard.press("Enter");
  const resumeButton = panel.getByRole("button", { name: "Resume", exact: true });
  await resumeButton.waitFor();
  await state(/^On hold/).waitFor();
  if (await holdButton.count()) throw new Error("Hold still shows on a held call");
  await page.screenshot({ path: `${screenshots}/console-call-held.png`, fullPage: true });
  // A reload during the hold: the console connects anew, and vacd tells it the hold — the
  // button still resumes.
  await page.reload();
  await resumeButton.waitFor();
  await state(/^On hold/).waitFor();
  if (await holdButton.count()) throw new Error("Hold shows on a held call after a reload");
  tell("held");
  await hear("resume");
  await resumeButton.click();
  await holdButton.waitFor();
  await state(/^Connected$/).waitFor();
  tell("resumed");
  await hear("transfer");

  // Transfer to an outside number: "Number…" shows its input; the server refuses a number
  // that is none, and the call stays.
  const target = panel.getByRole("combobox", { name: /^Transfer to/ });
  const outside = panel.getByLabel("Transfer to number");
  if (await outside.isVisible()) throw new Error("the number input shows before Number… is chosen");
  await target.selectOption("number");
  await outside.fill("040 999888");
  await outside.press("Enter");
  await status.filter({ hasText: /^transfer to 040 999888: .*\(invalid_command\)$/ }).waitFor();
  await holdButton.waitFor();
  await outside.fill("0049 40 999888");
  await page.screenshot({ path: `${screenshots}/console-call-transfer.png`, fullPage: true });
  await panel.getByRole("button", { name: "Transfer", exact: true }).click();
  await state(/^Wrap-up/).waitFor();
  if (await panel.getByRole("button", { name: /^(Hold|Resume)$/ }).count()) throw new Error("Hold shows in wrap-up");
  tell("transferred");
  await panel.getByRole("button", { name: "Done" }).click();
  await panel.waitFor({ state: "detached" });
  await page.getByText("No open interactions").waitFor();
  console.log("calls ok");
} finally {
  input.close();
  await browser.close();
}
