// Drives the Shield dashboard in Debian's headless chromium with playwright-core.
// Usage: node dashboard.mjs <base-url> <token> <screenshot.png> <user-data-dir>
// Prints one JSON line: what the page showed and which address it pardoned.
import { chromium } from "playwright-core";

const [base, token, shot, profile] = process.argv.slice(2);
const fail = (msg) => { console.error(msg); process.exit(1); };
if (!profile) fail("usage: node dashboard.mjs <base-url> <token> <screenshot.png> <user-data-dir>");

const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  viewport: { width: 1400, height: 1300 },
});
const out = {};
try {
  const page = ctx.pages()[0] || await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("dialog", (d) => d.accept());

  await page.goto(base + "/ui/");
  // A wrong token is refused and the login form stays.
  await page.fill("#token", "wrong-" + token);
  await page.click("#login-form button");
  await page.waitForSelector("#login-error:has-text('refused')", { timeout: 10000 });
  out.wrong_token_refused = true;

  await page.fill("#token", token);
  await page.click("#login-form button");
  await page.waitForSelector("body[data-loaded='1']", { timeout: 15000 });
  await page.waitForSelector("#bans tbody tr[data-target]", { timeout: 15000 });
  const rows = await page.$$eval("#bans tbody tr[data-target]", (r) => r.map((x) => x.dataset.target));
  out.bans = rows;
  out.chart_bars = await page.$$eval("#chart svg rect.alerts", (r) => r.length);
  out.chart_points = await page.$$eval("#chart svg circle.bans", (r) => r.length);
  out.top_addresses = await page.$$eval("#top-addresses li .k", (r) => r.map((x) => x.textContent));
  out.sources = await page.$$eval("#sources tbody tr td:first-child", (r) => r.map((x) => x.textContent));

  // Search narrows the table to one address.
  const victim = rows[0];
  await page.fill("#search", victim);
  const shown = await page.$$eval("#bans tbody tr[data-target]", (r) => r.map((x) => x.dataset.target));
  out.search_shows = shown;

  await page.screenshot({ path: shot, fullPage: true });

  await page.click(`#bans tbody tr[data-target="${victim}"] button.pardon`);
  await page.waitForSelector("#toast:has-text('Pardoned')", { timeout: 10000 });
  await page.fill("#search", "");
  await page.waitForFunction((v) => !document.querySelector(`#bans tbody tr[data-target="${v}"]`), victim);
  out.pardoned = victim;
  out.after = await page.$$eval("#bans tbody tr[data-target]", (r) => r.map((x) => x.dataset.target));
  out.errors = errors.filter((e) => !e.includes("401"));
} finally {
  await ctx.close();
}
console.log(JSON.stringify(out));
