// What every browser test shares: Debian's chromium, headless, without the background traffic
// it would otherwise start, and how long a step may wait.
import { chromium } from "playwright-core";

export const WAIT = 15000;

export function launch() {
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}
