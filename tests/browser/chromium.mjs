// What every browser test shares: Debian's chromium, headless, without the background traffic
// it would otherwise start, and how long a step may wait.
import { chromium } from "playwright-core";

export const WAIT = 15000;

// Debian's chromium; every page of it fails the test when the browser refuses something by
// the Content-Security-Policy vacd's pages carry (it says so on the page's console).
export async function launch() {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const newContext = browser.newContext.bind(browser);
  browser.newContext = async (options) => {
    const context = await newContext(options);
    context.on("page", (page) => page.on("console", (message) => {
      if (message.type() === "error" && message.text().includes("Content Security Policy")) {
        console.error(`refused by the page's policy: ${message.text()}`);
        process.exitCode = 1;
      }
    }));
    return context;
  };
  return browser;
}

// A page of `browser` on the agent console at `base`, failing the test on any page error.
export async function consolePage(browser, base, viewport = { width: 1280, height: 800 }) {
  const page = await browser.newPage({ viewport });
  page.setDefaultTimeout(WAIT);
  page.on("pageerror", (e) => { console.error(`page error: ${e.message}`); process.exitCode = 1; });
  await page.goto(`${base}/console`);
  return page;
}

// Signs `user` in on the console `page` with the demo password, and waits until the console is
// connected, with the agent offline.
export async function signIn(page, user) {
  await page.getByLabel("User").fill(user);
  await page.getByLabel("Password").fill("demo-password");
  await page.getByRole("button", { name: "Sign in" }).click();
  // Connected: the page shows "offline" before its websocket is open (a presence button clicked
  // then is not sent); the server's hello presses the button of the agent's status.
  await page.locator('#presence-buttons [aria-pressed="true"]', { hasText: "Offline" }).waitFor();
}
