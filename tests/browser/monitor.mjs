// Browser test of chat monitoring: supervisor sam signs in on /wallboard, follows the agent's
// "Monitor chat" link to /console#monitor=ID (a new tab) and signs in there; the chat opens in
// its own panel, marked as monitored; sam whispers to the agent, loads the console again (the
// chat comes back, still monitored), then takes over and writes to the visitor, and reads the visitor's answer. The Rust
// side (tests/browser.rs) plays the visitor and the agent and checks who received what.
// Usage: node monitor.mjs BASE_URL INTERACTION SCREENSHOTS_DIR — run by tests/browser.rs.
import { launch, WAIT } from "./chromium.mjs";

const [base, interaction, screenshots] = process.argv.slice(2);

const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.setDefaultTimeout(WAIT);
  page.on("pageerror", (e) => { console.error(`page error: ${e.message}`); process.exitCode = 1; });
  await page.goto(`${base}/wallboard`);
  await page.getByLabel("User").fill("sam");
  await page.getByLabel("Password").fill("demo-password");
  await page.getByRole("button", { name: "Sign in" }).click();
  // The link opens the console in a tab of its own; the wallboard stays.
  const [tab] = await Promise.all([
    page.context().waitForEvent("page"),
    page.getByRole("link", { name: `Monitor chat ${interaction}` }).click(),
  ]);
  tab.setDefaultTimeout(WAIT);
  tab.on("pageerror", (e) => { console.error(`page error: ${e.message}`); process.exitCode = 1; });
  await tab.waitForURL(`**/console#monitor=${interaction}`);
  await page.getByRole("status").filter({ hasText: "live" }).waitFor();
  await tab.getByLabel("User").fill("sam");
  await tab.getByLabel("Password").fill("demo-password");
  await tab.getByRole("button", { name: "Sign in" }).click();
  let panel = tab.getByRole("tabpanel", { name: "chat: Vera Visitor" });
  let transcript = panel.getByRole("log", { name: "Transcript" });
  await transcript.getByText("Frage zu meiner Rechnung").waitFor();
  await panel.getByText("Monitoring: the visitor does not see you").waitFor();
  let box = panel.getByLabel("Message");
  await box.fill("Biete die Gutschrift an.");
  await box.press("Enter");
  await transcript.getByText("Biete die Gutschrift an.").waitFor();
  await tab.screenshot({ path: `${screenshots}/console-monitor.png`, fullPage: true });
  // The console loaded again without the link's #monitor: the chat comes back by itself, still
  // monitored, with what was written.
  await tab.goto(`${base}/console`);
  panel = tab.getByRole("tabpanel", { name: "chat: Vera Visitor" });
  transcript = panel.getByRole("log", { name: "Transcript" });
  await transcript.getByText("Biete die Gutschrift an.").waitFor();
  await panel.getByText("Monitoring: the visitor does not see you").waitFor();
  box = panel.getByLabel("Message");
  await panel.getByRole("button", { name: "Take over" }).click();
  await panel.getByRole("button", { name: "Take over" }).waitFor({ state: "hidden" });
  await box.fill("Ich übernehme das Gespräch.");
  await box.press("Enter");
  await transcript.getByText("Danke, sehr nett!").waitFor();
  console.log("monitor ok");
} finally {
  await browser.close();
}
