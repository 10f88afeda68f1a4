// Browser test of the wallboard: Debian's chromium (headless) driven by playwright-core.
// A supervisor signs in on /wallboard; the queue tiles and the agents' table follow the live
// feed; the Break button sets an agent not ready, and the agent's buttons outlive the feed's
// frames (a team lead sees none); today's charts are drawn on the tenant's day (service level
// with a coloured point for Sales DE, where one email was answered, at its Berlin time); the waiting interaction
// WAITING_ID, marked as past its queue's SLA target, is moved to Sales DE with the keyboard; a
// screenshot goes to SCREENSHOTS. On a day Berlin's clocks change (the report's answer turned
// into one of 29 March 2026, 23 hours long) the axis follows the clock. A team lead sees no
// agent buttons.
// Usage: node wallboard.mjs BASE_URL AGENT_ID WAITING_ID SCREENSHOTS_DIR — run by tests/browser.rs.
import { launch, WAIT } from "./chromium.mjs";

const [base, agentId, waitingId, screenshots] = process.argv.slice(2);

// A new page of `context` (a new one: its own sign-in) with the wallboard signed in as `user`.
async function wallboard(context, user, password, prepare = async () => {}) {
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  await prepare(page);
  await page.goto(`${base}/wallboard`);
  await page.getByLabel("User").fill(user);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  return page;
}

const browser = await launch();
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await wallboard(context, "sam", "demo-password");
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
  // Berlin's clocks go forward on 29 March 2026 (02:00 → 03:00): the report is answered as if
  // today were that day, with Sales DE's point at 10:00 Berlin time (08:00 UTC). The axis follows
  // the clock: the point (drawn mid-quarter) lies 4⅛ of the 6 hours from the 6:00 mark to the
  // 12:00 mark — where elapsed hours from midnight would put it an hour early.
  const dst = await wallboard(context, "sam", "demo-password", (p) =>
    p.route("**/api/v1/reports/queues*", async (route) => {
      const body = await (await route.fetch()).json();
      const item = body.items.find((r) => r.service_level !== null && r.service_level !== undefined);
      body.from = Date.UTC(2026, 2, 28, 23);
      body.items = [{ ...item, interval_start: Date.UTC(2026, 2, 29, 8) }];
      await route.fulfill({ json: body });
    }));
  const dstChart = dst.getByRole("img", { name: "Service level today, Sales DE" });
  const dstPoint = dstChart.locator("circle.point");
  await dstPoint.waitFor();
  const mark = async (text) => Number(await dstChart.locator("text").filter({ hasText: new RegExp(`^${text}$`) }).getAttribute("x"));
  const [six, noon] = [await mark("6:00"), await mark("12:00")];
  const share = (Number(await dstPoint.getAttribute("cx")) - six) / (noon - six);
  if (Math.abs(share - 4.125 / 6) > 0.01) throw new Error(`10:00 drawn at ${share} of 6:00 → 12:00, not ${4.125 / 6}`);
  const dstLabel = await dstPoint.locator("title").textContent();
  if (!dstLabel.startsWith("10:00")) throw new Error(`the point is labelled ${dstLabel}, not 10:00`);
  // A team lead (tina, made by the Rust side) sees bruno's row without a Break or Ready button:
  // setting an agent's status is the supervisors'.
  const lead = await wallboard(await browser.newContext(), "tina", "tina-password");
  const leadRow = lead.locator(`tr[data-agent="${agentId}"]`);
  await leadRow.getByText("not ready (break)").waitFor();
  const buttons = await leadRow.getByRole("button").count();
  if (buttons !== 0) throw new Error(`a team lead sees ${buttons} buttons in an agent's row`);
  console.log("wallboard ok");
} finally {
  await browser.close();
}
