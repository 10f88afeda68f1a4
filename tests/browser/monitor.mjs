// Browser test of chat monitoring: supervisor sam signs in on /wallboard, follows the agent's
// "Monitor chat" link to /console#monitor=ID and signs in there; the chat opens in its own
// panel, marked as monitored; sam whispers to the
// agent, then takes over and writes to the visitor, and reads the visitor's answer. The Rust
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
  await page.getByRole("link", { name: `Monitor chat ${interaction}` }).click();
  await page.waitForURL(`**/console#monitor=${interaction}`);
  await page.getByLabel("User").fill("sam");
  await page.getByLabel("Password").fill("demo-password");
  await page.getByRole("button", { name: "Sign in" }).click();
  const panel = page.getByRole("tabpanel", { name: "chat: Vera Visitor" });
  const transcript = panel.getByRole("log", { name: "Transcript" });
  await transcript.getByText("Frage zu meiner Rechnung").waitFor();
  await panel.getByText("Monitoring: the visitor does not see you").waitFor();
  const box = panel.getByLabel("Message");
  await box.fill("Biete die Gutschrift an.");
  await box.press("Enter");
  await transcript.getByText("Biete die Gutschrift an.").waitFor();
  await page.screenshot({ path: `${screenshots}/console-monitor.png`, fullPage: true });
  await panel.getByRole("button", { name: "Take over" }).click();
  await panel.getByRole("button", { name: "Take over" }).waitFor({ state: "hidden" });
  await box.fill("Ich übernehme das Gespräch.");
  await box.press("Enter");
  await transcript.getByText("Danke, sehr nett!").waitFor();
  console.log("monitor ok");
} finally {
  await browser.close();
}
