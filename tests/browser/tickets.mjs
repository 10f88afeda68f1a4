// Browser test of the ticket panel in the agent console: Debian's chromium (headless) driven by
// playwright-core. Bruno signs in on /console and goes ready; a German message from the chat
// widget's offline form becomes an email ticket offered to him. Accepted, it shows the thread
// (the customer's message with subject, sender and time) beside the customer, also after a
// reload; sending without
// text is refused in the status line; the "antwort" template fills the editor through the
// preview (salutation, ticket number, his name, the mailbox's signature); the "rueckruf" text
// module goes in at the cursor; an internal note joins the thread; the ticket is forwarded to
// the warehouse with a comment; the reply is sent, shows in
// the thread, and the ticket goes to wrap-up. Olga's mail arriving meanwhile (tagged with the
// ticket number, appended to the support mailbox over IMAP) shows in the open thread at once,
// the reply being written kept. A second ticket he closes without an answer.
// Prints the two tickets' ids as JSON for the Rust side (tests/browser.rs), which checks the
// mail the SMTP receiver got. Screenshots go to SCREENSHOTS.
// Usage: node tickets.mjs BASE_URL IMAP_PORT MAIL_PASSWORD SCREENSHOTS_DIR — run by
// tests/browser.rs.
import net from "node:net";
import { consolePage, launch, signIn } from "./chromium.mjs";

const [base, imapPort, mailPassword, screenshots] = process.argv.slice(2);

// Delivers `raw` to the support mailbox as a mail client would: IMAP APPEND with a
// non-synchronising literal (RFC 7888), then LOGOUT; resolves once the server said OK.
function appendMail(raw) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(imapPort), "127.0.0.1");
    let received = "";
    socket.on("data", (chunk) => {
      received += chunk;
      if (/^c OK/m.test(received)) { socket.end(); resolve(); }
      if (/^[ab] (NO|BAD)/m.test(received)) { socket.destroy(); reject(new Error(`IMAP: ${received}`)); }
    });
    socket.on("error", reject);
    socket.write(`a LOGIN support ${mailPassword}\r\nb APPEND INBOX {${Buffer.byteLength(raw)}+}\r\n${raw}\r\nc LOGOUT\r\n`);
  });
}
const GERMAN = "Guten Tag, ich habe meine Bestellung vor zwei Wochen aufgegeben und noch immer keine Lieferung erhalten. Können Sie bitte nachsehen?";
const AGAIN = "Hallo, bitte kündigen Sie mein Abonnement zum Monatsende. Vielen Dank und freundliche Grüße.";

// The widget's offline form, as a visitor sends it: an email ticket in Support DE.
async function offlineMessage(message) {
  const response = await fetch(`${base}/api/v1/chat/widgets/demo/demo-widget/offline`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: "Olga", email: "olga@example.com", message }),
  });
  const body = await response.json();
  if (response.status !== 201) throw new Error(`offline form: ${response.status} ${JSON.stringify(body)}`);
  return body.interaction;
}

const browser = await launch();
try {
  const page = await consolePage(browser, base, { width: 1280, height: 900 });
  await signIn(page, "bruno");
  await page.getByRole("button", { name: "Ready" }).click();
  await page.locator("#presence", { hasText: "ready (inbound)" }).waitFor();

  const answered = await offlineMessage(GERMAN);
  const number = `T-${answered}`;
  const offer = page.locator(`article.offer[data-offer="${answered}"][data-channel="email"]`);
  await offer.getByRole("button", { name: "Accept" }).click();
  await offer.waitFor({ state: "detached" });

  // The thread: the customer's message with its subject, sender and time; the customer beside it.
  const panel = page.locator(`[role="tabpanel"][data-interaction="${answered}"]`);
  const thread = panel.getByRole("log", { name: "Thread" });
  const inbound = thread.getByRole("article", { name: "From the customer: Olga <olga@example.com>" });
  await inbound.getByText("noch immer keine Lieferung erhalten").waitFor();
  await inbound.getByRole("heading", { name: "Offline message from Olga" }).waitFor();
  await inbound.locator(".who", { hasText: /· \d/ }).waitFor();
  const customer = panel.getByRole("complementary", { name: "Customer" });
  await customer.getByRole("heading", { name: "Olga" }).waitFor();
  await customer.getByText("email: olga@example.com").waitFor();
  await page.getByRole("tab", { name: "email: Olga", selected: true }).waitFor();
  await panel.getByText(`Connected · ${number} · open`).waitFor();
  // A reload comes back to the ticket with its thread.
  await page.reload();
  await inbound.getByText("noch immer keine Lieferung erhalten").waitFor();
  await customer.getByText("email: olga@example.com").waitFor();
  // The dropped connection may have set bruno not ready; he chooses Ready again.
  await page.getByRole("button", { name: "Ready" }).click();
  await page.locator('#presence-buttons [aria-pressed="true"]', { hasText: "Ready" }).waitFor();

  // Errors of the API show in the status line: a reply needs a text or a template.
  await panel.getByRole("button", { name: "Send reply" }).click();
  await page.getByRole("status").filter({ hasText: "empty_reply" }).waitFor();

  // The template through the preview: salutation, variables and the mailbox's signature.
  await panel.getByLabel("Template").selectOption("antwort");
  const box = panel.getByLabel("Reply", { exact: true });
  await page.waitForFunction(() => document.querySelector('textarea[id^="reply-"]')?.value.startsWith("Guten Tag Olga,"));
  const previewed = await box.inputValue();
  for (const part of [`Ihre Ticketnummer ist ${number}.`, "Bruno Becker", "Your Demo support team"]) {
    if (!previewed.includes(part)) throw new Error(`the preview lacks ${part}: ${previewed}`);
  }
  const subject = await panel.getByLabel("Subject").inputValue();
  if (!subject.includes(`[#${number}]`)) throw new Error(`subject ${subject}`);

  // The text module goes in where the cursor is, its variables filled in.
  await box.evaluate((b) => { const at = b.value.indexOf("Mit freundlichen"); b.setSelectionRange(at, at); });
  await panel.getByLabel("Text module").selectOption({ label: "rueckruf (/rr)" });
  await page.keyboard.press("Enter");
  await page.keyboard.press("Enter");
  const edited = await box.inputValue();
  const module = `Wir rufen Sie zu ${number} morgen an, Olga.\n\nMit freundlichen`;
  if (!edited.includes(module)) throw new Error(`the module is not at the cursor: ${edited}`);

  // An internal note joins the thread, for colleagues only.
  await panel.getByLabel("Internal note").fill("Olga wartet auf Paket 4711.");
  await panel.getByRole("button", { name: "Add note" }).click();
  await thread.locator('article[data-direction="internal"]', { hasText: "Olga wartet auf Paket 4711." }).waitFor();
  // Forwarded to the warehouse with a comment (the Rust side reads the mail that went out).
  await panel.getByLabel("Forward to").fill("lager@example.test");
  await panel.getByLabel("Comment").fill("Bitte Paket 4711 prüfen.");
  await panel.getByRole("button", { name: "Forward", exact: true }).click();
  await page.getByRole("status").filter({ hasText: "forwarded to lager@example.test" }).waitFor();
  if (await panel.getByLabel("Forward to").inputValue() !== "") throw new Error("the forward form was not cleared");
  await page.screenshot({ path: `${screenshots}/console-ticket.png`, fullPage: true });

  // Olga writes again while bruno is at it: her mail shows in the thread without a reload,
  // and what he has written stays.
  await appendMail(`From: Olga <olga@example.com>\r\nTo: support@demo.vacd.test\r\nSubject: Nachtrag [#${number}]\r\n` +
    `Message-ID: <nachtrag@example.com>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nIch bin ab Montag verreist.\r\n`);
  await thread.getByRole("article", { name: "From the customer: Olga <olga@example.com>" })
    .getByText("Ich bin ab Montag verreist.").waitFor();
  await page.locator("#announce", { hasText: "New email message from Olga" }).waitFor({ state: "attached" });
  if (await box.inputValue() !== edited) throw new Error(`the reply being written was lost: ${await box.inputValue()}`);

  // Send (a double click, as people do): the reply goes once, shows in the thread, and the
  // work goes to wrap-up.
  await panel.getByRole("button", { name: "Send reply" }).dblclick();
  await thread.getByRole("article", { name: /^Sent: Bruno Becker/ }).getByText("Wir rufen Sie zu").waitFor();
  await page.getByRole("status").filter({ hasText: "reply sent to olga@example.com; the ticket is answered" }).waitFor();
  await page.waitForFunction(() => !document.querySelector("form.reply button[type=submit]")?.disabled);
  const replies = await thread.getByRole("article", { name: /^Sent: Bruno Becker/ }).filter({ hasText: "Wir rufen Sie zu" }).count();
  if (replies !== 1) throw new Error(`the reply went ${replies} times`);
  await panel.getByText("Wrap-up").waitFor();
  if (await panel.getByRole("button", { name: "Send reply" }).isVisible()) throw new Error("the editor stays in wrap-up");
  await page.screenshot({ path: `${screenshots}/console-ticket-sent.png`, fullPage: true });
  await panel.getByRole("button", { name: "Done" }).click();
  await panel.waitFor({ state: "detached" });

  // A second ticket, closed without an answer.
  const closed = await offlineMessage(AGAIN);
  const second = page.locator(`[role="tabpanel"][data-interaction="${closed}"]`);
  await page.locator(`article.offer[data-offer="${closed}"]`).getByRole("button", { name: "Accept" }).click();
  await second.getByRole("log", { name: "Thread" }).getByText("kündigen Sie mein Abonnement").waitFor();
  await second.getByRole("button", { name: "Close ticket" }).click();
  await page.getByRole("status").filter({ hasText: `T-${closed} closed` }).waitFor();
  await second.getByText("Wrap-up").waitFor();
  await second.getByRole("button", { name: "Done" }).click();
  await second.waitFor({ state: "detached" });
  console.log(JSON.stringify({ answered, closed }));
} finally {
  await browser.close();
}
