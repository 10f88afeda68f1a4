// Browser test of the wallboard: Debian's chromium (headless) driven by playwright-core.
// A supervisor signs in on /wallboard; the queue tiles and the agents' table follow the live
// feed; the Break button sets an agent not ready, and the agent's buttons outlive the feed's
// frames (a team lead sees none); today's charts are drawn on the tenant's day (service level
// with a coloured point for Sales DE, where one email was answered, at its Berlin time); the waiting interaction
// WAITING_ID, marked as past its queue's SLA target, is moved to Sales DE with the keyboard; a
// screenshot goes to SCREENSHOTS.
// Usage: node wallboard.mjs BASE_URL AGENT_ID WAITING_ID SCREENSHOTS_DIR — run by tests/browser.rs.
import { launch, WAIT } from "./chromium.mjs";

const [base, agentId, waitingId, screenshots] = process.argv.slice(2);

const browser = await launch();
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
  // The feed sends a frame every half second while something waits (WAITING_ID does): the
  // agent's button stays the same element across frames, so a click is never lost to one.
  const ready = await row.getByRole("button", { name: "Ready" }).elementHandle();
  const waited = page.locator(`tr[data-interaction="${waitingId}"] td`).nth(2);
  const before = await waited.textContent();
  await page.waitForFunction(([cell, text]) => cell.textContent !== text, [await waited.elementHandle(), before]);
  if (!(await ready.evaluate((b) => b.isConnected))) throw new Error("the Ready button was replaced by a feed frame");
  // Today's charts: an SVG per queue and figure; Sales DE has a graded service-level point.
  const sl = page.getByRole("img", { name: "Service level today, Sales DE" });
  await sl.waitFor();
  const point = sl.locator("circle.point.ok").first();
  await point.waitFor();
  // Drawn on the demo tenant's day (Berlin's), inside the axes (44 to 542), and labelled with
  // the quarter hour it started at on Berlin's clock, which the current time is in.
  const cx = Number(await point.getAttribute("cx"));
  if (!(cx >= 44 && cx <= 542)) throw new Error(`the point is off the chart: cx ${cx}`);
  const label = await point.locator("title").textContent();
  const berlin = (ms) => new Date(ms).toLocaleTimeString("en-GB", { timeZone: "Europe/Berlin", hour: "2-digit", minute: "2-digit" });
  const quarter = 15 * 60 * 1000;
  const now = Math.floor(Date.now() / quarter) * quarter;
  const recent = [now, now - quarter].map(berlin);
  if (!recent.some((time) => label.startsWith(time))) throw new Error(`the point is labelled ${label}, not ${recent.join(" or ")} (Berlin)`);
  await page.getByRole("img", { name: "Longest wait today, Sales DE" }).locator("rect.bar").first().waitFor();
  // Move the waiting email to Sales DE (Bruno is on a break, so it stays waiting there),
  // keyboard only: focus the select, pick with the arrow keys, press the Move button.
  const waiting = page.locator(`tr[data-interaction="${waitingId}"]`);
  await waiting.getByText("Nobody serves (#1)").waitFor();
  // Waiting past the queue's one-second target: marked as an SLA breach.
  await waiting.getByText("SLA breached").waitFor();
  const select = waiting.getByRole("combobox", { name: `Move email ${waitingId} to` });
  await select.focus();
  const options = await select.locator("option").evaluateAll((os) => os.map((o) => [o.value, o.textContent]));
  const steps = options.findIndex(([, text]) => text === "queue Sales DE");
  if (steps < 0) throw new Error(`no Sales DE among ${options}`);
  for (let i = 0; i < steps; i++) await page.keyboard.press("ArrowDown");
  if ((await select.inputValue()) !== options[steps][0]) {
    throw new Error(`arrow keys selected ${await select.inputValue()}, not ${options[steps][0]}`);
  }
  await page.keyboard.press("Tab");
  await page.keyboard.press("Enter");
  await waiting.getByText("Sales DE (#1)").waitFor();
  await page.screenshot({ path: `${screenshots}/wallboard.png`, fullPage: true });
  // A team lead (tina, made by the Rust side) sees bruno's row without a Break or Ready button:
  // setting an agent's status is the supervisors'.
  const lead = await (await browser.newContext()).newPage();
  lead.setDefaultTimeout(WAIT);
  await lead.goto(`${base}/wallboard`);
  await lead.getByLabel("User").fill("tina");
  await lead.getByLabel("Password").fill("tina-password");
  await lead.getByRole("button", { name: "Sign in" }).click();
  const leadRow = lead.locator(`tr[data-agent="${agentId}"]`);
  await leadRow.getByText("not ready (break)").waitFor();
  const buttons = await leadRow.getByRole("button").count();
  if (buttons !== 0) throw new Error(`a team lead sees ${buttons} buttons in an agent's row`);
  console.log("wallboard ok");
} finally {
  await browser.close();
}
