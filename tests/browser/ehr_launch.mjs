// An EHR launch of a SMART app in headless Chromium: serves the app (tests/browser/app and
// fhirclient's browser build) on 127.0.0.1:PORT, opens its launch page as an EHR would, signs
// in and approves on the server's pages like a person, and prints one JSON line of what the
// app saw. Run by tests/api/launch_clients.rs.
//
// Usage: node ehr_launch.mjs PORT ISS LAUNCH USERNAME PASSWORD OTHER_PATIENT_ID
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const [port, iss, launch, username, password, other] = process.argv.slice(2);
const here = path.dirname(fileURLToPath(import.meta.url));
const files = {
  "/launch.html": path.join(here, "app/launch.html"),
  "/index.html": path.join(here, "app/index.html"),
  "/fhir-client.js": path.join(here, "node_modules/fhirclient/build/fhir-client.js"),
};

const server = http.createServer((req, res) => {
  const file = files[new URL(req.url, "http://x").pathname];
  if (!file) {
    res.writeHead(404).end();
    return;
  }
  const type = file.endsWith(".js") ? "text/javascript" : "text/html";
  res.writeHead(200, { "content-type": type }).end(fs.readFileSync(file));
});
await new Promise((ok) => server.listen(Number(port), "127.0.0.1", ok));

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const seen = {};
const console_lines = [];
let page;
let failed = false;
try {
  page = await browser.newPage();
  page.on("console", (m) => console_lines.push(m.text()));
  page.on("request", (r) => {
    if (r.url().includes("/auth/authorize?") && !seen.authorize_url) seen.authorize_url = r.url();
  });
  const q = new URLSearchParams({ iss, launch });
  await page.goto(`http://127.0.0.1:${port}/launch.html?${q}`);

  // the server's login page
  await page.waitForSelector("input[name=password]", { timeout: 20000 });
  seen.login_at = new URL(page.url()).pathname;
  await page.fill("input[name=username]", username);
  await page.fill("input[name=password]", password);
  await page.click("button[type=submit]");

  // its consent page
  await page.waitForSelector("button[value=approve]", { timeout: 20000 });
  seen.consent_text = await page.textContent("body");
  await page.click("button[value=approve]");

  // back in the app
  await page.waitForFunction(() => window.result !== undefined, null, { timeout: 20000 });
  seen.app = await page.evaluate(() => window.result);
  seen.app_at = new URL(page.url()).pathname;
  seen.other_patient = await page.evaluate(async (id) => {
    try {
      await window.smart.request(`Patient/${id}`);
      return "read";
    } catch (e) {
      return e.status ?? String(e);
    }
  }, other);
} catch (e) {
  // say where the flow stopped and what the page said, for the test's failure message
  failed = true;
  seen.failure = String(e);
  seen.stopped_at = page && page.url();
  seen.page_text = page && (await page.textContent("body").catch(() => null));
} finally {
  seen.console = console_lines;
  await browser.close();
  server.close();
}
console.log(JSON.stringify(seen));
process.exit(failed ? 1 : 0);
