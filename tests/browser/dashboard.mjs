// The dashboard used by a person in headless Chromium: refused before signing in and to a
// user without the admin role; then an admin sees a feed in red, opens the exception queue,
// reads the failed message with its error marked, corrects it, replays it, and sees the feed
// turn green; then signs out. Screenshots of each step go to SHOTS. Prints one JSON line of
// what the person saw. Run by tests/api/dashboard.rs.
//
// Usage: node dashboard.mjs ROOT ADMIN PASSWORD CLERK CLERK_PASSWORD FEED BAD GOOD SHOTS
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

const [root, admin, password, clerk, clerkPassword, feed, bad, good, shots] = process.argv.slice(2);
fs.mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const seen = {};
let page;
let failed = false;
const shot = (name) => page.screenshot({ path: path.join(shots, name), fullPage: true });
const health = () =>
  page.getAttribute(`#feeds tr[data-feed="${feed}"]`, "data-health").catch(() => null);
const signIn = async (user, pass) => {
  await page.fill("input[name=username]", user);
  await page.fill("input[name=password]", pass);
  await Promise.all([page.waitForLoadState("load"), page.click("button[type=submit]")]);
};
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  page = await context.newPage();

  // not signed in: the login page
  await page.goto(`${root}/admin`);
  seen.unsigned_at = new URL(page.url()).pathname;

  // a user without the admin role is refused
  await signIn(clerk, clerkPassword);
  seen.clerk_at = new URL(page.url()).pathname;
  seen.clerk_refusal = (await page.textContent(".error")) ?? "";

  // an admin: the overview, the feed in red
  await signIn(admin, password);
  seen.admin_at = new URL(page.url()).pathname;
  seen.health_before = await health();
  seen.queue_tile = await page.textContent(".tile.red b").catch(() => null);
  await shot("1-overview-red.png");

  // the exception queue, and the failed message
  await page.click("text=HL7v2 exception queue");
  await page.waitForSelector("#messages");
  seen.queue_rows = await page.locator("#messages tbody tr").count();
  await shot("2-exception-queue.png");
  await page.click("#messages tbody tr td a[href^='/admin/messages/']");
  await page.waitForSelector("pre#raw");
  seen.marked = await page.textContent("pre#raw mark");
  seen.error = await page.textContent("#error");
  await shot("3-failed-message.png");

  // corrected in the editor and replayed
  const text = await page.inputValue("textarea[name=message]");
  await page.fill("textarea[name=message]", text.replace(`||${bad}|`, `||${good}|`));
  await Promise.all([page.waitForURL(/replayed=/), page.click("#replay")]);
  seen.banner = await page.textContent("[role=status], [role=alert]");
  seen.status_after = await page.textContent("#status");
  await shot("4-replayed.png");

  // the feed is green again
  await page.click("header a[href='/admin']");
  await page.waitForSelector("#feeds");
  seen.health_after = await health();
  await shot("5-overview-green.png");

  // the patient's audit trail shows the dashboard's own reads
  await page.goto(`${root}/admin/messages?direction=in`);
  const patientLink = page.locator("#messages a[href^='/admin/audit?patient=']").first();
  if (await patientLink.count()) {
    await patientLink.click();
    await page.waitForSelector("h1");
    seen.audit_rows = await page.locator("#audit tbody tr").count();
    await shot("6-patient-audit.png");
  }

  // signed out: the pages ask for a sign-in again
  await Promise.all([page.waitForLoadState("load"), page.click("text=Sign out")]);
  await page.goto(`${root}/admin`);
  seen.after_sign_out_at = new URL(page.url()).pathname;
} catch (e) {
  failed = true;
  seen.error_thrown = String(e);
  seen.at = page ? page.url() : null;
  if (page) await shot("error.png").catch(() => {});
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
process.exit(failed ? 1 : 0);
