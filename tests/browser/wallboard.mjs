// Browser test of the wallboard: Debian's chromium (headless) driven by playwright-core.
// A supervisor signs in on /wallboard; the queue tiles and the agents' table follow the live
// feed; the Break button sets an agent not ready; a screenshot goes to SCREENSHOTS.
// Usage: node wallboard.mjs BASE_URL AGENT_ID SCREENSHOTS_DIR — run by tests/browser.rs.
import { chromium } from "playwright-core";

const [base, agentId, screenshots] = process.argv.slice(2);
const WAIT = 15000;

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.setDefaultTimeout(WAIT);
  await page.goto(`${base}/wallboard`);
  await page.getByLabel("User").fill("sam");
  await page.getByLabel("Password").fill("demo-password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("status").filter({ hasText: "live" }).waitFor();
  // The demo queues appear as tiles, the agents as rows.
  await page.getByRole("article", { name: "Queue Sales DE" }).waitFor();
  const row = page.locator(`tr[data-agent="${agentId}"]`);
  await row.waitFor();
  await row.getByRole("button", { name: "Break" }).click();
  await row.getByText("not ready (break)").waitFor();
  await page.screenshot({ path: `${screenshots}/wallboard.png`, fullPage: true });
  console.log("wallboard ok");
} finally {
  await browser.close();
}
